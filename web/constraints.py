"""Grammar constraints for a request: tools + tool_choice, or a JSON response format, compiled once per
request (compiled grammars are cached by runtime/grammar.py) into a factory of fresh logits processors.
`Union` lets an answer follow either of two grammars (tool calls, or JSON in the requested response_format):
each step allows what any grammar still alive allows, and a grammar that rejects the sampled token drops out.

The factory is called in the worker thread (processors hold MLX arrays). A bad tool list, tool_choice or
schema is the client's fault: `ApiError(400)`. Not here: the grammar itself (runtime/grammar.py) or parsing
calls out of the output (runtime/tool_calls.py).
"""
from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx

from tinygpt.runtime.grammar import GrammarError, compile_json, compile_tools
from tinygpt.web.errors import ApiError


def tools_grammar(tokenizer: Any, tools: list[dict], tool_choice: str | dict, parallel: bool, backend: str,
                  param: str = "tools"):
    try:
        return compile_tools(tokenizer, tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
                             backend=backend)
    except GrammarError as exc:
        raise ApiError(400, str(exc), param=param) from exc


def json_grammar(tokenizer: Any, schema: dict | None, backend: str, param: str = "response_format"):
    try:
        return compile_json(tokenizer, schema, backend=backend)
    except GrammarError as exc:
        raise ApiError(400, str(exc), param=param) from exc


def processor_factory(grammar, extra: Callable[[], list] | None = None) -> Callable[[], list] | None:
    """A factory giving fresh processors: the grammar's (if any) after `extra`'s (penalties, biases)."""
    if grammar is None and extra is None:
        return None

    def make() -> list:
        procs = list(extra()) if extra else []
        if grammar is not None:
            procs.append(grammar.processor())
        return procs

    return make


class Union:
    """Two or more compiled grammars, one of which the answer must follow (chosen by what is sampled)."""

    def __init__(self, grammars: tuple):
        self.grammars = grammars

    def processor(self) -> "UnionProcessor":
        return UnionProcessor([g.processor() for g in self.grammars])


class UnionProcessor:
    """Each step: every live processor advances on the sampled token; one that rejected it (its `error` is
    set) leaves; the logits kept are those any live one allows (the maximum of their masked logits)."""

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
