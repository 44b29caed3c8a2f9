"""Losses with the loop's plug-in signature `loss(model, *batch) -> (mean loss, trained-token count)`.

`masked_nll` is SFT: next-token cross-entropy averaged over the targets whose weight is 1 (the sampled /
assistant tokens); every other position contributes exactly zero to the loss and its gradient. This is
mlx-lm's `default_loss` with a per-token mask instead of one (offset, length) span per row.
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def token_nll(logits: mx.array, targets: mx.array, weights: mx.array) -> tuple[mx.array, mx.array]:
    """(sum of weighted cross-entropy, sum of weights) over a [batch, length] grid of targets."""
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def masked_nll(model, inputs: mx.array, targets: mx.array, weights: mx.array) -> tuple[mx.array, mx.array]:
    """Mean next-token NLL over the weighted targets of a batch from batches.pack."""
    total, count = token_nll(model(inputs), targets, weights)
    return total / mx.maximum(count, 1), count
