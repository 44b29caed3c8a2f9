"""Offline distillation inside `tinygpt train`: `--teacher-logprobs SIDECAR` turns an SFT run on rows into
α·T²·KL(teacher top-k + tail ‖ student) + (1−α)·NLL (distill_loss.py), on the same loop, checkpoints and resume.

`plug` checks the sidecar against the run (made from this very rows file, the student's tokenizer, ids inside the
student's vocabulary, every trained target present) and wraps the SFT batch sources: `DistillBatches.batch(k)` is
the SFT batch k (same examples, same order, so resume stays exact) in the gathered form, plus the teacher's ids,
log-probs and tail at each gathered target. A window of a long row keeps the teacher numbers of its targets,
which the teacher computed with the whole row before them. Not here: making the sidecar (teacher.py), on-policy
distillation (on_policy.py).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import mlx.core as mx
import numpy as np

from tinygpt.trainer import topk_file
from tinygpt.trainer.batches import BucketedBatches, pack_gathered
from tinygpt.trainer.distill_loss import NEG, distill_loss
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import Example


def teacher_rows(examples: list[Example], topk: topk_file.TopK, path) -> list[np.ndarray]:
    """For each example, the sidecar entries of its trained targets in order; TrainError if one is missing."""
    out = []
    for ex in examples:
        targets = np.flatnonzero(ex.mask[1:]) + 1
        if ex.origin is None or ex.origin[0] >= topk.rows:
            raise TrainError(f"--teacher-logprobs {path} has no entries for {ex.source}; make it again from these rows")
        span = topk.row(ex.origin[0])
        positions = topk.positions[span]
        want = targets + ex.origin[1]
        at = np.searchsorted(positions, want)
        if (at >= positions.size).any() or not np.array_equal(positions[at], want):
            raise TrainError(f"--teacher-logprobs {path}: its trained positions for {ex.source} are not the row's; "
                             "make it again from these rows")
        out.append(span.start + at)
    return out


class DistillBatches:
    """An SFT batch source plus the teacher's top-k: (inputs, targets, weights, index, ids, logprobs, tail)."""

    def __init__(self, inner: BucketedBatches, topk: topk_file.TopK, path):
        self.inner, self.topk = inner, topk
        self.entries = teacher_rows(inner.examples, topk, path)

    def __len__(self) -> int:
        return len(self.inner)

    def tokens(self, k: int) -> int:
        return self.inner.tokens(k)

    def batch(self, k: int) -> tuple:
        picked = self.inner.indices(k)
        packed = pack_gathered([self.inner.examples[i] for i in picked], self.inner.pad_multiple,
                               self.inner.max_width)
        if len(packed) == 3:  # a dense batch (nearly every position trained): every position, as gathered
            inputs, targets, weights = packed
            targets, weights = targets.reshape(-1), weights.reshape(-1)
            index = mx.arange(weights.size, dtype=mx.int32)
        else:
            inputs, targets, weights, index = packed
        entries = np.concatenate([self.entries[i] for i in picked])
        slots = np.flatnonzero(np.asarray(weights))  # row-major, as the entries are
        size, top = weights.shape[0], self.topk.k
        ids = np.zeros((size, top), np.int32)
        logprobs = np.zeros((size, top), np.float32)
        tail = np.full(size, NEG, np.float32)  # padding: weight 0, finite numbers
        ids[slots], logprobs[slots], tail[slots] = (self.topk.ids[entries], self.topk.logprobs[entries],
                                                    self.topk.tail[entries])
        return inputs, targets, weights, index, mx.array(ids), mx.array(logprobs), mx.array(tail)


def plug(cfg, loaded, data, source: BucketedBatches, valid: BucketedBatches | None):
    """(source, valid, loss, key) for an SFT run with `--teacher-logprobs`; `key` names the sidecar's content
    (a resumed run must distill from the same teacher numbers)."""
    from tinygpt.trainer.losses import has_plain_head

    path = Path(cfg.teacher_logprobs).expanduser()
    train_file = data.report.get("train_file", {})
    if train_file.get("format") != "rows":
        raise TrainError("--teacher-logprobs needs --data to be a rows.jsonl from traces-to-data (the sidecar is "
                         f"keyed by its rows); {train_file.get('path')} is {train_file.get('format')} data")
    if "valid_file" in data.report:
        raise TrainError("--teacher-logprobs with --valid-data: the sidecar covers --data's rows only; hold out "
                         "with --valid-fraction instead")
    topk = topk_file.read(path)
    topk_file.check(topk, path, rows=train_file["path"], tokenizer_hash=loaded.tokenizer_hash,
                    vocab_size=loaded.vocab_size)
    loss = partial(distill_loss, alpha=cfg.alpha, temperature=cfg.temperature,
                   plain_head=has_plain_head(loaded.model))
    wrapped_valid = DistillBatches(valid, topk, path) if valid is not None else None
    key = f"{topk.meta['teacher_fingerprint']}:k{topk.k}:{topk_file.file_hash(path)[:16]}"
    return DistillBatches(source, topk, path), wrapped_valid, loss, key
