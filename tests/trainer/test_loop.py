"""The loop on its own: gradient checkpointing computes the same steps and is undone afterwards, a stop request
ends after the current step, and micro-batch k is the same batch whatever step the run started from."""
import mlx.core as mx
import numpy as np
import pytest

from tinygpt.runtime.models import load
from tinygpt.trainer.batches import BucketedBatches
from tinygpt.trainer.config import TrainConfig
from tinygpt.trainer.example import make_example
from tinygpt.trainer.loop import Hooks, LoopConfig, train
from tinygpt.trainer.optim import make_optimizer
from tinygpt.trainer.tuning import prepare


class Record(Hooks):
    def __init__(self, stop_after: int = 0):
        self.losses, self.stop_after = [], stop_after

    def on_step(self, m):
        self.losses.append(m.loss)

    def stop_requested(self):
        return bool(self.stop_after) and len(self.losses) >= self.stop_after


def _examples():
    rng = np.random.default_rng(1)
    return [make_example(rng.integers(1, 600, n), np.r_[np.zeros(n // 2), np.ones(n - n // 2)], str(i), str(i))
            for i, n in enumerate(rng.integers(20, 90, 12))]


def _run(model_dir, hooks, **loop):
    loaded = load(str(model_dir))
    mx.random.seed(0)
    cfg = TrainConfig(rank=4, learning_rate=3e-3)
    prepare(loaded.model, cfg, "tiny")
    source = BucketedBatches(_examples(), 4, seed=2)
    last = train(loaded.model, make_optimizer(cfg, 6), source, config=LoopConfig(iters=6, seed=5, **loop),
                 hooks=hooks)
    return loaded.model, last


def test_gradient_checkpointing_gives_the_same_steps_and_is_undone(tiny_model_dir):
    """(Without dropout: with it, the recomputed forward draws new masks, so that combination is refused.)"""
    plain, checkpointed = Record(), Record()
    model, _ = _run(tiny_model_dir, plain)
    layer_call = type(model.layers[0]).__call__
    _run(tiny_model_dir, checkpointed, grad_checkpoint=True)
    assert np.allclose(plain.losses, checkpointed.losses, rtol=0, atol=1e-5) and len(plain.losses) == 6
    assert type(model.layers[0]).__call__ is layer_call  # the class patch is gone after the run


def test_gradient_checkpointing_with_dropout_is_refused():
    from tinygpt.trainer.config import resolve
    from tinygpt.trainer.errors import TrainError

    with pytest.raises(TrainError, match="--grad-checkpoint with --dropout > 0: the backward pass would recompute"):
        resolve({"grad_checkpoint": True, "dropout": 0.1})
    assert resolve({"grad_checkpoint": True, "dropout": 0.1, "method": "full"}).grad_checkpoint  # no LoRA dropout


def test_a_stop_request_ends_the_run_after_the_current_step(tiny_model_dir):
    hooks = Record(stop_after=2)
    _, last = _run(tiny_model_dir, hooks, grad_accumulation=2)
    assert last == 2 and len(hooks.losses) == 2


def _first_update_norm(model_dir, **cfg):
    """The global L2 norm of the trainable weights' change in one SGD step (no weight decay)."""
    from mlx.utils import tree_flatten

    loaded = load(str(model_dir))
    mx.random.seed(0)
    config = TrainConfig(rank=4, optimizer="sgd", learning_rate=1.0, weight_decay=0.0, **cfg)
    prepare(loaded.model, config, "tiny")
    before = {k: np.array(v) for k, v in tree_flatten(loaded.model.trainable_parameters())}
    train(loaded.model, make_optimizer(config, 1), BucketedBatches(_examples(), 4, seed=2),
          config=LoopConfig(iters=1, seed=5, grad_clip=config.grad_clip))
    after = dict(tree_flatten(loaded.model.trainable_parameters()))
    return float(np.sqrt(sum(((np.array(after[k]) - v) ** 2).sum() for k, v in before.items())))


def test_grad_clip_bounds_the_update(tiny_model_dir):
    """SGD's first step moves the weights by lr x the gradient: clipped to 1e-3, by at most 1e-3."""
    free = _first_update_norm(tiny_model_dir)
    clipped = _first_update_norm(tiny_model_dir, grad_clip=1e-3)
    assert free > 1e-2 and clipped <= 1e-3 * (1 + 1e-4) and clipped > 1e-3 * 0.9


def test_the_data_cursor_is_a_pure_function_of_k():
    a, b = BucketedBatches(_examples(), 4, seed=2), BucketedBatches(_examples(), 4, seed=2)
    for k in (7, 0, 3, 11, 3):  # any order, any start
        assert all(np.array_equal(np.array(x), np.array(y)) for x, y in zip(a.batch(k), b.batch(k)))
