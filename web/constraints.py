"""Grammar constraints for a request: tools + tool_choice, or a JSON response format, compiled once per
request (compiled grammars are cached by runtime/grammar.py) into a factory of fresh logits processors.

The factory is called in the worker thread (processors hold MLX arrays). A bad tool list, tool_choice or
schema is the client's fault: `ApiError(400)`. Not here: the grammar itself (runtime/grammar.py) or parsing
calls out of the output (runtime/tool_calls.py).
"""
from __future__ import annotations

from typing import Any, Callable

from tinygpt.runtime.grammar import GrammarError, compile_json, compile_tools
from tinygpt.web.errors import ApiError


def tools_grammar(tokenizer: Any, tools: list[dict], tool_choice: str | dict, parallel: bool, backend: str):
    try:
        return compile_tools(tokenizer, tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
                             backend=backend)
    except GrammarError as exc:
        raise ApiError(400, str(exc), param="tools") from exc


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
