"""Length-bucketed batches with a resumable cursor: micro-batch k is a pure function of (data, seed, k).

Examples are sorted by length and cut into batches of `batch_size` neighbours (little padding); each epoch
visits the batches in an order drawn from (seed, epoch). So the data cursor of a run is one integer — the
number of micro-batches consumed — and a resumed run sees exactly the batches it would have seen.
A batch is (inputs, targets, weights): ids[:, :-1], ids[:, 1:] and the targets' loss mask, padded to a
multiple of `pad_multiple` (fewer distinct shapes for mx.compile) but never past `max_width`. With `gather`,
it is (inputs, targets, weights, index) with only the trained positions' targets and weights, and their flat
positions, the count rounded up to a few sizes (losses.trained_nll). This is the SFT batch source; other
sources (distillation) implement the same `batch(k)` / `__len__` surface.
"""
from __future__ import annotations

import hashlib

import mlx.core as mx
import numpy as np

from tinygpt.trainer.example import Example


def fingerprint(examples: list[Example]) -> str:
    """A hash of the examples' ids and masks in order: a resumed run must see the same data."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(len(ex).to_bytes(8, "little"))
        h.update(ex.ids.tobytes())
        h.update(ex.mask.tobytes())
    return h.hexdigest()[:16]


def _grid(examples: list[Example], pad_multiple: int, max_width: int | None) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(ex) for ex in examples) - 1
    width = max(1, -(-longest // pad_multiple) * pad_multiple)
    width = max(longest, min(width, max_width)) if max_width else width
    ids = np.zeros((len(examples), width + 1), np.int32)
    mask = np.zeros((len(examples), width + 1), np.float32)
    for row, ex in enumerate(examples):
        ids[row, : len(ex)] = ex.ids
        mask[row, : len(ex)] = ex.mask
    return ids, mask


def pack(examples: list[Example], pad_multiple: int = 32, max_width: int | None = None
         ) -> tuple[mx.array, mx.array, mx.array]:
    """(inputs, targets, weights) for a list of examples, right-padded (pad targets have weight 0)."""
    ids, mask = _grid(examples, pad_multiple, max_width)
    return mx.array(ids[:, :-1]), mx.array(ids[:, 1:]), mx.array(mask[:, 1:])


def gathered_size(n: int) -> int:
    """`n` rounded up to one of a few sizes (64, 80, 96, 128, ..., each ~1.19x the last, in 16s): little padding,
    few distinct shapes to compile (19 sizes up to 2,048)."""
    size = 64
    while size < n:
        size = -(-int(size * 1.19) // 16) * 16
    return size


def pack_gathered(examples: list[Example], pad_multiple: int = 32, max_width: int | None = None) -> tuple:
    """(inputs, targets, weights, index): only the trained targets, at flat positions `index` of inputs; or
    pack's dense batch when (nearly) every position is trained."""
    ids, mask = _grid(examples, pad_multiple, max_width)
    targets, weights = ids[:, 1:].reshape(-1), mask[:, 1:].reshape(-1)
    index = np.flatnonzero(weights).astype(np.int32)
    size = gathered_size(len(index))
    if size >= weights.size:  # (almost) everything is trained: the dense batch, no gather
        return mx.array(ids[:, :-1]), mx.array(ids[:, 1:]), mx.array(mask[:, 1:])
    padded = np.zeros(size, np.int32)
    padded[: len(index)] = index
    w = np.zeros(size, np.float32)
    w[: len(index)] = 1.0
    return mx.array(ids[:, :-1]), mx.array(targets[padded]), mx.array(w), mx.array(padded)


class BucketedBatches:
    """The training batch source: `batch(k)` for any k >= 0 (epochs repeat), `len()` batches per epoch."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int, *, shuffle: bool = True,
                 pad_multiple: int = 32, max_width: int | None = None, gather: bool = False):
        if not examples:
            raise ValueError("no examples to batch")
        order = sorted(range(len(examples)), key=lambda i: (len(examples[i]), i))
        self.examples = examples
        self.buckets = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        self.seed, self.shuffle, self.pad_multiple, self.max_width = seed, shuffle, pad_multiple, max_width
        self.gather = gather
        self._epoch: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.buckets)

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch is None or self._epoch[0] != epoch:
            n = len(self.buckets)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._epoch = (epoch, perm)
        return self._epoch[1]

    def indices(self, k: int) -> list[int]:
        """The example indexes of micro-batch k."""
        epoch, pos = divmod(k, len(self.buckets))
        return self.buckets[int(self._order(epoch)[pos])]

    def batch(self, k: int) -> tuple:
        return (pack_gathered if self.gather else pack)([self.examples[i] for i in self.indices(k)],
                                                        self.pad_multiple, self.max_width)

    def tokens(self, k: int) -> int:
        """Trained target tokens in micro-batch k (what tokens/s counts, as mlx-lm does)."""
        return sum(self.examples[i].supervised for i in self.indices(k))
