"""The model store: what names mean, the registry file, and `remove` never deleting a user's files."""
import json
import shutil

import pytest

from tinygpt.runtime.models import ModelLoadError
from tinygpt.runtime.store import DEFAULT, DEFAULT_DIR, ModelStore, StoreError


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    from tinygpt.runtime.presets import init_adapter

    return init_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "ad", rank=2, seed=5)


@pytest.fixture
def store(tmp_path, tiny_model_dir):
    s = ModelStore(tmp_path / "cache" / "models")
    s.add("base", tiny_model_dir)
    return s


def test_names_resolve_aliases_entries_specialists_and_directories(store, tiny_model_dir, adapter_dir):
    store.add("spec", adapter_dir, base="base")
    store.alias("fav", "spec")
    r = store.resolve("fav")
    assert (r.name, r.base, r.adapter, r.base_name) == ("fav", tiny_model_dir, adapter_dir.resolve(), "base")
    assert store.resolve("base").adapter is None and store.resolve("base").base == tiny_model_dir.resolve()
    direct = store.resolve(str(adapter_dir))  # a registered adapter's directory means that specialist
    assert (direct.base, direct.adapter) == (tiny_model_dir, adapter_dir.resolve())
    assert store.resolve(str(tiny_model_dir)) .base == tiny_model_dir
    assert store.resolve(DEFAULT).base == DEFAULT_DIR
    assert [e.kind for e in store.entries()] == ["base", "base", "specialist"]


def test_unknown_names_list_what_exists(store):
    store.alias("fav", "base")
    with pytest.raises(StoreError) as err:
        store.resolve("nope")
    msg = str(err.value)
    assert "unknown model 'nope'" in msg and "Known: default, base, fav" in msg and "tinygpt models ls" in msg
    assert "\n" not in msg


def test_an_adapter_directory_without_a_recorded_base_says_how_to_register_it(store, adapter_dir):
    with pytest.raises(StoreError, match=r"adapter whose base is not recorded; register it with `tinygpt models add "
                                         r"NAME --base BASE --adapter"):
        store.resolve(str(adapter_dir))


def test_hub_ids_offline_give_a_clear_error(monkeypatch, store):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"could not be fetched from the Hugging Face hub \(HF_HUB_OFFLINE is set"):
        store.resolve("no-such-org-xyz/no-such-model")


def test_registry_is_json_written_atomically_and_read_back(store, adapter_dir):
    store.add("spec", adapter_dir, base="base", kind="adapter")
    store.set_status("spec", "shipped")
    data = json.loads(store.registry_path.read_text())
    assert data["version"] == 1 and [m["name"] for m in data["models"]] == ["base", "spec"]
    spec = data["models"][1]
    assert (spec["kind"], spec["base"], spec["status"], spec["path"]) == ("adapter", "base", "shipped",
                                                                         str(adapter_dir.resolve()))
    assert spec["created"].endswith("Z") and data["models"][0]["status"] == "unrated"
    assert sorted(p.name for p in store.root.iterdir()) == ["registry.json"]  # no temp files left behind


def test_bad_names_and_taken_names_are_refused(store, tiny_model_dir, adapter_dir):
    for bad in ("a/b", "", "-x", "x" * 65, "has space"):
        with pytest.raises(StoreError, match="invalid model name"):
            store.add(bad, tiny_model_dir)
    for taken in ("base", DEFAULT):
        with pytest.raises(StoreError, match="is taken"):
            store.alias(taken, "base")
    with pytest.raises(StoreError, match="is an adapter; say which base"):
        store.add("x", adapter_dir)
    with pytest.raises(StoreError, match="unknown model 'typo'"):
        store.add("x", adapter_dir, base="typo")
    with pytest.raises(StoreError, match="neither a model directory"):
        store.add("x", store.root)
    assert [e.name for e in store.read().models] == ["base"]


