"""The events the agent loop yields, consumed alike by the REPL, the server and the trajectory recorder.

Plain frozen value types. `ModelCall` carries the exact ids: `prompt_ids` are the ids appended since the
previous call's output (the first call: the whole initial prompt) and `output_ids` the sampled ones, so an
episode's token sequence is the concatenation of (prompt_ids + output_ids) over its calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Token:
    """A sampled token, as it streams."""

    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class Message:
    """A user/system message appended to the transcript; `ids` are exactly the ids appended for it
    (template tokens and the assistant header included)."""

    role: str
    content: str
    ids: list[int]


@dataclass(frozen=True)
class ModelCall:
    """One model call, complete: exact ids in and out, logprobs, parsed calls, timing."""

    step: int
    prompt_ids: list[int]
    output_ids: list[int]
    logprobs: list[float]
    text: str
    content: str
    tool_calls: list[dict]  # [{"id", "name", "arguments": dict}]
    finish_reason: str  # "stop" | "length" | "tool_calls" | "truncated"
    cached_tokens: int
    latency_s: float
    token_exact: bool = True


@dataclass(frozen=True)
class ToolCall:
    """A call the model made, validated by the grammar, about to run."""

    step: int
    id: str
    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned, as the model will see it. `ids` are set on the last result of a step and
    hold the ids appended for all of that step's results (the template groups them into one turn)."""

    step: int
    call_id: str
    name: str
    content: str
    is_error: bool
    elapsed_s: float
    ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TurnEnd:
    """The user turn is over: the model answered, ran out of steps, or was cut off."""

    reason: str  # "answer" | "max_steps" | "length" | "truncated_call"
    steps: int


@dataclass(frozen=True)
class Error:
    """A model fault worth showing (e.g. a call cut off by the token budget). Bugs raise instead."""

    step: int
    message: str
    detail: Any = None


AgentEvent = Message | Token | ModelCall | ToolCall | ToolResult | TurnEnd | Error
