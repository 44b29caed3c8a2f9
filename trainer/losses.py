"""Losses with the loop's plug-in signature `loss(model, *batch) -> (mean loss, trained-token count)`.

`masked_nll` is SFT: next-token cross-entropy averaged over the targets whose weight is 1 (the sampled /
assistant tokens); every other position contributes exactly zero to the loss and its gradient. This is
mlx-lm's `default_loss` with a per-token mask instead of one (offset, length) span per row.
`trained_nll` computes the same loss but applies the LM head only at the trained positions (gathered by an
index the batch carries): the [batch, length, vocab] logits of untrained positions are never made. Agent
traces train ~1-10% of their tokens and real vocabularies have ~150k entries, so this is most of the logits'
time and memory. It needs the model's head to be a plain (tied) linear after `model.model` — true of the
families in PLAIN_HEAD; others use `masked_nll`.
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

# mlx-lm model types whose Model.__call__ is `self.model(inputs)` then the LM head (or the tied embedding)
PLAIN_HEAD = ("qwen2", "qwen3", "qwen3_moe", "llama")


def token_nll(logits: mx.array, targets: mx.array, weights: mx.array) -> tuple[mx.array, mx.array]:
    """(sum of weighted cross-entropy, sum of weights) over targets of any shape."""
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def masked_nll(model, inputs: mx.array, targets: mx.array, weights: mx.array) -> tuple[mx.array, mx.array]:
    """Mean next-token NLL over the weighted targets of a batch from batches.pack."""
    total, count = token_nll(model(inputs), targets, weights)
    return total / mx.maximum(count, 1), count


def has_plain_head(model) -> bool:
    return getattr(model, "model_type", None) in PLAIN_HEAD and hasattr(model, "model") and hasattr(model, "args")


def lm_head(model, hidden: mx.array) -> mx.array:
    """The model's LM head on final hidden states, as its own __call__ applies it (PLAIN_HEAD families)."""
    if getattr(model.args, "tie_word_embeddings", False):
        return model.model.embed_tokens.as_linear(hidden)
    return model.lm_head(hidden)


def trained_nll(model, inputs: mx.array, targets: mx.array, weights: mx.array,
                index: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """`masked_nll` with logits only at `index` (flat positions into inputs' batch x length grid); `targets`
    and `weights` are already gathered at those positions (padding entries have weight 0). Without `index`
    (a batch where nearly everything is trained) it is `masked_nll`."""
    if index is None:
        return masked_nll(model, inputs, targets, weights)
    hidden = model.model(inputs)
    picked = mx.take(hidden.reshape(-1, hidden.shape[-1]), index, axis=0)
    total, count = token_nll(lm_head(model, picked), targets, weights)
    return total / mx.maximum(count, 1), count