def test_rm_unregisters_user_dirs_and_deletes_only_tinygpt_made_dirs_in_its_cache(store, tiny_model_dir, tmp_path,
                                                                                   adapter_dir):
    from tinygpt.runtime.presets import InitSpec, init_model

    ours = init_model(store.root / "made-here", InitSpec(preset="tiny"))
    theirs = tmp_path / "user-copy"
    shutil.copytree(tiny_model_dir, theirs)  # tinygpt-made (marker) but outside the store: the user's now
    store.add("ours", ours)
    store.add("theirs", theirs)
    store.add("spec", adapter_dir, base="base")
    with pytest.raises(StoreError, match="'base' is used by spec"):
        store.remove("base")
    assert store.remove("theirs") == ("base", None) and (theirs / "model.safetensors").is_file()
    assert store.remove("spec") == ("specialist", None) and (adapter_dir / "adapters.safetensors").is_file()
    assert store.remove("base") == ("base", None) and (tiny_model_dir / "config.json").is_file()
    assert store.remove("ours") == ("base", ours) and not ours.exists()
    with pytest.raises(StoreError, match="unknown model 'ours'"):
        store.remove("ours")
    assert store.read().models == []


def test_a_damaged_registry_or_an_alias_cycle_is_a_clear_error(store):
    store.registry_path.write_text(json.dumps({"version": 1, "models": [], "aliases": {"x": "y", "y": "x"}}))
    with pytest.raises(StoreError, match="alias 'x' is part of a cycle"):
        store.resolve("x")
    store.registry_path.write_text("{not json")
    with pytest.raises(StoreError, match="registry .* is damaged"):
        store.resolve("base")


def test_load_by_name_builds_the_specialist_with_its_name(store, adapter_dir, tiny_model_dir):
    from tinygpt.runtime.models import fingerprint, load

    store.add("spec", adapter_dir, base="base")
    spec = load("spec", store=store)
    assert (spec.name, spec.path, spec.adapter_path) == ("spec", tiny_model_dir.resolve(), adapter_dir.resolve())
    assert spec.identity.base == fingerprint(tiny_model_dir) and spec.identity.adapter is not None
    explicit = load("base", adapter_path=str(adapter_dir), store=store)
    assert explicit.fingerprint == spec.fingerprint and explicit.name == "base+ad"


