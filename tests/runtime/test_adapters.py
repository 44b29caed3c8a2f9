"""init_adapter: random-init adapters in mlx-lm's own format, loaded by mlx-lm's own loader, under init_model's
safety rules."""
import json

import pytest

from tinygpt.runtime.presets import (MARKER, InitModelError, adapter_marker, init_adapter, is_random_init,
                                     model_marker)


def _logits(model_dir, adapter_dir=None):
    import mlx.core as mx
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model

    model, _ = load_model(model_dir)
    if adapter_dir is not None:
        load_adapters(model, str(adapter_dir))
    out = model(mx.array([[1, 5, 9, 12, 40, 7]]))
    mx.eval(out)
    return out


@pytest.fixture(scope="module")
def base_logits(tiny_model_dir):
    return _logits(tiny_model_dir)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_mlx_lm_loads_it_and_outputs_differ_from_the_base(tiny_model_dir, base_logits, tmp_path, kind):
    import mlx.core as mx

    out = init_adapter(tiny_model_dir, tmp_path / "ad", fine_tune_type=kind, seed=1)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == kind and config["num_layers"] == -1
    assert config["lora_parameters"] == {"rank": 8, "dropout": 0.0, "scale": 20.0}
    weights = mx.load(str(out / "adapters.safetensors"))
    # tiny has 2 layers x 7 Linears; each gets lora_a, lora_b (+ m for DoRA)
    assert len(weights) == 2 * 7 * (3 if kind == "dora" else 2)
    assert all(float(mx.abs(w).max()) > 0 for n, w in weights.items() if n.endswith("lora_b"))
    adapted = _logits(tiny_model_dir, out)
    diff = float(mx.abs(adapted - base_logits).max())
    assert diff > 1e-3  # the adapter is not a no-op
    assert diff < 0.5 * float(mx.abs(base_logits).max())  # ...and small next to the base's own outputs


def test_same_seed_same_adapter_other_seed_other_adapter(tiny_model_dir, tmp_path):
    a = init_adapter(tiny_model_dir, tmp_path / "a", seed=3)
    b = init_adapter(tiny_model_dir, tmp_path / "b", seed=3)
    c = init_adapter(tiny_model_dir, tmp_path / "c", seed=4)
    data = [(p / "adapters.safetensors").read_bytes() for p in (a, b, c)]
    assert data[0] == data[1] and data[0] != data[2]


def test_num_layers_and_keys_choose_what_is_adapted(tiny_model_dir, tmp_path):
    import mlx.core as mx

    out = init_adapter(tiny_model_dir, tmp_path / "ad", num_layers=1, keys=["self_attn.q_proj"], rank=4)
    names = sorted(mx.load(str(out / "adapters.safetensors")))
    assert names == ["model.layers.1.self_attn.q_proj.lora_a", "model.layers.1.self_attn.q_proj.lora_b"]
    assert mx.load(str(out / "adapters.safetensors"))[names[0]].shape == (64, 4)
    _logits(tiny_model_dir, out)  # mlx-lm accepts it


def test_marker_names_the_base_and_kind(tiny_model_dir, tmp_path):
    from tinygpt.runtime.models import fingerprint

    out = init_adapter(tiny_model_dir, tmp_path / "ad")
    meta = adapter_marker(out)
    assert meta["kind"] == "adapter" and meta["base_fingerprint"] == fingerprint(tiny_model_dir)
    assert meta["base"] == str(tiny_model_dir.resolve())
    assert is_random_init(out) and model_marker(out) is None  # an adapter is not a model directory


@pytest.mark.parametrize("bad, match", [
    (dict(fine_tune_type="full"), "unknown fine_tune_type"),
    (dict(rank=0), "rank must be a positive integer"),
    (dict(num_layers=0), "num_layers must be -1"),
    (dict(num_layers=3), r"num_layers must be -1 \(all\) or 1..2"),
    (dict(keys=["nope"]), "name no Linear layer"),
])
def test_bad_arguments_are_clear_errors_and_write_nothing(tiny_model_dir, tmp_path, bad, match):
    with pytest.raises(InitModelError, match=match):
        init_adapter(tiny_model_dir, tmp_path / "ad", **bad)
    assert list(tmp_path.iterdir()) == []


def test_base_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(InitModelError, match="is not a model directory"):
        init_adapter(tmp_path, tmp_path / "ad")


def test_never_replaces_what_it_did_not_make(tiny_model_dir, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(InitModelError, match="never replaces it, even with --force"):
        init_adapter(tiny_model_dir, user, force=True)
    assert (user / "notes.txt").read_text() == "keep me"
    # a model directory (tinygpt-made, but a model) is not an adapter directory either
    with pytest.raises(InitModelError, match="did not create it"):
        init_adapter(tiny_model_dir, tiny_model_dir, force=True)
    assert model_marker(tiny_model_dir) is not None


def test_replaces_its_own_adapter_only_with_force(tiny_model_dir, tmp_path):
    out = init_adapter(tiny_model_dir, tmp_path / "ad", seed=1)
    first = (out / "adapters.safetensors").read_bytes()
    with pytest.raises(InitModelError, match="already holds a tinygpt adapter; pass --force"):
        init_adapter(tiny_model_dir, out, seed=2)
    assert (out / "adapters.safetensors").read_bytes() == first
    init_adapter(tiny_model_dir, out, seed=2, force=True)
    assert (out / "adapters.safetensors").read_bytes() != first
    assert sorted(p.name for p in out.iterdir()) == sorted(["adapters.safetensors", "adapter_config.json", MARKER])
    assert [p.name for p in tmp_path.iterdir()] == ["ad"]  # no temp or trash left behind


def test_an_empty_directory_is_filled(tiny_model_dir, tmp_path):
    (tmp_path / "ad").mkdir()
    init_adapter(tiny_model_dir, tmp_path / "ad")
    assert (tmp_path / "ad" / "adapters.safetensors").is_file()
