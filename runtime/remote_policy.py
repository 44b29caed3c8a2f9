"""`OpenAIPolicy`: a message-level policy (message_policy.py) served by any OpenAI-compatible chat server.

It calls `chat.completions` through the official `openai` SDK, streaming, with the agent's `tools`,
`tool_choice` ("auto" / "none" / "required" / a named function, passed as they are) and
`parallel_tool_calls`; it yields the content as it streams and assembles the tool-call deltas (id, name, then
argument fragments) into `WrittenCall`s. Sampling maps to temperature / top_p / max_tokens / seed / stop;
top_k and min_p, which OpenAI's own API does not know, are sent only when set; with `include_usage` the server
is asked for the token counts (`stream_options`), which then come back as the reply's `usage`. The API key is passed in (the
CLI reads it from an environment variable the user names); the SDK's own OPENAI_API_KEY lookup is never used,
so a key is never sent to a server the user did not give it for. Every failure becomes a one-line
`RemoteError`, marked retryable for a timeout, no connection, 429 or a 5xx. Not here: checking the calls, running tools, recording (the agent loop does those).
"""
from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from tinygpt.runtime.message_policy import AssistantReply, RemoteError, Reply, WrittenCall
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.traces.atraj import Usage

NO_KEY = "no-key"  # the SDK insists on a key; servers without auth ignore it
_DETAIL_CHARS = 300


def server_address(base_url: str) -> str:
    """`base_url` without user info, query or fragment, and without a trailing slash: safe to record and show."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def remote_fingerprint(base_url: str, model: str) -> str:
    """The trajectory header's model_fingerprint for `model` served at `base_url`: where it ran, by name (a remote
    model's weights are unknown here, so this cannot say what it is)."""
    return f"remote:{server_address(base_url)}#{model}"


