"""Grammar constraints for a request: tools + tool_choice, or a JSON response format, compiled once per
request (compiled grammars are cached by runtime/grammar.py) into a factory of fresh logits processors.
`Union` (runtime/grammar_union.py) lets an answer follow either of two grammars (tool calls, or JSON in the
requested response_format).

The factory is called in the scheduler's thread (processors hold MLX arrays). A bad tool list, tool_choice or
schema is the client's fault: `ApiError(400)`. Not here: the grammar itself (runtime/grammar.py) or parsing
calls out of the output (runtime/tool_calls.py).
"""
from __future__ import annotations

from typing import Any

from tinygpt.runtime import grammar_union
from tinygpt.runtime.grammar import GrammarError, compile_json, compile_tools
from tinygpt.runtime.tool_formats import ToolFormat
from tinygpt.runtime.penalties import combined
from tinygpt.web.errors import ApiError


def tools_grammar(tokenizer: Any, tools: list[dict], tool_choice: str | dict, parallel: bool, backend: str,
                  param: str = "tools", tool_format: ToolFormat | None = None):
    try:
        return compile_tools(tokenizer, tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
                             backend=backend, tool_format=tool_format)
    except GrammarError as exc:
        raise ApiError(400, str(exc), param=param) from exc


def json_grammar(tokenizer: Any, schema: dict | None, backend: str, param: str = "response_format"):
    try:
        return compile_json(tokenizer, schema, backend=backend)
    except GrammarError as exc:
        raise ApiError(400, str(exc), param=param) from exc


processor_factory = combined  # tools/JSON grammar + penalties: one factory (runtime/penalties.py)
Union = grammar_union.Union
