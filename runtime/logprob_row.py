"""A batch step's logprob row read on the host without queueing any MLX op.

An op here (even a dtype cast) would run behind the step the batch is already computing ahead and stall the
pipeline, so the row is a zero-copy view of the array's memory and only what is asked for is decoded.
Not here: choosing tokens or top-k policy (lane.py).
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np


def host_row(logprobs: mx.array) -> "HostRow":
    """The batch's (already evaluated) logprob row, read on the host without queueing any MLX op: an op here
    (even a dtype cast) would run behind the step the batch is already computing ahead and stall the pipeline.
    The row is a zero-copy view of the array's memory; only what is asked for is read from it."""
    return HostRow(logprobs)


class HostRow:
    """A zero-copy host view of one logprob row: float32 as is, bfloat16/float16 decoded in numpy on read."""

    __slots__ = ("_raw", "_kind")

    def __init__(self, logprobs: mx.array):
        if not memoryview(logprobs).c_contiguous:  # BatchGenerator's rows are; anything else: one copy
            logprobs = mx.contiguous(logprobs.astype(mx.float32))
            mx.eval(logprobs)
        kind = logprobs.dtype
        if kind == mx.float32:
            self._raw = np.frombuffer(memoryview(logprobs), dtype=np.float32)
        elif kind == mx.bfloat16:
            self._raw = np.frombuffer(memoryview(logprobs), dtype=np.uint16)
        elif kind == mx.float16:
            self._raw = np.frombuffer(memoryview(logprobs), dtype=np.float16)
        else:
            raise TypeError(f"unexpected logprob dtype {kind}")
        self._kind = kind

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        if self._kind == mx.bfloat16:
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32, copy=False)

    def __getitem__(self, i: int) -> float:
        return float(self._decode(self._raw[i : i + 1])[0])

    def full(self) -> np.ndarray:
        return self._decode(self._raw)