class OpenAIPolicy:
    """`model` at the OpenAI-compatible server `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 2, include_usage: bool = False):
        import openai

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"remote URL {base_url!r} is not an http(s) URL; give the server's base URL, "
                             "e.g. http://127.0.0.1:8000/v1")
        if not model:
            raise ValueError("name the remote model (the server's GET /v1/models lists them)")
        if not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout}")
        self.model = model
        self.address = server_address(base_url)
        self.fingerprint = remote_fingerprint(base_url, model)
        self.timeout, self.max_retries, self.include_usage = timeout, max_retries, include_usage
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or NO_KEY, timeout=timeout,
                                     max_retries=max_retries)

    def reply(self, messages: list[dict], tools: list[dict], *, tool_choice: str | dict,
              parallel_tool_calls: bool, params: SamplingParams) -> Reply:
        """Ask for the next assistant message; the request is sent when the Reply is first iterated."""
        request = self._request(messages, tools, tool_choice, parallel_tool_calls, params)
        return Reply(lambda reply: self._stream(reply, request))

    def _request(self, messages, tools, tool_choice, parallel_tool_calls, params: SamplingParams) -> dict:
        request: dict[str, Any] = dict(model=self.model, messages=messages, stream=True,
                                       temperature=params.temperature, top_p=params.top_p,
                                       max_tokens=params.max_tokens)
        if tools:
            request.update(tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls)
        if params.seed is not None:
            request["seed"] = params.seed
        if self.include_usage:
            request["stream_options"] = {"include_usage": True}
        if params.stop_strings:
            request["stop"] = list(params.stop_strings)
        extra = {k: v for k, v in (("top_k", params.top_k), ("min_p", params.min_p)) if v}
        if extra:
            request["extra_body"] = extra
        return request

    def _stream(self, reply: Reply, request: dict) -> Iterator[str]:
        import openai

        stream = None
        content: list[str] = []
        calls: dict[int, dict] = {}
        finish, model, usage = None, None, None
        try:
            stream = self._client.chat.completions.create(**request)
            for chunk in stream:
                chunk_model, text, pieces, chunk_finish = self._read(chunk)
                usage = _usage(chunk, self.address) or usage
                model, finish = chunk_model or model, chunk_finish or finish
                for position, piece in enumerate(pieces):
                    _add_call_delta(calls, piece, position)
                if text:
                    content.append(text)
                    yield text
        except openai.APIError as exc:
            raise RemoteError(self._describe(exc), retryable=retryable(exc)) from None
        except json.JSONDecodeError as exc:  # a stream line whose data is not JSON
            raise RemoteError(f"{self.address} sent a reply that is not valid (not JSON: {exc})") from None
        finally:
            if stream is not None:
                stream.close()
        if finish is None:
            raise RemoteError(f"{self.address} ended the reply without a finish_reason (it stopped mid-answer, "
                              "or it is not an OpenAI-compatible chat server)")
        written = []
        for index in sorted(calls):
            c = calls[index]
            if not c["name"]:
                raise RemoteError(f"{self.address} sent a tool call without a function name: not a valid reply")
            written.append(WrittenCall(id=c["id"], name=c["name"], arguments="".join(c["arguments"])))
        reply.result = AssistantReply(content="".join(content), calls=written, finish_reason=finish,
                                      model=model or self.model, usage=usage)

    def _read(self, chunk) -> tuple[str | None, str, list[tuple], str | None]:
        """(model, content delta, tool-call fragments as (index, id, name, arguments), finish reason) of a chunk.

        The SDK builds chunks without validating them, so a malformed one shows up as a wrong attribute here."""
        try:
            text, pieces, finish = "", [], None
            for choice in chunk.choices or []:  # none: a usage chunk
                if choice.delta is not None:
                    text += choice.delta.content or ""
                    for tc in choice.delta.tool_calls or []:
                        fn = tc.function
                        pieces.append((tc.index, tc.id, fn.name if fn else None, fn.arguments if fn else None))
                finish = choice.finish_reason or finish
            return chunk.model or None, text, pieces, finish
        except (AttributeError, TypeError) as exc:
            raise RemoteError(f"{self.address} sent a chunk that is not a chat completion chunk "
                              f"({one_line(str(exc))})") from None

    def _describe(self, exc) -> str:
        """One line saying what went wrong with the server and what to do."""
        import openai

        where = self.address
        if isinstance(exc, openai.APITimeoutError):
            tries = f", {self.max_retries + 1} attempts" if self.max_retries else ""
            return (f"{where} did not answer within {self.timeout:g} s (timed out{tries}); check the server or "
                    "raise the timeout (--timeout)")
        if isinstance(exc, openai.APIConnectionError):
            cause = one_line(str(exc.__cause__)) if exc.__cause__ else "connection error"
            return f"cannot reach {where} ({cause}); is the server running at that address?"
        detail = error_detail(exc)
        if isinstance(exc, openai.AuthenticationError):
            return f"{where} refused the API key (401: {detail}); give the right key with --api-key-env VAR"
        if isinstance(exc, openai.NotFoundError):
            return (f"{where} answered 404 for model {self.model!r} ({detail}); check the model name (GET "
                    f"/models on the server lists them) and that the URL is the API's base, e.g. ending in /v1")
        if isinstance(exc, openai.APIStatusError):
            return f"{where} answered {exc.status_code}: {detail}"
        return f"{where} sent an error: {detail}"


def retryable(exc) -> bool:
    """Whether the same request may succeed later: a timeout, no connection, 429 or a 5xx (never another 4xx)."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


def _usage(chunk, address: str) -> Usage | None:
    """The token counts a chunk carries (the last chunk, when asked for with stream_options), else None."""
    counted = getattr(chunk, "usage", None)
    if counted is None:
        return None
    return Usage(backend=address, input_tokens=getattr(counted, "prompt_tokens", None),
                 output_tokens=getattr(counted, "completion_tokens", None))


def _add_call_delta(calls: dict[int, dict], piece: tuple, position: int) -> None:
    """Fold one streamed tool-call fragment (index, id, name, arguments) into `calls`: by its index (its position
    in the chunk if the server gave none); the name comes once, the arguments in parts."""
    index, call_id, name, arguments = piece
    call = calls.setdefault(index if isinstance(index, int) else position, {"id": "", "name": "", "arguments": []})
    if call_id:
        call["id"] = call_id
    if name and not call["name"]:
        call["name"] = name
    if arguments:
        call["arguments"].append(arguments)


def error_detail(exc) -> str:
    """An SDK error's message (the JSON body's `error.message` or `message`), on one line."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    return one_line(str(message or getattr(exc, "message", "") or type(exc).__name__))


def one_line(text: str) -> str:
    """`text` on one line, cut to a few hundred characters."""
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + " ..."
