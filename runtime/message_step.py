"""One step of the agent loop (agent.py) when a message-level model drives it: the reply, then its tool calls.

The policy (message_policy.py) is sent the conversation's messages and the tools and answers with text and
calls as the model wrote them. Each call is checked for what a local model's grammar guarantees: its arguments
must be a JSON object that validates against that tool's schema (grammar_schema.validate), and the agent's
tool_choice and parallel_tool_calls must allow it (a server may ignore them). Usable calls run through
the Toolset; an unusable one is not run: the model is told why in that call's tool message and gets another
step, and the trajectory records it as the loop records any call that could not be used (a tool_result named
"invalid_call" with an empty call_id). Chat APIs need every call answered by its id, so the usable calls of a
reply run even when another one could not be used. A reply cut off by max_tokens while writing calls runs none
of them and ends the turn ("truncated_call"); the cut calls are left out of the conversation (nothing answers
them). The ModelCall has no ids (token_exact False), `model` = the name the server says answered and `usage` the
reply's (tokens, cost, attempts); a note on it (a fallback) is shown as an Error event.
A RemoteError (no reply at all) ends the turn ("remote_error") with one Error event; the conversation keeps
what the turn did before it. Not here: the loop (agent.py), the wire (remote_policy.py).
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Generator

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import sampling_record
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.message_policy import RemoteError, WrittenCall
from tinygpt.traces.atraj import ModelCall, ToolCall, ToolResult

_EXCERPT = 120


def message_step(agent, step: int) -> Generator[ev.AgentEvent, None, str | None]:
    """Yield one step's events; return why the turn ends ("answer", "length", "truncated_call", "remote_error"),
    or None when the model gets another step."""
    started = time.perf_counter()
    params = agent.config.sampling
    reply = agent.policy.reply(list(agent.transcript.messages), agent.tools, tool_choice=agent.tool_choice,
                               parallel_tool_calls=agent.config.parallel_tool_calls, params=params)
    try:
        for text in reply:
            yield ev.TextDelta(text)
    except RemoteError as exc:
        yield ev.Error(step, str(exc))
        return "remote_error"
    finally:  # stopped early (Ctrl-C, consumer closed): release the connection now
        reply.close()
    r = reply.result
    truncated = bool(r.calls) and r.finish_reason == "length"
    checked = [] if truncated else check_calls(r.calls, agent.tools, agent.tool_choice,
                                                agent.config.parallel_tool_calls)
    message: dict[str, Any] = {"role": "assistant", "content": r.content}
    if checked:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.written.name, "arguments": c.written.arguments}}
                                 for c in checked]
    agent.transcript.add_output(message)
    finish = "truncated" if truncated else ("tool_calls" if r.calls else r.finish_reason)
    yield ModelCall(prompt_token_ids=None, output_token_ids=None, text=r.content, content=r.content,
                    tool_calls=[c.call for c in checked if c.call is not None], finish_reason=finish,
                    latency_s=time.perf_counter() - started, token_exact=False, model=r.model,
                    sampling=sampling_record(params), usage=r.usage)
    if r.usage is not None and r.usage.note:
        yield ev.Error(step, r.usage.note)
    if truncated:
        yield ev.Error(step, "the tool call was cut off by the token budget (max_tokens) and was not run")
        return "truncated_call"
    if not checked:
        return "length" if r.finish_reason == "length" else "answer"
    yield from _run_calls(agent, step, checked)
    return None


@dataclass(frozen=True)
class CheckedCall:
    """A written call and what the check made of it: the usable `call`, or `why` it cannot be used."""

    id: str  # the server's, or a new one when it gave none or repeated one (each call is answered by its id)
    written: WrittenCall
    call: ToolCall | None
    why: str | None


def check_calls(calls: list[WrittenCall], tools: list[dict], tool_choice: str | dict = "auto",
                parallel_tool_calls: bool = True) -> list[CheckedCall]:
    """Check each call, in order, against the tools' schemas, `tool_choice` and `parallel_tool_calls`."""
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}
    named = tool_choice["function"]["name"] if isinstance(tool_choice, dict) else None
    out, seen = [], set()
    for index, written in enumerate(calls):
        call_id = written.id if written.id and written.id not in seen else "call_" + secrets.token_hex(12)
        seen.add(call_id)
        arguments, why = _arguments(written, schemas)
        if tool_choice == "none":
            why = "tool_choice is none: no tool may be called; answer in text"
        elif named is not None and written.name != named:
            why = f"tool_choice names {named!r}: only that tool may be called"
        elif index > 0 and not parallel_tool_calls:
            why = "parallel tool calls are off: make one call per step"
        call = ToolCall(id=call_id, name=written.name, arguments=arguments) if why is None else None
        out.append(CheckedCall(id=call_id, written=written, call=call, why=why))
    return out


def _arguments(call: WrittenCall, schemas: dict[str, dict]) -> tuple[dict | None, str | None]:
    """The call's arguments if they are usable, else why not (the local parser's wording, tool_calls.py)."""
    text = call.arguments.strip() or "{}"  # some servers send "" for a call without arguments
    try:
        arguments = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"arguments of {call.name} are not valid JSON ({exc}): {text[:_EXCERPT]!r}"
    if not isinstance(arguments, dict):
        return None, f"arguments of {call.name} must be a JSON object, got {type(arguments).__name__}"
    if call.name not in schemas:
        return None, f"unknown tool {call.name!r}; available: {', '.join(schemas) or 'none'}"
    try:
        err = validate(arguments, schemas[call.name])
    except RecursionError:
        err = "the arguments are nested too deeply to check"
    if err:
        return None, f"arguments of {call.name} do not match its schema: {err}"
    return arguments, None


def _run_calls(agent, step: int, checked: list[CheckedCall]) -> Generator[ev.AgentEvent, None, None]:
    """Run the usable calls (yielding each first), answer every call by its id, then yield the results."""
    answered = []
    for c in checked:
        if c.call is None:
            message = f"Error: your tool call could not be used: {c.why}"
            yield ev.Error(step, message)
            result = ToolResult(call_id="", name="invalid_call", content=message, is_error=True)
        else:
            yield c.call
            result = agent.toolset.call(c.call.name, c.call.arguments, call_id=c.call.id)
        answered.append((c.id, result))
    agent.transcript.add_messages(*[{"role": "tool", "tool_call_id": call_id, "content": result.content}
                                    for call_id, result in answered])
    for _, result in answered:
        yield result
