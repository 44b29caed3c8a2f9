"""Per-request samplers for the batch: mlx-lm's filters and sampling, with an own random key when seeded.

Greedy requests share one sampler object, so the batch samples them in one call. A seeded request gets a
sampler that draws from its own key (split per token), so its draws do not depend on what else is in the
batch. Not here: logprob capture (the batch reports full logprobs) or grammar (logits processors).
"""
from __future__ import annotations

import mlx.core as mx
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler, make_sampler

from tinygpt.runtime.sampling import SamplingParams


class SeededSampler:
    """Top-p / min-p / top-k filtering as mlx-lm does it, then a categorical draw from a private key."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.key = mx.random.key(int(params.seed) % (1 << 64))

    def __call__(self, logprobs: mx.array) -> mx.array:
        p = self.params
        if 0 < p.top_p < 1:
            logprobs = apply_top_p(logprobs, p.top_p)
        if p.min_p:
            logprobs = apply_min_p(logprobs, p.min_p)
        if p.top_k > 0:
            logprobs = apply_top_k(logprobs, p.top_k)
        self.key, sub = mx.random.split(self.key)
        return mx.random.categorical(logprobs * (1.0 / p.temperature), key=sub)


def make_job_sampler(params: SamplingParams):
    """The sampler for one sequence of the batch."""
    if params.temperature == 0:
        return greedy_sampler
    if params.seed is not None:
        return SeededSampler(params)
    return make_sampler(temp=params.temperature, top_p=params.top_p if params.top_p < 1 else 0.0,
                        min_p=params.min_p, top_k=params.top_k)
