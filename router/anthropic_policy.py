"""`AnthropicPolicy`: a message-level policy (runtime/message_policy.py) served by Anthropic's Messages API.

It calls `messages.create(stream=True)` through the official `anthropic` SDK. The agent's OpenAI-format conversation
is mapped to Anthropic's: system messages become the `system` prompt, an assistant's `tool_calls` become `tool_use`
blocks, tool messages become `tool_result` blocks in a user turn (consecutive ones merged), and `tool_choice` auto /
none / required / a named function becomes auto / none / any / tool (`disable_parallel_tool_use` when parallel calls
are off). The stream's text deltas are yielded as they come; each `tool_use` block's `input_json_delta` fragments
are joined into a `WrittenCall`; the stop reason maps to the agent's finish reasons; max_tokens and stop strings are
sent, never temperature / top_p / top_k (the API refuses them since version 2026-10-21). The API key is passed in:
the SDK's own environment lookup is never used. Every failure becomes a one-line `RemoteError` (retryable for a
timeout, no connection, 429, 5xx, an overload). Not here: retries, fallback, prices, redaction (guard.py),
checking the calls or running tools (the agent).
"""
from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import urlsplit

from tinygpt.runtime.message_policy import AssistantReply, RemoteError, Reply, WrittenCall
from tinygpt.runtime.remote_policy import error_detail, one_line, remote_fingerprint, server_address
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.traces.atraj import Usage

ANTHROPIC_URL = "https://api.anthropic.com"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "refusal": "content_filter"}


