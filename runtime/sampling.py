"""Sampling parameters and a sampler that also captures each chosen token's logprob (and top-k) lazily.

The capture happens inside mlx-lm's `generate_step` graph (the sampler is called there): the returned token is
made to depend on the captured arrays (`mx.depends`), so generate_step's own async evaluation of the token computes
them too. Reading them after the token is yielded then costs no extra dispatch or sync (a separate async_eval per
token measured ~18% slower decode on a small model). Sampling itself is
mlx-lm's `make_sampler`; this module does not implement any sampling algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
from mlx_lm.sample_utils import make_sampler


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 = greedy. `stop_token_ids=None` means the tokenizer's EOS ids."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    stop_token_ids: tuple[int, ...] | None = None
    stop_strings: tuple[str, ...] = field(default_factory=tuple)
    top_logprobs: int = 0

    def check(self) -> None:
        """Raise ValueError with a clear message for out-of-range values."""
        if not self.temperature >= 0 or self.temperature == float("inf"):  # NaN fails every comparison
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")


class CapturingSampler:
    """Wraps mlx-lm's sampler; records (token, logprob[, top-k]) arrays per call, evaluated asynchronously."""

    def __init__(self, params: SamplingParams):
        self._inner = make_sampler(
            temp=params.temperature, top_p=params.top_p if params.top_p < 1 else 0.0,
            min_p=params.min_p, top_k=params.top_k,
        )
        self._top = params.top_logprobs
        self.captured: list[tuple[mx.array, ...]] = []

    def __call__(self, logprobs: mx.array) -> mx.array:
        token = self._inner(logprobs)
        chosen = mx.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0]
        if self._top:
            idx = mx.argpartition(-logprobs, self._top - 1, axis=-1)[:, : self._top]
            item = (chosen, idx, mx.take_along_axis(logprobs, idx, axis=-1))
        else:
            item = (chosen,)
        self.captured.append(item)
        return mx.depends(token, list(item))

    def pop(self, n: int) -> tuple[float, list[tuple[int, float]]]:
        """Logprob and top-k [(id, logprob)] for the n-th sampled token (0-based).

        Only `.item()` / `.tolist()` on the already-evaluated arrays: indexing them would enqueue a new op behind
        the next forward pass and stall the pipeline."""
        item = self.captured[n]
        self.captured[n] = ()  # free the arrays once read
        top: list[tuple[int, float]] = []
        if len(item) == 3:
            pairs = zip(item[1].tolist()[0], item[2].tolist()[0])
            top = sorted(pairs, key=lambda p: -p[1])
        return float(item[0].item()), top
