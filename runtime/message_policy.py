"""Message-level policies: a model that speaks chat messages, not token ids (a remote server; later a cloud API).

A `MessagePolicy` gets the conversation's messages (OpenAI chat format; an assistant's `tool_calls` carry their
arguments as JSON text), the tools (OpenAI function declarations), the tool choice and the sampling parameters,
and returns a `Reply`: iterate it for the answer's text as it streams; `.result` is then the `AssistantReply`
(text, the calls as the model wrote them, finish reason, the model that answered). Failing to get a reply at all
(unreachable, key refused, no such model, timed out, a reply that is not valid) raises `RemoteError` with a
one-line message. Calls are not checked here: the agent checks them against the tools (message_step.py).
The token-id policies (a local model, a script) are in policy.py; the OpenAI-compatible one in remote_policy.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, runtime_checkable

from tinygpt.runtime.sampling import SamplingParams
from tinygpt.traces.atraj import Usage


class RemoteError(RuntimeError):
    """No usable reply came back (not a model fault: the model never answered). The message is one line.

    `retryable`: the same request may succeed later (a timeout, no connection, 429, a 5xx); a 4xx or a reply that
    is not valid is not."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class WrittenCall:
    """A tool call as the model wrote it, not yet checked: `arguments` is its JSON text, `id` the server's ("" if
    it gave none)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class AssistantReply:
    """A whole assistant message: `content` (text, "" for none), `calls`, `finish_reason` as the server said it
    ("stop", "length", "tool_calls", ...), `model`, the name the server says answered, and `usage` (tokens, cost,
    attempts: recorded on the ModelCall; None where the policy does not count them)."""

    content: str
    calls: list[WrittenCall]
    finish_reason: str
    model: str
    usage: Usage | None = None


class Reply:
    """An answer in flight: iterate for text deltas (str); `.result` is set once iteration ends.

    `run(reply)` returns the delta iterator and sets `reply.result` when it finishes (as engine.Generation)."""

    def __init__(self, run: Callable[["Reply"], Iterator[str]]):
        self.result: AssistantReply | None = None
        self.note: str | None = None  # how the answer came, when not as asked (a backend's fallback), once known
        self._deltas = run(self)

    def __iter__(self) -> Iterator[str]:
        return self._deltas

    def close(self) -> None:
        """Stop early (Ctrl-C, the consumer went away): the connection is released now."""
        self._deltas.close()


@runtime_checkable
class MessagePolicy(Protocol):
    """What the agent needs of a message-level model: who it is (for the trajectory header) and `reply`."""

    model: str  # the name the model is asked for
    fingerprint: str  # the trajectory header's model_fingerprint (see runtime/recording.py)

    def reply(self, messages: list[dict], tools: list[dict], *, tool_choice: str | dict,
              parallel_tool_calls: bool, params: SamplingParams) -> Reply: ...
