"""Optimizers from mlx.optimizers and learning-rate schedules, by name, from a TrainConfig.

Schedules: a linear warmup of --warmup steps (update i uses (i+1)/warmup of the peak, so no step is wasted at
learning rate 0), then `constant`, `cosine` or `linear` decay to --min-lr-ratio of the peak, or `wsd`
(warmup-stable-decay: flat, then a linear decay over the last --decay-fraction of the steps). The schedule lives
in the optimizer's state (its step count), so a restored optimizer continues it exactly.
"""
from __future__ import annotations

import mlx.optimizers as optim

from tinygpt.trainer.config import TrainConfig


def _flat(value: float, steps: int = 1):
    return optim.linear_schedule(value, value, max(steps, 1))


def schedule(cfg: TrainConfig, total_steps: int):
    """The learning rate as a function of the optimizer step, for a run of `total_steps` updates."""
    peak, end = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio
    warm = min(cfg.warmup, max(total_steps - 1, 0))
    rest = max(total_steps - warm, 1)
    if cfg.schedule == "cosine":
        main = optim.cosine_decay(peak, rest, end)
    elif cfg.schedule == "linear":
        main = optim.linear_schedule(peak, end, rest)
    elif cfg.schedule == "wsd":
        decay = max(1, round(total_steps * cfg.decay_fraction))
        stable = max(rest - decay, 0)
        main = optim.join_schedules([_flat(peak), optim.linear_schedule(peak, end, decay)], [stable]) if stable \
            else optim.linear_schedule(peak, end, decay)
    else:
        main = _flat(peak)
    if warm == 0:
        return main
    ramp = optim.linear_schedule(peak / warm, peak, warm - 1) if warm > 1 else _flat(peak)
    return optim.join_schedules([ramp, main], [warm])


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optim.Optimizer:
    """The configured optimizer on the configured schedule."""
    lr, wd = schedule(cfg, total_steps), cfg.weight_decay
    name = cfg.optimizer
    if name == "adamw":
        return optim.AdamW(learning_rate=lr, weight_decay=wd)
    if name == "adam":
        return optim.Adam(learning_rate=lr)
    if name == "sgd":
        return optim.SGD(learning_rate=lr, momentum=0.9, weight_decay=wd)
    if name == "lion":
        return optim.Lion(learning_rate=lr, weight_decay=wd)
    if name == "adafactor":  # a fixed schedule, not Adafactor's relative step (which ignores --learning-rate)
        return optim.Adafactor(learning_rate=lr, relative_step=False, scale_parameter=False, weight_decay=wd)
    if name == "muon":
        return optim.Muon(learning_rate=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")
