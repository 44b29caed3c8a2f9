"""Sampling parameters: what a caller asks of the scheduler, checked in one place.

Samplers themselves are mlx-lm's (job_sampler.py builds one per job); logprobs are read from the rows mlx-lm
already computes (logprob_row.py). This module implements no sampling algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
