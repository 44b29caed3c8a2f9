"""One job decoded on its own, while nothing else runs, and handed to the batch the moment another job arrives.

Why: mlx-lm's `BatchGenerator` pays for its batch machinery (batched caches, masks, per-step bookkeeping) even
when it holds one sequence. On an H100 with a 0.6B-shape bf16 model a lone stream decoded ~105-140 tok/s in
the batch and ~150-215 tok/s through `generate_step` (benchmarks/results/serve-gpu-*.json and docs/server.md).
Most local traffic is one request at a time, so the scheduler runs a lone job through `generate_step`, and
moves it into the batch, cache and all, when a second job becomes runnable.

The hand-off is exact: the prompt is prefilled here in chunks (so a newcomer waits at most one chunk), the
cache then holds `ids[:offset]`; for the batch it is trimmed to all ids but the last, which the batch re-feeds
for its logits, exactly as a prefix-cache hit is seeded. The job keeps its sampler object, so a seeded job's
draws continue from the same key. Jobs with logits processors (grammars) are not run solo: a processor has
already consumed the token that generate_step feeds ahead, and re-feeding it in the batch would advance it twice;
such a job runs solo only where no hand-off can be needed (a scheduler driven by its one caller, or a model
whose caches cannot be batched), with its processors given to `generate_step`.
An interrupted step (Ctrl-C inside a layer) can leave the layers holding different lengths: `close` trims every
layer to what all of them hold (kv_cache.settle_cache), so the ids it returns are exactly the cache's.
The sampled token's logprob is taken on the device inside the step (one gather behind the sampler, evaluated
with the token), so reading it is one scalar, not a host view of the whole vocabulary-wide row every token. The
row is still returned for top-k alternatives. On an H200 this loop decodes within noise of raw `generate_step`
(benchmarks/bench_decode_path.py).
Each prefill chunk's time goes to prefill_meter.py (what recomputing a saved session would cost here).
Not here: scheduling (lane.py decides when a job runs solo and when it is handed over).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

from tinygpt.runtime import prefill_meter
from tinygpt.runtime.kv_cache import settle_cache
from tinygpt.runtime.prefill import prefill


class SoloRun:
    """Prefill `rest` after a cache holding `held`, then decode; `advance` does one chunk or one token."""

    def __init__(self, model, cache: list[Any] | None, rest: list[int], held: list[int], max_tokens: int,
                 sampler: Callable[[mx.array], mx.array], prefill_step: int, processors: list | None = None):
        self.model = model
        self.cache = cache if cache is not None else make_prompt_cache(model)
        self.ids = list(held)        # the ids fed so far, prompt then output, in order
        self.rest = list(rest)       # prompt ids still to prefill (the last one is fed by generate_step)
        self.max_tokens = max_tokens
        self.sampler = sampler
        self.step = max(1, prefill_step)
        self.processors = processors or None
        self.out: list[int] = []
        self._gen = None
        self._chosen: deque[mx.array] = deque()  # the sampled tokens' logprobs, one per step, in order

    def _sample(self, logprobs: mx.array) -> mx.array:
        """The job's sampler, plus the sampled token's logprob gathered on the device with it."""
        token = self.sampler(logprobs)
        chosen = mx.take_along_axis(logprobs, token.reshape(-1, 1), axis=-1)
        self._chosen.append(chosen)
        return mx.depends(token, [chosen])

    def advance(self) -> tuple[int, mx.array, float] | None:
        """Prefill one chunk (returns None) or decode one token (returns it, its logprob row and its logprob)."""
        if len(self.rest) > 1:
            chunk = self.rest[: min(self.step, len(self.rest) - 1)]
            t0 = time.perf_counter()
            prefill(self.model, self.cache, chunk, self.step, logits=False)  # bucketed when the cache is (sessions)
            prefill_meter.record(self.model, len(chunk), time.perf_counter() - t0)  # evaluated: device time
            self.ids += chunk
            del self.rest[: len(chunk)]
            return None
        if self._gen is None:
            self._gen = generate_step(mx.array(self.rest), self.model, max_tokens=self.max_tokens,
                                      sampler=self._sample, logits_processors=self.processors,
                                      prompt_cache=self.cache, prefill_step_size=self.step)
            self.ids += self.rest
            self.rest = []
        token, logprobs = next(self._gen)
        lp = self._chosen.popleft().item()  # evaluated with the token: no sync, no op queued
        self.out.append(token)
        self.ids.append(token)  # generate_step feeds it ahead (unless the budget ended); `close` trims to fact
        return token, logprobs, lp

    def close(self) -> tuple[list[Any], list[int]]:
        """Stop; the cache and exactly the ids it holds (a fresh cache if an interruption left it unusable)."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None
            self._chosen.clear()
        self.cache, held = settle_cache(self.cache, self.ids, self.model)
        return self.cache, held

    def handoff(self) -> tuple[list[Any] | None, list[int], list[int], int]:
        """Stop and give what the batch needs: (cache or None, ids to feed, ids in the cache, tokens left)."""
        if self._gen is None:  # still prefilling: the batch goes on from here
            self.close()
            return (self.cache if self.ids else None), self.rest, self.ids, self.max_tokens
        cache, held = self.close()
        keep = len(self.ids) - 1  # all but the last sampled token, which the batch re-feeds for its logits
        if len(held) > keep:
            trim_prompt_cache(cache, len(held) - keep)
        elif len(held) < keep:
            raise RuntimeError(f"solo cache holds {len(held)} ids, expected at least {keep}")
        return cache, self.ids[keep:], self.ids[:keep], self.max_tokens - len(self.out)