def test_a_base_given_as_a_relative_directory_is_recorded_absolute(store, tiny_model_dir, adapter_dir, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    store.add("spec", adapter_dir, base=tiny_model_dir.name)
    assert store.entry("spec").base == str(tiny_model_dir.resolve())
    monkeypatch.chdir(store.root.parent)
    assert store.resolve("spec").base == tiny_model_dir.resolve()
    store.add("spec2", adapter_dir, base="base")
    assert store.entry("spec2").base == "base"  # a registered name stays a name
    with pytest.raises(StoreError, match="is itself a specialist"):
        store.add("spec3", adapter_dir, base="spec")


def test_rm_keeps_files_another_name_still_uses(store, tiny_model_dir, adapter_dir):
    from tinygpt.runtime.presets import InitSpec, init_model

    ours = init_model(store.root / "made-here", InitSpec(preset="tiny"))
    store.add("one", ours)
    store.add("two", ours)
    store.add("spec", adapter_dir, base=str(ours))  # recorded by path, not by name
    with pytest.raises(StoreError, match="'one' is used by spec"):
        store.remove("one")
    store.remove("spec")
    assert store.remove("one") == ("base", None) and (ours / "config.json").is_file()  # "two" still uses it
    assert store.remove("two") == ("base", ours) and not ours.exists()


def test_an_alias_used_by_another_alias_is_not_removed(tmp_path):
    from tinygpt.runtime.store import ModelStore, StoreError

    store = ModelStore(tmp_path / "store")
    store.alias("x1", "default")
    store.alias("fav3", "x1")
    with pytest.raises(StoreError, match="'x1' is used by fav3"):
        store.remove("x1")
    assert store.remove("fav3") == ("alias", None) and store.remove("x1") == ("alias", None)


def test_an_alias_of_a_directory_means_the_same_from_anywhere(tmp_path, tiny_model_dir, monkeypatch):
    store = ModelStore(tmp_path / "store")
    monkeypatch.chdir(tiny_model_dir.parent)
    store.alias("al1", f"./{tiny_model_dir.name}")
    assert store.read().aliases["al1"] == str(tiny_model_dir.resolve())
    monkeypatch.chdir(tmp_path)
    assert store.resolve("al1").base == store.resolve(str(tiny_model_dir)).base


def test_an_adapter_made_for_another_base_is_refused(tmp_path, tiny_model_dir):
    from tinygpt.runtime.presets import InitSpec, init_adapter, init_model

    other = init_model(tmp_path / "other", InitSpec(seed=3))
    adapter = init_adapter(other, tmp_path / "ad", rank=2)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(StoreError, match="was made for another base model"):
        store.add("wrong", adapter, base=str(tiny_model_dir))
    assert store.add("right", adapter, base=str(other)).kind == "specialist"


def test_a_hub_id_alias_means_the_local_model_and_is_never_fetched(store, tiny_model_dir):
    store.alias("Qwen/Qwen3-0.6B", "base")
    r = store.resolve("Qwen/Qwen3-0.6B")
    assert r.name == "Qwen/Qwen3-0.6B" and r.base == tiny_model_dir
    assert "Qwen/Qwen3-0.6B" in store.names()
    for bad in ("a/b/c", "/abs", "org/", "x" * 60 + "/" + "y" * 70):
        with pytest.raises(StoreError, match="an alias may also be a hub id"):
            store.alias(bad, "base")
    with pytest.raises(StoreError, match="invalid model name"):
        store.add("Qwen/Qwen3-0.6B", tiny_model_dir)  # registered names stay plain: only aliases stand for hub ids
    assert store.remove("Qwen/Qwen3-0.6B") == ("alias", None) and "Qwen/Qwen3-0.6B" not in store.names()


def test_a_registered_base_whose_weights_were_deleted_is_refused_and_not_listed(store, tiny_model_dir, tmp_path):
    from tinygpt.runtime.catalog import Catalog

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    store.add("gone", copy, kind="base")
    for f in copy.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelLoadError, match="has a config.json but no \\*.safetensors weights"):
        store.resolve("gone")
    assert "gone" not in Catalog(str(tiny_model_dir), store=store).names()


def test_a_registry_written_before_domains_existed_reads_and_describe_records_what_a_model_is_for(tmp_path,
                                                                                                 tiny_model_dir):
    store = ModelStore(tmp_path / "models")
    store.root.mkdir(parents=True)
    old = {"version": 1, "aliases": {}, "models": [{"name": "b", "kind": "base", "path": str(tiny_model_dir),
                                                    "base": None, "status": "shipped", "created": "x", "source": None}]}
    store.registry_path.write_text(json.dumps(old))
    e = store.entry("b")
    assert (e.status, e.domain, e.tools, e.provenance) == ("shipped", None, [], {})
    e = store.describe("b", domain="fileops", tools=["ls", "cd", "ls"], provenance={"data": "runs/7"})
    assert (e.domain, e.tools, e.provenance) == ("fileops", ["cd", "ls"], {"data": "runs/7"})
    assert store.describe("b", tools=["mv"]).domain == "fileops"  # None keeps what was recorded
    assert store.describe("b", domain="").domain is None
    with pytest.raises(StoreError, match="invalid domain"):
        store.describe("b", domain="a b")
    with pytest.raises(StoreError, match="unknown model 'nope'"):
        store.describe("nope", domain="x")


def test_the_routers_name_auto_is_reserved(store, tiny_model_dir):
    for name in ("auto", "AUTO"):
        with pytest.raises(StoreError, match=f"the name '{name}' is reserved .*router.*choose another"):
            store.add(name, tiny_model_dir)
    with pytest.raises(StoreError, match="reserved"):
        store.alias("auto", DEFAULT)
    assert "auto" not in store.names()
