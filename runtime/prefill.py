"""Prefill that keeps attention shapes few, so kernels built per shape are reused from turn to turn.

On MLX's CUDA backend, fused attention at a (queries, keys) shape never seen before builds a kernel first:
measured on an H200 with the qwen3-4b shape in bf16 (`benchmarks/bench_kv_ttft.py --sdpa-only`), 40-70 ms per
new key length, against 0.4-1 ms once built. A persistent-KV turn appends a few tokens to a history of a new
length every time, so every turn paid that build, and warm time-to-first-token was mostly builds.

Here a short multi-token step (at most `SHORT` ids: a new turn) attends over the keys up to a length rounded up to
`BUCKET`, with an explicit causal mask that also hides the unused tail, and `prefill` pads such a chunk to a power
of two: pad tokens come after the real
ones, where causal attention keeps them out of the real tokens' outputs, and are trimmed from the cache at once.
One-query decode steps are untouched (MLX's single-query kernel takes any length). Only plain mlx-lm `KVCache`
layers are bucketed; other caches (rotating, quantized, state-space) prefill exactly as mlx-lm does.
Not here: sampling and the decode loop (mlx-lm's `generate_step`), sessions (kv_cache.py).
"""
from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import KVCache, make_prompt_cache

BUCKET = 256  # key lengths a short multi-token step attends over are multiples of this
MIN_CHUNK = 8  # short chunks are padded to a power of two, at least this
# Chunks longer than this take mlx-lm's own path (exact key length, "causal" mask): their compute dwarfs a kernel
# build, and on an H200 a cold 16k-token prefill through the masked kernel took 1.71 s, against 0.48-0.59 s on
# this path in the runs before and after (separate runs, not side by side).
SHORT = 256


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


class BucketedKVCache(KVCache):
    """mlx-lm's KVCache whose multi-token steps return keys up to a bucketed length, masked by `make_mask`."""

    def update_and_fetch(self, keys, values):
        n = keys.shape[2]
        if n == 1 or n > SHORT:
            return super().update_and_fetch(keys, values)
        prev, end = self.offset, self.offset + n
        cap = _round_up(end, BUCKET)
        if self.keys is None or self.keys.shape[2] < cap:
            self._grow(keys, values, cap)
        self.keys[..., prev:end, :] = keys
        self.values[..., prev:end, :] = values
        self.offset = end
        return self.keys[..., :cap, :], self.values[..., :cap, :]

    def _grow(self, keys, values, cap: int) -> None:
        b, heads, _, dk = keys.shape
        new_k = mx.zeros((b, heads, cap, dk), keys.dtype)
        new_v = mx.zeros((b, heads, cap, values.shape[3]), values.dtype)
        if self.keys is not None and self.offset:
            new_k[..., : self.offset, :] = self.keys[..., : self.offset, :]
            new_v[..., : self.offset, :] = self.values[..., : self.offset, :]
        self.keys, self.values = new_k, new_v

    def make_mask(self, N: int, return_array: bool = False, window_size=None):
        if N == 1 or N > SHORT or window_size is not None:
            return super().make_mask(N, return_array=return_array, window_size=window_size)
        end = self.offset + N
        return mx.arange(self.offset, end)[:, None] >= mx.arange(_round_up(end, BUCKET))[None]


def bucketed(cache: list) -> list:
    """The same layers, plain `KVCache`s turned into `BucketedKVCache`s sharing their arrays."""
    out = []
    for c in cache:
        if type(c) is KVCache:
            b = BucketedKVCache()
            b.keys, b.values, b.offset = c.keys, c.values, c.offset
            c = b
        out.append(c)
    return out


def plain(cache: list) -> list:
    """The inverse of `bucketed`, for mlx-lm functions that look caches up by class name (saving)."""
    out = []
    for c in cache:
        if isinstance(c, BucketedKVCache):
            p = KVCache()
            p.keys, p.values, p.offset = c.keys, c.values, c.offset
            c = p
        out.append(c)
    return out


def make_cache(model) -> list:
    """mlx-lm's prompt cache for `model`, with plain KV layers bucketed."""
    return bucketed(make_prompt_cache(model))


def prefill(model, cache: list, ids: list[int], step: int = 2048, logits: bool = True) -> mx.array | None:
    """Consume `ids` into `cache` in chunks of at most `step`; returns the logits after the last id (None with
    `logits` False: then only the caches are evaluated, which skips the last layer's attention and MLP and the
    vocabulary projection of every chunk; the cache is the same either way).

    With bucketed caches each chunk is padded to a power of two and the pad trimmed, so a step sees few shapes."""
    pad_ok = bool(cache) and all(isinstance(c, BucketedKVCache) for c in cache)
    out = None
    for i in range(0, len(ids), step):
        chunk = ids[i: i + step]
        n = len(chunk)
        size = max(MIN_CHUNK, 1 << (n - 1).bit_length()) if pad_ok and 1 < n <= SHORT else n
        tokens = mx.array(chunk + [0] * (size - n))[None]
        ends = [c.offset + n for c in cache] if size > n else []
        try:
            y = model(tokens, cache=cache)
            out = y[:, n - 1, :] if logits and i + step >= len(ids) else None
            mx.eval([c.state for c in cache] + ([out] if out is not None else []))
        finally:  # drop the pad from every layer that took it (an interrupt may have stopped between layers)
            for c, end in zip(cache, ends):
                if c.offset > end:
                    c.trim(c.offset - end)
    return out
