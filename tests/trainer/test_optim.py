"""Schedules (warmup, constant, cosine, linear, warmup-stable-decay), every optimizer through a checkpoint round
trip, what LoRA / DoRA / full make trainable, and the loss-curve PNG."""
import struct
import zlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from tinygpt.trainer import checkpoint
from tinygpt.trainer.config import OPTIMIZERS, TrainConfig
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.loss_plot import plot
from tinygpt.trainer.optim import make_optimizer, schedule
from tinygpt.trainer.tuning import prepare, trainable_weights


def _rates(cfg, total):
    fn = schedule(cfg, total)
    return [float(fn(mx.array(s))) if callable(fn) else fn for s in range(total)]


def test_warmup_then_constant_uses_no_zero_step():
    rates = _rates(TrainConfig(learning_rate=1.0, warmup=4), 10)
    assert np.allclose(rates, [0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1])


def test_cosine_and_linear_decay_to_the_floor():
    """The floor is reached just after the last update (no update is spent at the floor, or at 0)."""
    cos = _rates(TrainConfig(learning_rate=1.0, schedule="cosine", min_lr_ratio=0.1), 10)
    assert cos[0] == pytest.approx(1.0) and cos[5] == pytest.approx(0.55) and 0.1 < cos[-1] < 0.13
    lin = _rates(TrainConfig(learning_rate=1.0, schedule="linear", warmup=2), 10)
    assert lin[:2] == pytest.approx([0.5, 1.0]) and lin[2] == pytest.approx(1.0) and lin[-1] == pytest.approx(0.125)


def test_warmup_stable_decay():
    rates = _rates(TrainConfig(learning_rate=1.0, schedule="wsd", warmup=2, decay_fraction=0.3), 20)
    assert rates[:2] == pytest.approx([0.5, 1.0])
    assert rates[2:14] == pytest.approx([1.0] * 12)  # stable until the last 30% (6 steps)
    assert rates[14:] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


@pytest.fixture
def tiny_lora(tiny_model_dir):
    from tinygpt.runtime.models import load

    loaded = load(str(tiny_model_dir))
    prepare(loaded.model, TrainConfig(rank=2), "tiny")
    return loaded.model


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains_and_its_state_round_trips(name, tiny_lora, tmp_path):
    model = tiny_lora
    cfg = TrainConfig(optimizer=name, learning_rate=1e-2, schedule="cosine", warmup=1)
    opt = make_optimizer(cfg, 10)
    x = mx.array([[1, 2, 3, 4, 5]])
    loss_grad = nn.value_and_grad(model, lambda m: nn.losses.cross_entropy(m(x[:, :-1]), x[:, 1:]).mean())
    before = trainable_weights(model)
    for _ in range(2):
        _, g = loss_grad(model)
        opt.update(model, g)
        mx.eval(model.parameters(), opt.state)
    assert any(not np.array_equal(np.array(before[k]), np.array(v)) for k, v in trainable_weights(model).items())
    saved = checkpoint.save(tmp_path / "ckpts", 2, model, opt, {"fine_tune_type": "lora"}, {"cursor": 2}, keep=1)
    _, g = loss_grad(model)
    expected = dict(tree_flatten(opt.apply_gradients(g, model.trainable_parameters())))
    fresh = make_optimizer(cfg, 10)
    state = checkpoint.restore(saved, model, fresh)
    assert state["step"] == 2 and fresh.step.item() == 2
    got = dict(tree_flatten(fresh.apply_gradients(g, model.trainable_parameters())))
    assert all(np.array_equal(np.array(expected[k]), np.array(got[k])) for k in expected)


def test_checkpoints_keep_the_newest_and_refuse_another_shape(tiny_lora, tiny_model_dir, tmp_path):
    from tinygpt.runtime.models import load

    opt = make_optimizer(TrainConfig(), 5)
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, tiny_lora, opt, {}, {}, keep=2)
    assert [p.name for p in checkpoint.steps(tmp_path)] == ["step-0000002", "step-0000003"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    other = load(str(tiny_model_dir)).model
    prepare(other, TrainConfig(rank=4), "tiny")
    with pytest.raises(TrainError, match="does not fit this model and method"):
        checkpoint.restore(checkpoint.steps(tmp_path)[-1], other, make_optimizer(TrainConfig(), 5))


@pytest.mark.parametrize("cfg, trained", [
    (TrainConfig(), {"lora_a", "lora_b"}),
    (TrainConfig(method="dora"), {"lora_a", "lora_b", "m"}),
    (TrainConfig(method="full"), {"weight"}),
])
def test_what_each_method_trains(tiny_model_dir, cfg, trained):
    from tinygpt.runtime.models import load

    model = load(str(tiny_model_dir)).model
    prepare(model, cfg, "tiny")
    names = list(trainable_weights(model))
    assert {n.rsplit(".", 1)[1] for n in names} == trained
    assert all(n.startswith("model.layers.") for n in names)  # embeddings and the final norm stay frozen


def test_num_layers_and_keys_choose_the_adapted_modules(tiny_model_dir):
    from tinygpt.runtime.models import load

    model = load(str(tiny_model_dir)).model
    prepare(model, TrainConfig(num_layers=1, keys=["self_attn.q_proj", "mlp.down_proj"]), "tiny")
    assert sorted({n.rsplit(".", 1)[0] for n in trainable_weights(model)}) == [
        "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.q_proj"]
    with pytest.raises(TrainError, match="--keys nope name no module"):
        prepare(load(str(tiny_model_dir)).model, TrainConfig(keys=["nope"]), "tiny")
    with pytest.raises(TrainError, match="--num-layers 5: the model has only 2 layers"):
        prepare(load(str(tiny_model_dir)).model, TrainConfig(num_layers=5), "tiny")


def _png_pixels(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length: pos + 12 + length])[0] == zlib.crc32(kind + body)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    raw = zlib.decompress(idat)
    rows = [raw[y * (3 * width + 1) + 1:(y + 1) * (3 * width + 1)] for y in range(height)]
    return width, height, {bytes(r[i: i + 3]) for r in rows for i in range(0, len(r), 3)}


def test_the_loss_curve_is_a_valid_png_with_both_curves():
    data, axes = plot([(1, 3.0), (2, 2.0), (3, 1.5)], [(0, 3.2), (3, 1.8)])
    width, height, colors = _png_pixels(data)
    assert (width, height) == (640, 360)
    assert bytes((31, 119, 180)) in colors and bytes((255, 127, 14)) in colors
    assert axes["steps"] == [0, 3] and axes["loss"][0] < 1.5 and axes["loss"][1] > 3.2
