"""The `.atraj` record types: one header line, then one line per event (see traces/FORMAT.md).

Every line of a file decodes to one member of `Line`, a tagged union on the field `kind`. The Structs are pure
values (frozen, kw_only, unknown fields forbidden); framing, CRCs and files live in `line.py` / `writer.py`.
They are also tinygpt's one definition of a tool spec, a tool call, a tool result, a message and a model call:
the agent loop yields these very values and the recorder writes them as they are (only the HTTP wire in `web/`
has its own Structs). This module does not read or write anything and does not know about tokenizers.
"""
from typing import Annotated, Any, Literal, Union

import msgspec

FORMAT_VERSION = 5
"""Current `.atraj` version (3: calls carry `cached_tokens` and `sampling`, results `truncated`, messages
`tool_calls`; 4: the header's route carries `kind`, `domain`, `score` and `threshold`; 5: calls carry `usage`).
Readers accept any version <= this one; see FORMAT.md."""

Role = Literal["system", "user", "assistant", "tool"]
TokenId = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]


class _Value(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every `.atraj` value: frozen, keyword-only, strict about unknown fields."""


class ToolSpec(_Value, kw_only=True):
    """A tool offered to the model: the JSON-schema function declaration."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = {}


class Sampling(_Value, kw_only=True):
    """Sampling parameters the engine used for every call of the episode."""

    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


class RouteDecision(_Value, kw_only=True):
    """Why this episode ran on this model; filled by the router, absent when nothing was routed.

    `kind`: what the target is (specialist | generalist | remote | cloud); `domain`: the domain the router judged
    the request to be in; `score`: its calibrated confidence in that; `threshold`: what the score was compared with;
    `scores`: the score of every target it considered."""

    target: str
    policy: str = ""
    reason: str = ""
    scores: dict[str, float] = {}
    kind: str = ""
    domain: str = ""
    score: float | None = None
    threshold: float | None = None


class ToolCall(_Value, kw_only=True):
    """One tool call: parsed from the sampled ids (never the reverse), or returned by a remote model."""

    id: str
    name: str
    arguments: dict[str, Any] = {}


class Reward(_Value, kw_only=True):
    """The episode's reward: its value, who computed it, and why."""

    value: float
    source: str
    reason: str = ""


class Verdict(_Value, kw_only=True):
    """The task checker's verdict on the episode."""

    passed: bool
    checker: str
    details: str = ""


class Header(_Value, kw_only=True, tag="header", tag_field="kind"):
    """First line of every file: what produced the episode and under which settings."""

    version: int = FORMAT_VERSION
    episode_id: str
    task_id: str
    split: str
    created_at: float
    model: str
    model_fingerprint: str
    adapter_version: str | None = None
    tokenizer_hash: str
    chat_template_hash: str
    tools: list[ToolSpec] = []
    tools_hash: str = ""
    sampling: Sampling
    route: RouteDecision | None = None
    labels: dict[str, str] = {}


class Message(_Value, kw_only=True, tag="message", tag_field="kind"):
    """A message appended to the sequence; `token_ids` are the ids appended for it.

    Messages appended together (a system message with the first user message, a loaded conversation's history)
    are one run of ids, carried by the last of them (the others have None). Assistant messages appear only as
    history the episode starts from, never sampled in it (those are ModelCalls); `tool_calls` are theirs.
    """

    role: Role
    content: str
    token_ids: list[TokenId] | None = None
    tool_calls: list[ToolCall] = []


class Usage(_Value, kw_only=True):
    """What a remote or cloud call used: the backend that answered, the tokens its provider counted, the cost from
    the price table (None: no price for the model), the attempts made and a note (e.g. a fallback)."""

    backend: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    attempts: int = 1
    note: str = ""


class ModelCall(_Value, kw_only=True, tag="model_call", tag_field="kind"):
    """One model call.

    `prompt_token_ids` are exactly the ids appended since the previous call's output (for the first call: the
    whole initial prompt); `output_token_ids` are the sampled ids, stop token included. Both are None, and
    `token_exact` False, for a model that returns no ids (cloud, teacher over HTTP). `cached_tokens`: how many
    ids of the call's whole prompt the engine already held (KV reuse) and did not prefill. `sampling`: this
    call's parameters (None: the header's). `usage`: a remote backend's tokens, cost and attempts (None: local).
    """

    prompt_token_ids: list[TokenId] | None
    output_token_ids: list[TokenId] | None
    logprobs: list[float] | None = None
    text: str
    content: str | None = None
    tool_calls: list[ToolCall] = []
    finish_reason: str
    latency_s: float
    token_exact: bool = True
    model: str | None = None
    cached_tokens: int = 0
    sampling: Sampling | None = None
    usage: Usage | None = None


class ToolResult(_Value, kw_only=True, tag="tool_result", tag_field="kind"):
    """A tool's result: its text, and the ids appended for it (a run inside the next call's prompt ids).

    `call_id` names the call it answers ("" when it answers none: a call that could not be used, or a direct
    `Toolset.call`); `truncated` says the text was cut to the tool set's output cap.
    """

    call_id: str
    name: str
    content: str
    token_ids: list[TokenId] | None = None
    is_error: bool = False
    latency_s: float = 0.0
    truncated: bool = False


class End(_Value, kw_only=True, tag="end", tag_field="kind"):
    """Last line of a finished episode."""

    reward: Reward
    verdict: Verdict | None = None
    status: str = "done"


Event = Union[Message, ModelCall, ToolResult]
Line = Union[Header, Message, ModelCall, ToolResult, End]

ADDED_FIELDS: dict[int, dict[str, tuple[str, ...]]] = {
    3: {"message": ("tool_calls",), "model_call": ("cached_tokens", "sampling"), "tool_result": ("truncated",)},
    4: {"header": ("route.kind", "route.domain", "route.score", "route.threshold")},
    5: {"model_call": ("usage",)},
}
"""Fields each version added, by record kind (a dotted name is a field of a nested value): a file continued in an
older version is written without them."""


def check_model_call(call: ModelCall) -> None:
    """Raise ValueError when a ModelCall is internally inconsistent (ids vs token_exact vs logprobs)."""
    if call.token_exact:
        if call.prompt_token_ids is None or call.output_token_ids is None:
            raise ValueError(
                "a token-exact model call needs prompt_token_ids and output_token_ids; "
                "record turns from models that return no ids with token_exact=False"
            )
        if call.logprobs is not None and len(call.logprobs) != len(call.output_token_ids):
            raise ValueError(
                f"logprobs has {len(call.logprobs)} entries but output_token_ids has "
                f"{len(call.output_token_ids)}; give one logprob per sampled token or none"
            )
    elif call.prompt_token_ids is not None or call.output_token_ids is not None:
        raise ValueError("a model call with token_exact=False must not carry token ids (they would not be exact)")
