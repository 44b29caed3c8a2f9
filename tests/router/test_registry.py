"""The registry view of the model store: only shipped specialists with a domain and files are routable."""
import shutil

import pytest
from router_fakes import add_specialist, store  # noqa: F401 (a fixture)

from tinygpt.router.registry import Target, load_registry


def test_only_ship_and_routed_ship_specialists_with_a_domain_are_routable(store, tmp_path):  # noqa: F811
    add_specialist(store, tmp_path, "unrated", domain="fileops")
    add_specialist(store, tmp_path, "rejected", "rejected", domain="fileops")
    add_specialist(store, tmp_path, "unsure", "inconclusive", domain="fileops")
    add_specialist(store, tmp_path, "nodomain", "shipped")
    add_specialist(store, tmp_path, "old", "shipped", domain="fileops", tools=["ls", "mv"])
    add_specialist(store, tmp_path, "narrow", "routed-ship", domain="fileops")
    add_specialist(store, tmp_path, "mathy", "routed-ship", domain="math")
    reg = load_registry(store, generalist="base")
    by = {s.name: s for s in reg.specialists}
    assert sorted(by) == ["mathy", "narrow", "nodomain", "old", "rejected", "unrated", "unsure"]  # no base
    assert [s.name for s in reg.specialists if s.routable] == ["old", "narrow", "mathy"]
    assert by["rejected"].why.startswith("status 'rejected'") and by["unrated"].verdict is None
    assert "tinygpt route describe nodomain --domain D" in by["nodomain"].why
    assert by["narrow"].why == "routed-ship: routed for domain fileops only" and by["narrow"].verdict == "routed-ship"
    assert by["old"].tools == ["ls", "mv"] and by["old"].verdict == "ship"
    assert [s.name for s in reg.routable("fileops")] == ["old", "narrow"]  # ship before routed-ship
    assert [s.name for s in reg.routable("math")] == ["mathy"] and reg.routable("chat") == ()
    assert reg.domains() == ["fileops", "math"] and reg.generalist == "base"


def test_a_specialist_whose_files_are_gone_is_not_routable(store, tmp_path):  # noqa: F811
    path = add_specialist(store, tmp_path, "gone", "shipped", domain="fileops")
    assert load_registry(store).routable("fileops")[0].name == "gone"
    shutil.rmtree(path)
    (s,) = load_registry(store).specialists
    assert not s.routable and s.why.startswith("files missing:") and "no longer exists" in s.why
    assert load_registry(store).routable("fileops") == ()


def test_provenance_joins_the_store_and_the_adapter_marker(store, tmp_path):  # noqa: F811
    import json

    path = add_specialist(store, tmp_path, "made", "shipped", domain="fileops")
    (path / "tinygpt.json").write_text(json.dumps({"created_by": "tinygpt init-adapter", "trained_by": "tinygpt "
                                                   "train", "run": "/runs/7"}))
    store.describe("made", provenance={"data": "traces/fileops"})
    (s,) = load_registry(store).specialists
    assert s.provenance == {"trained_by": "tinygpt train", "run": "/runs/7", "data": "traces/fileops"}


def test_targets_are_off_by_default_and_only_enabled_ones_take_low_confidence(store):  # noqa: F811
    assert Target(name="x").enabled is False
    reg = load_registry(store, targets=[Target(name="a", kind="remote", low_confidence=True),
                                        Target(name="b", kind="cloud", enabled=True, low_confidence=True)])
    assert reg.low_confidence_target().name == "b" and reg.target("a").kind == "remote"
    with pytest.raises(ValueError, match="distinct names"):
        load_registry(store, targets=[Target(name="a"), Target(name="a")])


def test_a_specialist_described_as_general_is_never_routable(store, tmp_path):  # noqa: F811
    add_specialist(store, tmp_path, "chatty", status="shipped", domain="general")
    reg = load_registry(store)
    (s,) = reg.specialists
    assert not s.routable and "generalist's" in s.why and reg.routable("general") == ()