class AnthropicPolicy:
    """`model` behind Anthropic's Messages API at `base_url` (the real one by default; tests give a local one)."""

    def __init__(self, model: str, api_key: str, base_url: str = ANTHROPIC_URL, timeout: float = 120.0,
                 max_retries: int = 0):
        import anthropic

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Anthropic base URL {base_url!r} is not an http(s) URL, e.g. {ANTHROPIC_URL}")
        if not model:
            raise ValueError("name the Anthropic model, e.g. claude-sonnet-4-5")
        if not api_key:
            raise ValueError("the Anthropic API needs a key; name the environment variable that holds it")
        if not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout}")
        self.model, self.timeout = model, timeout
        self.address = server_address(base_url)
        self.fingerprint = remote_fingerprint(base_url, model)  # as every remote model: where it ran, by name
        # an explicit api_key keeps the SDK from reading credentials of the environment or of a profile on disk
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout,
                                           max_retries=max_retries, open_telemetry=False)

    def reply(self, messages: list[dict], tools: list[dict], *, tool_choice: str | dict,
              parallel_tool_calls: bool, params: SamplingParams) -> Reply:
        """Ask for the next assistant message; the request is sent when the Reply is first iterated."""
        request = self.request(messages, tools, tool_choice, parallel_tool_calls, params)
        return Reply(lambda reply: self._stream(reply, request))

    def request(self, messages, tools, tool_choice, parallel_tool_calls, params: SamplingParams) -> dict:
        """The Messages API request for an OpenAI-format conversation. Sampling: max_tokens (which Anthropic
        requires; the agent's default is 256, raise it with --max-tokens) and the stop strings. Temperature, top_p
        and top_k are not sent: API version 2026-10-21, which this SDK speaks, refuses them at any value (a 400),
        and the SDK no longer takes them; seed and min_p have no Anthropic equal."""
        system, turns = anthropic_messages(messages)
        request: dict[str, Any] = dict(model=self.model, messages=turns, stream=True, max_tokens=params.max_tokens)
        if system:
            request["system"] = system
        if params.stop_strings:
            request["stop_sequences"] = list(params.stop_strings)
        if tools:
            request["tools"] = [anthropic_tool(t) for t in tools]
            request["tool_choice"] = anthropic_tool_choice(tool_choice, parallel_tool_calls)
        return request

    def _stream(self, reply: Reply, request: dict) -> Iterator[str]:
        import anthropic

        stream = None
        state = _StreamState()
        try:
            stream = self._client.messages.create(**request)
            for event in stream:
                text = state.fold(event, self.address)
                if text:
                    yield text
        except anthropic.APIError as exc:
            raise RemoteError(self._describe(exc), retryable=retryable(exc)) from None
        except json.JSONDecodeError as exc:
            raise RemoteError(f"{self.address} sent a reply that is not valid (not JSON: {exc})") from None
        finally:
            if stream is not None:
                stream.close()
        reply.result = state.result(self.address, self.model)

    def _describe(self, exc) -> str:
        """One line saying what went wrong with the API and what to do."""
        import anthropic

        where = self.address
        if isinstance(exc, anthropic.APITimeoutError):
            return f"{where} did not answer within {self.timeout:g} s (timed out); raise the backend's timeout"
        if isinstance(exc, anthropic.APIConnectionError):
            cause = one_line(str(exc.__cause__)) if exc.__cause__ else "connection error"
            return f"cannot reach {where} ({cause}); check the backend's base_url and the network"
        detail = error_detail(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            return f"{where} refused the API key (401: {detail}); check the key in the backend's api_key_env"
        if isinstance(exc, anthropic.NotFoundError):
            return f"{where} answered 404 for model {self.model!r} ({detail}); check the backend's model name"
        if isinstance(exc, anthropic.APIStatusError):
            return f"{where} answered {exc.status_code}: {detail}"
        return f"{where} sent an error: {detail}"


class _StreamState:
    """What the Messages stream said so far: text, tool_use blocks by index, stop reason, model, token counts."""

    def __init__(self):
        self.text: list[str] = []
        self.calls: dict[int, dict] = {}
        self.stop, self.model, self.input_tokens, self.output_tokens = None, None, None, None

    def fold(self, event, address: str) -> str:
        """Take in one stream event; return its text delta ("" for none)."""
        kind = getattr(event, "type", None)
        try:
            if kind == "message_start":
                self.model = event.message.model
                self.input_tokens = _input_tokens(event.message.usage)
                self.output_tokens = getattr(event.message.usage, "output_tokens", None)
            elif kind == "content_block_start" and event.content_block.type == "tool_use":
                block = event.content_block
                self.calls[event.index] = {"id": block.id, "name": block.name, "arguments": []}
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    self.text.append(delta.text)
                    return delta.text
                if delta.type == "input_json_delta":
                    if event.index not in self.calls:
                        raise RemoteError(f"{address} sent tool input for block {event.index}, which is not a "
                                          "tool_use block: not a valid reply")
                    self.calls[event.index]["arguments"].append(delta.partial_json)
            elif kind == "message_delta":
                self.stop = event.delta.stop_reason or self.stop
                if event.usage is not None:
                    self.output_tokens = event.usage.output_tokens
                    self.input_tokens = _input_tokens(event.usage) or self.input_tokens
        except AttributeError as exc:
            raise RemoteError(f"{address} sent an event that is not a Messages stream event "
                              f"({one_line(str(exc))})") from None
        return ""

    def result(self, address: str, model: str) -> AssistantReply:
        if self.stop is None:
            raise RemoteError(f"{address} ended the reply without a stop_reason (it stopped mid-answer, or it does "
                              "not speak Anthropic's Messages API)")
        calls = [WrittenCall(id=c["id"] or "", name=c["name"], arguments="".join(c["arguments"]))
                 for _, c in sorted(self.calls.items())]
        usage = Usage(backend=address, input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        return AssistantReply(content="".join(self.text), calls=calls,
                              finish_reason=STOP_REASONS.get(self.stop, self.stop), model=self.model or model,
                              usage=usage)


def anthropic_messages(messages: list[dict]) -> tuple[str, list[dict]]:
    """(system prompt, turns) for OpenAI-format `messages`. Turns alternate user / assistant: tool results are
    user turns and consecutive turns of one role are merged (tool results first, as the API requires)."""
    system, turns = [], []
    for m in messages:
        role = m["role"]
        if role == "system":
            system.append(_text(m.get("content")))
            continue
        if role == "tool":
            blocks = [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or "",
                       "content": _text(m.get("content"))}]
            role = "user"
        else:
            text = _text(m.get("content"))
            blocks = [{"type": "text", "text": text}] if text else []
            for call in (m.get("tool_calls") or []) if role == "assistant" else []:
                fn = call["function"]
                blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"],
                               "input": _input(fn.get("arguments"))})
        if not blocks:
            continue  # the API refuses empty turns and empty text blocks
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def anthropic_tool(tool: dict) -> dict:
    """An OpenAI function declaration as an Anthropic tool."""
    fn = tool["function"]
    out = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def anthropic_tool_choice(tool_choice: str | dict, parallel_tool_calls: bool) -> dict:
    """auto / none / required / {"type": "function", "function": {"name": N}} as Anthropic's tool_choice."""
    if isinstance(tool_choice, dict):
        choice = {"type": "tool", "name": tool_choice["function"]["name"]}
    elif tool_choice in ("auto", "none"):
        choice = {"type": tool_choice}
    elif tool_choice == "required":
        choice = {"type": "any"}
    else:
        raise ValueError(f"tool_choice {tool_choice!r} is not auto, none, required or a named function")
    if not parallel_tool_calls and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def retryable(exc) -> bool:
    """Whether the same request may succeed later: a timeout, no connection, 429, a 5xx or an overload."""
    import anthropic

    if isinstance(exc, (anthropic.APITimeoutError, anthropic.APIConnectionError)):
        return True
    if not isinstance(exc, anthropic.APIStatusError):
        return False
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    if error.get("type") in ("overloaded_error", "api_error", "rate_limit_error"):  # sent mid-stream, on a 200
        return True
    return exc.status_code == 429 or exc.status_code >= 500


def _input(arguments: str | None) -> dict:
    """A call's arguments as the tool_use input object; text that is not a JSON object (a call the agent could
    not use, answered with why) becomes {}."""
    try:
        value = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _text(content) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def _input_tokens(usage) -> int | None:
    """Input tokens counted by the API, cache reads and writes included (they are billed input too)."""
    if usage is None or getattr(usage, "input_tokens", None) is None:
        return None
    return usage.input_tokens + sum(getattr(usage, k, None) or 0 for k in
                                    ("cache_creation_input_tokens", "cache_read_input_tokens"))
