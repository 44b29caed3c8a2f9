"""The events the agent loop yields, consumed alike by the REPL, the server and the trajectory recorder.

What has a trajectory twin IS the `.atraj` record (tinygpt.traces.atraj), yielded as the recorder writes it:
`Message` (ids appended for a user/system message), `ModelCall` (exact ids in and out, logprobs, parsed calls),
`ToolCall` (a call about to run) and `ToolResult` (what it returned, and the ids appended for it). Defined here
are only the stream's own events, which no file holds: `Token` (a sampled token as it streams), `TextDelta`
(a message-level model's text as it streams: it has no tokens), `TurnEnd` and `Error`. No conversion happens
between the loop and the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult


@dataclass(frozen=True)
class Token:
    """A sampled token, as it streams."""

    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TextDelta:
    """A piece of a message-level (remote) model's answer text, as it streams."""

    text: str


@dataclass(frozen=True)
class TurnEnd:
    """The user turn is over: the model answered, ran out of steps, was cut off, or a remote model gave no reply."""

    reason: str  # "answer" | "max_steps" | "length" | "truncated_call" | "remote_error"
    steps: int


@dataclass(frozen=True)
class Error:
    """A model fault worth showing (e.g. a call cut off by the token budget). Bugs raise instead."""

    step: int
    message: str
    detail: Any = None


AgentEvent = Message | Token | TextDelta | ModelCall | ToolCall | ToolResult | TurnEnd | Error
