"""Penalty and bias logits processors for a job: mlx-lm's own (`make_logits_processors`), built on demand.

`penalties(...)` returns a factory the scheduler calls in its thread for fresh processors (they hold MLX state),
or None when nothing applies, so a plain job stays eligible for the solo path. Not here: grammars (grammar.py,
grammar_union.py), sampling (job_sampler.py).
"""
from __future__ import annotations

from typing import Callable


def penalties(*, presence: float | None = None, frequency: float | None = None, repetition: float | None = None,
              repetition_context: int | None = None, logit_bias: dict[int, float] | None = None
              ) -> Callable[[], list] | None:
    """A factory of mlx-lm's penalty / bias processors, or None if none apply."""
    if not (presence or frequency or (repetition and repetition != 1.0) or logit_bias):
        return None
    ctx = repetition_context if repetition_context and repetition_context > 0 else 64

    def make() -> list:
        from mlx_lm.sample_utils import make_logits_processors

        return make_logits_processors(logit_bias=logit_bias or None, repetition_penalty=repetition or None,
                                      repetition_context_size=ctx, presence_penalty=presence or None,
                                      frequency_penalty=frequency or None)

    return make


def combined(grammar, extra: Callable[[], list] | None = None) -> Callable[[], list] | None:
    """A factory giving fresh processors: `extra`'s (penalties, biases), then the grammar's (if any)."""
    if grammar is None and extra is None:
        return None

    def make() -> list:
        procs = list(extra()) if extra else []
        if grammar is not None:
            procs.append(grammar.processor())
        return procs

    return make
