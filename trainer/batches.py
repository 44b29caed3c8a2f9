"""Length-bucketed batches with a resumable cursor: micro-batch k is a pure function of (data, seed, k).

Examples are sorted by length and cut into batches of `batch_size` neighbours (little padding); each epoch
visits the batches in an order drawn from (seed, epoch). So the data cursor of a run is one integer — the
number of micro-batches consumed — and a resumed run sees exactly the batches it would have seen.
A batch is (inputs, targets, weights): ids[:, :-1], ids[:, 1:] and the targets' loss mask, padded to a
multiple of `pad_multiple` (fewer distinct shapes for mx.compile). This is the SFT batch source; other
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


def pack(examples: list[Example], pad_multiple: int = 32) -> tuple[mx.array, mx.array, mx.array]:
    """(inputs, targets, weights) for a list of examples, right-padded (pad targets have weight 0)."""
    longest = max(len(ex) for ex in examples) - 1
    width = max(1, -(-longest // pad_multiple) * pad_multiple)
    ids = np.zeros((len(examples), width + 1), np.int32)
    mask = np.zeros((len(examples), width + 1), np.float32)
    for row, ex in enumerate(examples):
        ids[row, : len(ex)] = ex.ids
        mask[row, : len(ex)] = ex.mask
    return mx.array(ids[:, :-1]), mx.array(ids[:, 1:]), mx.array(mask[:, 1:])


class BucketedBatches:
    """The training batch source: `batch(k)` for any k >= 0 (epochs repeat), `len()` batches per epoch."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int, *, shuffle: bool = True,
                 pad_multiple: int = 32):
        if not examples:
            raise ValueError("no examples to batch")
        order = sorted(range(len(examples)), key=lambda i: (len(examples[i]), i))
        self.examples = examples
        self.buckets = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        self.seed, self.shuffle, self.pad_multiple = seed, shuffle, pad_multiple
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

    def batch(self, k: int) -> tuple[mx.array, mx.array, mx.array]:
        return pack([self.examples[i] for i in self.indices(k)], self.pad_multiple)

    def tokens(self, k: int) -> int:
        """Trained target tokens in micro-batch k (what tokens/s counts, as mlx-lm does)."""
        return sum(self.examples[i].supervised for i in self.indices(k))
