"""A trained router saves as router.json + weights.npz and loads back equal; damage is a clear error."""
import json

import numpy as np
import pytest
from router_fakes import tool_examples

from tinygpt.router.errors import RouterError
from tinygpt.router.features import VERSION as FEATURES_VERSION
from tinygpt.router.features import Request
from tinygpt.router.model import load, save
from tinygpt.router.policy import decide
from tinygpt.router.registry import Registry
from tinygpt.router.settings import Settings
from tinygpt.router.train import TrainOptions, train
from tinygpt.traces.atraj import Header, Sampling
from tinygpt.traces.line import encode_line
from tinygpt.traces.reader import parse_records


@pytest.fixture(scope="module")
def trained():
    return train(tool_examples(30), TrainOptions(dim=2**12, steps=60), Settings(ship=0.6))


def test_save_then_load_gives_the_same_router(trained, tmp_path):
    save(trained, tmp_path / "r")
    back = load(tmp_path / "r")
    assert np.array_equal(back.weights, trained.weights) and np.array_equal(back.bias, trained.bias)
    assert (back.domains, back.temperature, back.meta, back.id) == (trained.domains, trained.temperature,
                                                                    trained.meta, trained.id)
    r = Request("copy it", ("cp",))
    assert decide(r, back, Registry()) == decide(r, trained, Registry())
    assert back.meta.settings.ship == 0.6
    with np.load(tmp_path / "r" / "weights.npz", allow_pickle=False) as z:
        assert set(z.files) == {"rows", "weights", "bias"} and len(z["rows"]) < trained.dim  # only rows with weight


def test_missing_damaged_or_mismatched_files_are_one_line_errors(trained, tmp_path):
    with pytest.raises(RouterError, match="no router at .*train one with `tinygpt route train"):
        load(tmp_path / "none")
    save(trained, tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "router.json").read_text())
    (tmp_path / "r" / "router.json").write_text(json.dumps({**meta, "domains": meta["domains"][:2]}))
    with pytest.raises(RouterError, match="does not match"):
        load(tmp_path / "r")
    (tmp_path / "r" / "router.json").write_text("{not json")
    with pytest.raises(RouterError, match="is not a router file"):
        load(tmp_path / "r")
    save(trained, tmp_path / "r")
    (tmp_path / "r" / "weights.npz").write_bytes(b"junk")
    with pytest.raises(RouterError, match="weights.npz is missing or damaged"):
        load(tmp_path / "r")


def test_a_decision_is_recorded_in_the_trajectory_header_and_reads_back(trained):
    d = decide(Request("move it", ("mv",)), trained, Registry(generalist="base"))
    header = Header(episode_id="e", task_id="t", split="train", created_at=0.0, model=d.route,
                    model_fingerprint="f", tokenizer_hash="h", chat_template_hash="c",
                    sampling=Sampling(temperature=0.0), route=d.to_route())
    (back,), _ = parse_records(encode_line(header, 0))
    route = back.route
    assert (route.target, route.kind, route.domain, route.score, route.threshold, route.policy) == (
        "base", "generalist", "fileops", d.score, None, trained.id)
    assert route.scores == d.scores and route.reason == d.reason


def test_a_router_trained_on_other_features_is_refused(trained, tmp_path):
    save(trained, tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "router.json").read_text())
    assert meta["features"] == FEATURES_VERSION
    (tmp_path / "r" / "router.json").write_text(json.dumps({**meta, "features": 99}))
    with pytest.raises(RouterError, match="features of version 99; .* train the router again"):
        load(tmp_path / "r")


@pytest.mark.parametrize("damage", ["truncated", "zeroed tail"])
def test_a_damaged_zip_of_weights_is_the_one_line_error_and_exit_2(trained, tmp_path, capsys, damage):
    from tinygpt import cli

    save(trained, tmp_path / "r")
    path = tmp_path / "r" / "weights.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:-40] + bytes(40))
    with pytest.raises(RouterError, match="weights.npz is missing or damaged.*train the router again"):
        load(tmp_path / "r")
    assert cli.main(["route", "hello", "--router", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "missing or damaged" in err and "Traceback" not in err


def test_a_bad_temperature_is_blamed_on_router_json_not_the_weights(trained, tmp_path):
    save(trained, tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "router.json").read_text())
    (tmp_path / "r" / "router.json").write_text(json.dumps({**meta, "temperature": 0}))
    with pytest.raises(RouterError, match=r"router.json: temperature must be a number above 0") as caught:
        load(tmp_path / "r")
    assert "weights.npz" not in str(caught.value)
