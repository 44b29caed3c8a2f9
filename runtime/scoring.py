"""Prompt logprobs: the logprob of each prompt token given the tokens before it, from one forward pass.

What `/v1/completions` with `echo` and `logprobs` returns (lm-evaluation-harness's loglikelihood requests):
the first token has no prefix, so its logprob is None, as OpenAI and vLLM give it. The pass runs in chunks
on a fresh cache (memory stays at one chunk's logits, not the prompt's length times the vocabulary) and
shares nothing with the prefix cache or the batch. Runs in the scheduler thread (MLX state), whole, at the
job's admission: other streams pause for it as for a prefill (a long prompt on a CPU: seconds).
Not here: when a job is scored (lane.py), the wire shape (openai_api.py).
"""
from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

CHUNK = 256  # prompt positions per forward pass


def prompt_logprobs(model, ids: list[int], top: int, chunk: int = CHUNK, cache: list | None = None
                    ) -> tuple[list[float | None], list[list[tuple[int, float]] | None]]:
    """(logprob of ids[i] given ids[:i], top-`top` (id, logprob) alternatives there) for every i; i=0: None.
    `cache`: a fresh cache to run in (default: the model's own; a specialist in a shared lane passes its own)."""
    lps: list[float | None] = [None]
    tops: list[list[tuple[int, float]] | None] = [None]
    cache = make_prompt_cache(model) if cache is None else cache
    for start in range(0, len(ids) - 1, chunk):
        inputs = ids[start: start + chunk]
        targets = mx.array(ids[start + 1: start + 1 + len(inputs)])
        logits = model(mx.array(inputs)[None], cache=cache)[0, : len(targets)].astype(mx.float32)
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        chosen = mx.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
        if top > 0:
            idx = mx.argpartition(-logp, top - 1, axis=-1)[:, :top]
            vals = mx.take_along_axis(logp, idx, axis=-1)
            mx.eval(chosen, idx, vals)
            for row_i, row_v in zip(idx.tolist(), vals.tolist()):
                tops.append(sorted(zip(row_i, row_v), key=lambda p: -p[1]))
        else:
            mx.eval(chosen)
            tops.extend([] for _ in range(len(targets)))
        lps.extend(chosen.tolist())
    return lps, tops
