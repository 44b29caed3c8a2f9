"""Tool calls in the Qwen3 format (`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`): the
tool list normalised from OpenAI shape, and the parser that splits a model's output into content and calls.

The parser works on the decoded text of the sampled ids. A call cut off by the token budget is reported as
`truncated` and never returned; a call that does not parse, names an unknown tool, or whose arguments fail
their schema is left out and described in `error` (a model fault is data, not an exception). A call ends
at the first `</tool_call>` outside a JSON string (`call_end`), so string arguments may hold the markers: the
parser reads back every call the grammar allows.
Not here: constraining generation (grammar.py) or running tools.
"""
from __future__ import annotations

import json
import secrets
from typing import Any, Sequence

import msgspec

from tinygpt.runtime.grammar_schema import SchemaError, check_schema, validate

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
EMPTY_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One callable tool: its name and JSON Schema for its arguments (an object schema)."""

    name: str
    parameters: dict


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed, schema-valid call."""

    id: str
    name: str
    arguments: dict


class ParsedOutput(msgspec.Struct, frozen=True, kw_only=True):
    """A model output split into its text content and its valid calls."""

    content: str
    calls: list[ToolCall]
    truncated: bool  # a call was still open when the output ended without EOS
    error: str | None  # the first problem with a call (the call is not in `calls`), else None


def tool_specs(tools: Sequence[dict]) -> list[ToolSpec]:
    """Normalise OpenAI-shape tools ({"type": "function", "function": {...}}) or bare {"name", "parameters"}
    dicts; raise SchemaError on a malformed entry, a duplicate name, or a schema outside the subset."""
    if not isinstance(tools, (list, tuple)):
        raise SchemaError(f"tools must be a list of tool objects, got {type(tools).__name__}")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise SchemaError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        fn = tool.get("function", tool)
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise SchemaError(f"tools[{i}] has no function name; give function.name as a non-empty string")
        params = fn.get("parameters") or EMPTY_PARAMETERS
        check_schema(params, f"tools[{i}] ({name}) parameters")
        if params.get("type", "object") != "object":
            raise SchemaError(f"tools[{i}] ({name}) parameters must be an object schema (type 'object')")
        if any(s.name == name for s in specs):
            raise SchemaError(f"tools[{i}]: duplicate tool name {name!r}; tool names must be unique")
        specs.append(ToolSpec(name=name, parameters=params))
    return specs


def call_text(name: str, arguments: dict) -> str:
    """The exact text of one call block as the chat template writes it (its tojson is
    json.dumps(ensure_ascii=False): ", " and ": " separators)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def decode_output(output_ids: Sequence[int], tokenizer: Any) -> tuple[str, bool]:
    """Text of the sampled ids (special tokens kept, a final EOS dropped) and whether they ended in EOS."""
    eos = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    ids = list(output_ids)
    ended = bool(ids) and ids[-1] in eos
    if ended:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False), ended


def parse_tool_calls(output: Sequence[int] | str, tokenizer: Any, tools: Sequence[dict] | Sequence[ToolSpec],
                     *, finish_reason: str | None = None) -> ParsedOutput:
    """Split `output` (sampled ids, or their text) into content and calls validated against `tools`.

    An unclosed call counts as truncated unless the output is known to have stopped on its own
    (ids ending in EOS, or finish_reason == "stop"); then it is an error."""
    if isinstance(output, str):
        text, stopped = output, finish_reason == "stop"
    else:
        text, stopped = decode_output(output, tokenizer)
        stopped = stopped or finish_reason == "stop"
    specs = {s.name: s for s in (tools if tools and isinstance(tools[0], ToolSpec) else tool_specs(tools))}
    start = text.find(CALL_OPEN)
    if start < 0:
        return ParsedOutput(content=text, calls=[], truncated=False, error=None)
    content = text[:start][:-1] if text[:start].endswith("\n") else text[:start]
    calls: list[ToolCall] = []
    errors: list[str] = []
    pos, truncated = start, False
    while pos < len(text):
        if not text.startswith(CALL_OPEN, pos):
            if not stopped and CALL_OPEN.startswith(text[pos:]):  # cut off while opening another call
                truncated = True
                break
            errors.append(f"unexpected text after a tool call: {text[pos:pos + 80]!r}; nothing may follow "
                          f"the calls")
            break
        body_start = pos + len(CALL_OPEN)
        end = call_end(text, body_start)
        if end < 0 and stopped:  # a model fault, not a cut: end a malformed call at the first marker
            end = text.find(CALL_CLOSE, body_start)
        if end < 0:
            if stopped:
                errors.append(f"a tool call was opened but never closed with {CALL_CLOSE}")
            truncated = not stopped
            break
        call, err = _parse_body(text[body_start:end], specs)
        if err:
            errors.append(err)
        else:
            calls.append(call)
        pos = end + len(CALL_CLOSE)
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return ParsedOutput(content=content, calls=calls, truncated=truncated, error=errors[0] if errors else None)


def call_end(text: str, start: int) -> int:
    """Index of the `</tool_call>` that closes the call whose body starts at `text[start]`, or -1.

    The marker counts only outside JSON strings, so a string argument may contain `</tool_call>` (the
    grammar allows it): the grammar and this parser agree on every call. Text that ends inside a string
    has no end yet (-1), like text without the marker."""
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "<" and text.startswith(CALL_CLOSE, i):
            return i
    return -1


def _parse_body(body: str, specs: dict[str, ToolSpec]) -> tuple[ToolCall | None, str | None]:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"tool call is not valid JSON ({exc.msg} at char {exc.pos}): {body.strip()[:120]!r}"
    except RecursionError:
        return None, f"tool call is nested too deeply to parse: {body.strip()[:120]!r}"
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        return None, f"tool call is not valid JSON ({exc}): {body.strip()[:120]!r}"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None, f'tool call must be {{"name": ..., "arguments": {{...}}}}, got {body.strip()[:120]!r}'
    extra = set(obj) - {"name", "arguments"}
    if extra:
        return None, f"tool call has unexpected key(s) {', '.join(sorted(extra))}; only name and arguments"
    name, args = obj["name"], obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return None, f"arguments of {name} are a string that is not JSON: {args[:120]!r}"
    if not isinstance(args, dict):
        return None, f"arguments of {name} must be a JSON object, got {type(args).__name__}"
    spec = specs.get(name)
    if spec is None:
        return None, f"unknown tool {name!r}; available: {', '.join(specs) or 'none'}"
    try:
        err = validate(args, spec.parameters)
    except RecursionError:
        err = "the arguments are nested too deeply to check"
    if err:
        return None, f"arguments of {name} do not match its schema: {err}"
    return ToolCall(id=new_call_id(), name=name, arguments=args), None
