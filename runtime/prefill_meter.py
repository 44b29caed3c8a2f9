"""The prefill throughput this process has measured per loaded model: what recomputing a KV cache costs here.

Solo runs (solo.py) and session reloads (kv_cache.py) record every prefill chunk of at least MIN_TOKENS tokens
they evaluate; `rate(model)` is the best tokens/s seen. The best, not the mean: first-use costs (a GPU builds
kernels per shape) only ever make a chunk look slower. Shorter chunks are not recorded: on a GPU they are bound
by launch latency, not compute, and would understate a long prefill's rate many times over.
Not here: deciding anything with it (kv_cache.load_session weighs it against reading a saved file).
"""
from __future__ import annotations

import weakref

MIN_TOKENS = 256

_best: dict[int, float] = {}  # id(model) -> best tokens/s; an entry leaves with its model


def record(model, tokens: int, seconds: float) -> None:
    """Note that `model` prefilled `tokens` tokens in `seconds` (evaluated, so the time is the device's)."""
    if tokens < MIN_TOKENS or seconds <= 0:
        return
    key = id(model)
    if key not in _best:
        weakref.finalize(model, _best.pop, key, None)
    _best[key] = max(_best.get(key, 0.0), tokens / seconds)


def rate(model) -> float | None:
    """The best prefill tokens/s measured for `model` in this process, or None if none was."""
    return _best.get(id(model))
