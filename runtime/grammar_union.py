"""A union of compiled grammars: the answer must follow one of them, chosen by what is sampled.

Each step, every live processor advances on the sampled token; one that rejected it (its `error` is set) leaves;
the logits kept are those any live one allows (the maximum of their masked logits). Used for tool calls or
JSON in a requested format. Not here: compiling grammars (grammar.py).
"""
from __future__ import annotations

import mlx.core as mx


class Union:
    """Two or more compiled grammars, one of which the answer must follow."""

    def __init__(self, grammars: tuple):
        self.grammars = grammars

    def processor(self) -> "UnionProcessor":
        return UnionProcessor([g.processor() for g in self.grammars])


class UnionProcessor:
    def __init__(self, processors: list):
        self.live = processors

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        outs = []
        for p in self.live:
            outs.append((p, p(tokens, logits)))
        alive = [(p, o) for p, o in outs if p.error is None] or outs[-1:]  # none left: the last ends the answer
        self.live = [p for p, _ in alive]
        out = alive[0][1]
        for _, o in alive[1:]:
            out = mx.maximum(out, o)
        return out
