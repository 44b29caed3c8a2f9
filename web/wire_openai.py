"""OpenAI wire formats (chat completions, completions, models) as msgspec Structs.

Requests tolerate unknown fields (clients send many we do not use) but type-check every field we read, with
ranges as msgspec `Meta` constraints, so a bad value is a 400 that names the field. Responses follow OpenAI's
shapes; tinygpt's extensions are `session` (server-side KV kept across calls), `return_token_ids` (exact
prompt and output token ids in the response) and `tinygpt` (the router's decision for model "auto"). Not here: routing, validation beyond types (openai_api.py).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Temperature = Annotated[float, Meta(ge=0, le=2)]
TopP = Annotated[float, Meta(ge=0, le=1)]  # 0: only the most likely token (web/generation.py)
MaxTokens = Annotated[int, Meta(ge=1)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
Seed = Annotated[int, Meta(ge=-(2 ** 63), le=2 ** 63 - 1)]
SessionId = Annotated[str, Meta(min_length=1, max_length=128)]
Stop = str | Annotated[list[str], Meta(max_length=16)] | None


class Request(Struct, frozen=True, kw_only=True):
    """Base for request bodies: unknown fields are ignored, known ones are typed."""


class FunctionDef(Request, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Request, kw_only=True):
    type: Literal["function"] = "function"
    function: FunctionDef


class FunctionCall(Request, kw_only=True):
    name: str
    arguments: str = "{}"


class ToolCall(Request, kw_only=True):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(Request, kw_only=True):
    """A text part, or an assistant's `refusal` part (its text is in `refusal`). Other types (images, audio,
    files) decode, so that prompts.py can refuse them with a message that says so."""

    type: str
    text: str | None = None
    refusal: str | None = None


class ChatMessage(Request, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]  # function: legacy tool result
    content: str | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None  # legacy form of one assistant tool call
    tool_call_id: str | None = None


class NamedFunction(Request, kw_only=True):
    name: str


class NamedToolChoice(Request, kw_only=True):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(Request, kw_only=True):
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Request, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Request, kw_only=True):
    include_usage: bool | None = None


class ChatCompletionRequest(Request, kw_only=True):
    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: Annotated[list[FunctionDef], Meta(min_length=1)] | None = None  # deprecated form of tools
    function_call: Literal["none", "auto"] | NamedFunction | None = None     # deprecated form of tool_choice
    response_format: ResponseFormat | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    stop: Stop = None
    seed: Seed | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    n: Annotated[int, Meta(ge=1)] | None = None  # more than one choice: 400 in openai_api.py
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    user: str | None = None
    session: SessionId | None = None
    return_token_ids: bool = False


class SentTools(Request, kw_only=True):
    """A chat request's tool definitions exactly as the client sent them (keys tinygpt does not model kept, none
    added), for the chat template; `ChatCompletionRequest` types the same fields for validation and grammars."""

    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None


class CompletionRequest(Request, kw_only=True):
    model: str
    # text, token ids, or a one-element list of either; null means the document start (openai_api.py)
    prompt: str | Annotated[list[str | Annotated[int, Meta(ge=0)] | list[Annotated[int, Meta(ge=0)]]],
                            Meta(min_length=1)] | None
    max_tokens: Annotated[int, Meta(ge=0)] | None = None  # None: 16; 0: nothing generated (echo scores a prompt)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: Stop = None
    seed: Seed | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool | None = None
    n: Annotated[int, Meta(ge=1)] | None = None  # more than one choice: 400 in openai_api.py
    best_of: Annotated[int, Meta(ge=0)] | None = None  # more than n: 400 in openai_api.py
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    suffix: str | None = None
    user: str | None = None
    session: SessionId | None = None
    return_token_ids: bool = False


# ---- responses ---------------------------------------------------------------------------------------------
class Response(Struct, frozen=True, kw_only=True):
    """Base for response bodies."""


class TopLogprob(Response, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Response, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Response, kw_only=True):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class OutFunctionCall(Response, kw_only=True):
    name: str
    arguments: str


class OutToolCall(Response, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: OutFunctionCall


class AssistantMessage(Response, kw_only=True):
    """OpenAI's schema: content and refusal always present (may be null); tool_calls absent or a list;
    function_call only for callers that used the legacy `functions` form."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[OutToolCall] | UnsetType = UNSET
    function_call: OutFunctionCall | UnsetType = UNSET


class PromptTokensDetails(Response, kw_only=True):
    cached_tokens: int


class Usage(Response, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


class ChatChoice(Response, kw_only=True):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int] | UnsetType = UNSET


class ChatCompletion(Response, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage
    prompt_token_ids: list[int] | UnsetType = UNSET
    tinygpt: dict[str, Any] | UnsetType = UNSET  # extension: {"route": the router's decision} for model "auto"


class DeltaFunction(Response, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str = ""


class DeltaToolCall(Response, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: DeltaFunction


class Delta(Response, kw_only=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[DeltaToolCall] | UnsetType = UNSET
    function_call: DeltaFunction | UnsetType = UNSET  # legacy `functions` callers


class ChunkChoice(Response, kw_only=True):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int] | UnsetType = UNSET


class ChatCompletionChunk(Response, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    prompt_token_ids: list[int] | UnsetType = UNSET
    tinygpt: dict[str, Any] | UnsetType = UNSET  # on the first chunk of a routed stream (model "auto")


class LegacyLogprobs(Response, kw_only=True):
    """With `echo`, the prompt's tokens come first; its first token has no logprob (null), as OpenAI gives."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None
    text_offset: list[int]


class CompletionChoice(Response, kw_only=True):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: LegacyLogprobs | None = None
    token_ids: list[int] | UnsetType = UNSET


class Completion(Response, kw_only=True):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | UnsetType = UNSET
    prompt_token_ids: list[int] | UnsetType = UNSET


class ModelObject(Response, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(Response, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorDetail(Response, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Response, kw_only=True):
    error: ErrorDetail


REQUESTS = (ChatCompletionRequest, CompletionRequest)
RESPONSES = (ChatCompletion, ChatCompletionChunk, Completion, ModelList, ModelObject, ErrorBody)


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
