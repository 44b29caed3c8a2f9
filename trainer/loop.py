"""The one training loop: compiled steps, gradient accumulation, validation, and hooks for everything else.

`train(model, optimizer, source, loss=...)` is mlx-lm's `tuner.trainer.train` shape — a loss and a batch source
plug in (SFT here; distillation and pretraining bring their own) — with what exact resume needs: it starts at
any step, micro-batch k is `source.batch(k)`, and the dropout RNG is reseeded from (seed, k) before every
micro-batch, so the step after a restored checkpoint computes what the uninterrupted run computed. One step is
one optimizer update over `grad_accumulation` micro-batches (each micro-batch's mean loss weighs the same, as
in mlx-lm). Progress, metrics, checkpoints and Ctrl-C are the caller's, through `Hooks`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map

from tinygpt.trainer.losses import masked_nll


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def batch(self, k: int) -> tuple: ...


@dataclass(frozen=True)
class LoopConfig:
    iters: int
    grad_accumulation: int = 1
    grad_clip: float = 0.0  # the update's gradient is clipped to this global L2 norm (0: not clipped)
    val_every: int = 0  # 0: validate only at the end
    val_batches: int = 0  # 0: the whole validation source
    save_every: int = 0  # 0: checkpoint only at the end
    seed: int = 0
    grad_checkpoint: bool = False


@dataclass(frozen=True)
class StepMetrics:
    step: int
    loss: float
    tokens: int  # trained target tokens in the step
    learning_rate: float
    seconds: float


class Hooks:
    """What the loop reports to, and asks; the defaults do nothing and never stop."""

    def on_step(self, metrics: StepMetrics) -> None: ...
    def on_validation(self, step: int, loss: float, seconds: float) -> None: ...
    def on_checkpoint(self, step: int) -> None: ...
    def stop_requested(self) -> bool:
        return False


def micro_seed(seed: int, k: int) -> int:
    """The RNG seed of micro-batch k: a pure function of (seed, k), so dropout masks survive a resume."""
    return (seed * 0x9E3779B97F4A7C15 + k * 0xBF58476D1CE4E5B9 + 1) % 2**64


@contextmanager
def checkpointed_layers(model, enabled: bool):
    """mlx-lm's grad_checkpoint (recompute a layer's activations in the backward pass) for the duration only:
    it patches the layer class, which other models in this process share."""
    if not enabled:
        yield
        return
    from mlx_lm.tuner.trainer import grad_checkpoint

    cls = type(model.layers[0])
    original = cls.__call__
    grad_checkpoint(model.layers[0])
    try:
        yield
    finally:
        cls.__call__ = original


def evaluate(model, loss: Callable, source: BatchSource, max_batches: int = 0) -> float:
    """Token-weighted mean loss over the first `max_batches` batches of `source` (0: all), in eval mode."""
    was_training = model.training
    model.eval()
    total, count = mx.array(0.0), mx.array(0.0)
    for k in range(min(len(source), max_batches) if max_batches else len(source)):
        value, n = loss(model, *source.batch(k))
        total, count = total + value * n, count + n
        mx.eval(total, count)
    model.train(was_training)
    return (total / mx.maximum(count, 1)).item()


def train(model, optimizer, source: BatchSource, *, config: LoopConfig, loss: Callable = masked_nll,
          valid: BatchSource | None = None, start_step: int = 0, hooks: Hooks = Hooks()) -> int:
    """Run optimizer steps start_step+1 .. config.iters; return the last step completed (less than iters when
    `hooks.stop_requested()` said stop). Optimizer state and weights must be restored before this is called."""
    accum = config.grad_accumulation
    state = [model.state, optimizer.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, loss)

    @partial(mx.compile, inputs=state, outputs=state)
    def micro_step(batch, prev_grad, update: bool):
        (value, count), grad = loss_and_grad(model, *batch)
        if prev_grad is not None:
            grad = tree_map(lambda a, b: a + b, grad, prev_grad)
        if update:
            if accum > 1:
                grad = tree_map(lambda g: g / accum, grad)
            if config.grad_clip > 0:
                grad, _ = optim.clip_grad_norm(grad, config.grad_clip)
            optimizer.update(model, grad)
            grad = None
        return value, count, grad

    def validate(step: int) -> None:
        started = time.perf_counter()
        value = evaluate(model, loss, valid, config.val_batches)
        hooks.on_validation(step, value, time.perf_counter() - started)

    with checkpointed_layers(model, config.grad_checkpoint):
        model.train()
        if valid is not None and start_step == 0:
            validate(0)
        for step in range(start_step + 1, config.iters + 1):
            started = time.perf_counter()
            grad, total, count = None, mx.array(0.0), mx.array(0.0)
            for j in range(accum):
                k = (step - 1) * accum + j
                batch = source.batch(k)
                mx.random.seed(micro_seed(config.seed, k))
                value, n, grad = micro_step(batch, grad, j == accum - 1)
                total, count = total + value * n, count + n
                mx.eval(state, total, count, grad)
            hooks.on_step(StepMetrics(step, (total / mx.maximum(count, 1)).item(), int(count.item()),
                                      optimizer.learning_rate.item(), time.perf_counter() - started))
            if valid is not None and ((config.val_every and step % config.val_every == 0) or step == config.iters):
                validate(step)
            if (config.save_every and step % config.save_every == 0) or step == config.iters:
                hooks.on_checkpoint(step)
            if step < config.iters and hooks.stop_requested():
                return step
    return config.iters
