"""`model: "auto"`: what both API surfaces share when a request asks the server's router where it should go.

`route(state, messages, tools)` asks the router (router/serve_route.py) and returns a `Routed`: the decision, and
either the store model that serves it (by the same scheduler as any request) or the guarded policy of an enabled
remote/cloud backend. The decision is reported in the `x-tinygpt-route` response header (`headers`) and as the
`tinygpt.route` extension field of the body (`extension`). `remote_reply` runs a backend's reply off the event
loop (whole, or as text deltas for a stream) and maps its failure to a 502; a reply the backend's fallback gave
is logged, and its note (which backend answered, and why) joins the header and the extension (`fallback`). Without `--router`, "auto" is a 404
that says how to enable it (config.py). Not here: the wire shapes (openai_api.py, ollama_api.py).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator

import msgspec
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from tinygpt.router.policy import Decision
from tinygpt.router.serve_route import describe
from tinygpt.runtime.message_policy import AssistantReply, RemoteError, WrittenCall
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.web.config import AUTO, ServerState
from tinygpt.web.errors import ApiError

HEADER = "x-tinygpt-route"
log = logging.getLogger("tinygpt.serve")
_URL = re.compile(r"https?://[^\s,;]+")


@dataclass(frozen=True)
class Routed:
    """A routed request: the decision, and the store model (`model`) or the backend `policy` serving it."""

    decision: Decision
    model: str | None = None
    policy: Any = None
    fallback: str | None = None  # the backend's fallback answered: which, and why

    @property
    def headers(self) -> dict[str, str]:
        # header values are latin-1: a reason naming a non-ASCII domain is escaped, never refused
        line = describe(self.decision) + (f"; fallback={self.fallback}" if self.fallback else "")
        return {HEADER: line.encode("ascii", "backslashreplace").decode()}

    def extension(self) -> dict:
        """The body's `tinygpt` extension field."""
        route = msgspec.to_builtins(self.decision)
        if self.fallback:
            route["fallback"] = self.fallback
        return {"route": route}


def answered(routed: Routed, reply) -> Routed:
    """`routed` with the note of a backend reply (a Reply in flight, or its AssistantReply) that its fallback
    gave, logged; unchanged otherwise."""
    usage = getattr(reply, "usage", None)
    note = getattr(reply, "note", None) or (usage.note if usage is not None else None)
    if not note:
        return routed
    log.warning("route %s: %s", routed.decision.route, note)
    return replace(routed, fallback=_URL.sub("[its url]", note))  # the client learns backend names, never URLs


def is_auto(model: str) -> bool:
    return model in (AUTO, f"{AUTO}:latest")


def route(state: ServerState, messages: list[dict] | None, tools: list | None, text: str | None = None
          ) -> Routed | None:
    """The route of a request that names model "auto"; None for any other model name."""
    router = state.router
    if router is None:
        return None
    try:
        decision = router.decide(messages, tools, text)
    except ValueError as exc:
        raise ApiError(400, f"the router cannot read this request: {exc}", param="messages") from exc
    policy = router.policy_for(decision)
    if policy is not None:
        return Routed(decision, policy=policy)
    if state.lookup(decision.route) is None:
        raise ApiError(404, f"the router chose {decision.route!r} ({decision.reason}), which this server does not "
                            "serve; add it to the model store or serve it with --model", param="model",
                       code="model_not_found")
    return Routed(decision, model=decision.route)


def remote_params(state: ServerState, *, max_tokens: int | None, temperature: float, top_p: float, seed=None,
                  stop=None) -> SamplingParams:
    """Sampling for a backend's reply: the server's max_tokens cap applies to remote models too."""
    n = state.config.max_tokens if not max_tokens or max_tokens <= 0 else min(max_tokens, state.config.max_tokens)
    stops = tuple(s for s in ((stop,) if isinstance(stop, str) else (stop or ())) if s)
    params = SamplingParams(temperature=float(temperature), top_p=float(top_p) if top_p > 0 else 1.0,
                            max_tokens=n, seed=seed, stop_strings=stops)
    try:
        params.check()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return params


def _failed(routed: Routed, exc: RemoteError) -> ApiError:
    return ApiError(502, f"route {routed.decision.route}: the backend gave no reply ({exc})", code="backend_error")


async def remote_reply(routed: Routed, messages: list[dict], tools: list[dict], *, tool_choice, parallel: bool,
                       params: SamplingParams) -> AssistantReply:
    """The backend's whole reply; a backend that gave none (after its retries and fallback) is a 502."""
    def run() -> AssistantReply:
        reply = routed.policy.reply(messages, tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
                                    params=params)
        for _ in reply:
            pass
        return reply.result

    try:
        return await run_in_threadpool(run)
    except RemoteError as exc:
        raise _failed(routed, exc) from exc


class RemoteStream:
    """A backend's reply as it streams. `await start()` waits for its first text, so a backend that gives no reply
    at all (after its retries and fallback) is a 502 before the response starts; then iterate `deltas()` for the
    text: `.result` is the whole reply after it, or `.error` the ApiError that cut it (sent in-band)."""

    def __init__(self, routed: Routed, messages: list[dict], tools: list[dict], *, tool_choice, parallel: bool,
                 params: SamplingParams):
        self.routed = routed
        self.reply = routed.policy.reply(messages, tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
                                         params=params)
        self.result: AssistantReply | None = None
        self.error: ApiError | None = None
        self._texts = iterate_in_threadpool(iter(self.reply))
        self._first: list[str] = []

    async def start(self) -> "RemoteStream":
        try:
            self._first.append(await self._texts.__anext__())
        except StopAsyncIteration:
            self.result = self.reply.result
        except RemoteError as exc:
            raise _failed(self.routed, exc) from exc
        self.routed = answered(self.routed, self.result or self.reply)  # before the headers go out
        return self

    async def deltas(self) -> AsyncIterator[str]:
        try:
            for text in self._first:
                yield text
            if self.result is None:
                async for text in self._texts:
                    yield text
                self.result = self.reply.result
        except RemoteError as exc:
            self.error = _failed(self.routed, exc)
        finally:  # the client left or the stream ended: release the backend's connection
            if self.result is None and self.error is None:
                await run_in_threadpool(self.reply.close)


def call_arguments(call: WrittenCall) -> dict:
    """A backend's call arguments as a JSON object (the Ollama wire wants one); a 502 when they are not one."""
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(502, f"the backend wrote a call to {call.name} whose arguments are not a JSON object",
                       code="backend_error")
    return value


def ollama_to_openai(messages: list[dict]) -> list[dict]:
    """Ollama chat messages (prompts.ollama_messages) in OpenAI's form for a backend: call arguments as JSON text
    and ids that tie each tool result to the call it answers, in order (Ollama's wire carries none)."""
    out, pending, n = [], [], 0
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                n += 1
                call_id = f"call_{n}"
                pending.append(call_id)
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}})
            m["tool_calls"] = calls
        elif m["role"] == "tool":
            m["tool_call_id"] = pending.pop(0) if pending else ""
        out.append(m)
    return out
