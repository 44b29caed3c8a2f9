"""Tool calls in a model family's format (runtime/tool_formats/): the tool list normalised from OpenAI shape, and
the parser that splits a model's output into content and calls.

The parser works on the decoded text of the sampled ids, read by the format's `Splitter` (the same reader the
server streams with). A call cut off by the token budget is reported as `truncated` and never returned; a call
that does not parse, names an unknown tool, or whose arguments fail their schema is left out and described in
`error` (a model fault is data, not an exception), as is a call whose id (the model's own, e.g. Mistral's)
repeats an earlier call's in the same output, since its result could not be paired with it. A call object ends
where its braces balance outside JSON strings, so string arguments may hold the format's markers: the parser
reads back every call the grammar allows.
Tools and calls are the `.atraj` types (traces/atraj.py). Not here: constraining generation (grammar.py) or
running tools.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import msgspec

from tinygpt.runtime import tool_formats
from tinygpt.runtime.grammar_schema import SchemaError, check_schema, validate
from tinygpt.runtime.tool_formats.split import CallDone, Content, Fault, splitter
from tinygpt.traces.atraj import ToolCall, ToolSpec

EMPTY_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


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
        description = fn.get("description")
        specs.append(ToolSpec(name=name, description=description if isinstance(description, str) else "",
                              parameters=params))
    return specs


def decode_output(output_ids: Sequence[int], tokenizer: Any) -> tuple[str, bool]:
    """Text of the sampled ids (special tokens kept, a final EOS dropped) and whether they ended in EOS."""
    eos = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    ids = list(output_ids)
    ended = bool(ids) and ids[-1] in eos
    if ended:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False), ended


def parse_tool_calls(output: Sequence[int] | str, tokenizer: Any, tools: Sequence[dict] | Sequence[ToolSpec], *,
                     tool_format: tool_formats.ToolFormat | str | None = None,
                     finish_reason: str | None = None) -> ParsedOutput:
    """Split `output` (sampled ids, or their text) into content and calls validated against `tools`, read in
    `tool_format` (a format or its name; None: the one `tokenizer`'s chat template writes).

    An unclosed call counts as truncated unless the output is known to have stopped on its own
    (ids ending in EOS, or finish_reason == "stop"); then it is an error."""
    fmt = tool_formats.resolve(tool_format, tokenizer)
    if isinstance(output, str):
        text, stopped = output, finish_reason == "stop"
    else:
        text, stopped = decode_output(output, tokenizer)
        stopped = stopped or finish_reason == "stop"
    specs = {s.name: s for s in (tools if tools and isinstance(tools[0], ToolSpec) else tool_specs(tools))}
    reader = splitter(fmt)
    pieces = reader.feed(text) + reader.finish(stopped)
    content = "".join(p.text for p in pieces if isinstance(p, Content))
    calls: list[ToolCall] = []
    errors = [p.message for p in pieces if isinstance(p, Fault) and p.message]
    for done in (p for p in pieces if isinstance(p, CallDone)):
        call, err = _checked(done, specs)
        if call is not None and any(c.id == call.id for c in calls):  # results are paired with calls by id
            call, err = None, (f"two calls of one answer have the id {call.id!r}; give each call its own id so its "
                               "result can be paired with it")
        if err:
            errors.append(err)
        else:
            calls.append(call)
    return ParsedOutput(content=content, calls=calls, truncated=reader.truncated,
                        error=errors[0] if errors else None)


def _checked(done: CallDone, specs: dict[str, ToolSpec]) -> tuple[ToolCall | None, str | None]:
    name, args = done.name, done.arguments
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
    return ToolCall(id=done.id, name=name, arguments=args), None
