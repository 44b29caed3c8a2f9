"""Ollama wire formats (/api/chat, /api/generate, /api/show, /api/tags, /api/ps, /api/version) as msgspec Structs.

Requests tolerate unknown fields and options (Ollama clients send many llama.cpp knobs we do not use); the
fields we read are typed. Tool-call arguments are JSON objects, as in Ollama. tinygpt's extensions are the
same as on the OpenAI side: `session` and `return_token_ids`. Not here: behaviour (ollama_api.py).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from tinygpt.web.wire_openai import SessionId, Tool

KeepAlive = str | float | None
Format = str | dict[str, Any] | None
MAX_STOPS = 16


class Request(Struct, frozen=True, kw_only=True):
    """Base for request bodies: unknown fields are ignored, known ones are typed."""


class Options(Request, kw_only=True):
    temperature: Annotated[float, Meta(ge=0, le=100)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    num_predict: int | None = None
    stop: Annotated[list[str], Meta(max_length=MAX_STOPS)] | None = None  # as many as OpenAI's `stop`
    seed: int | None = None
    repeat_penalty: Annotated[float, Meta(gt=0, le=100)] | None = None
    repeat_last_n: Annotated[int, Meta(ge=-1)] | None = None
    presence_penalty: Annotated[float, Meta(ge=-100, le=100)] | None = None
    frequency_penalty: Annotated[float, Meta(ge=-100, le=100)] | None = None
    num_ctx: int | None = None


class CallFunction(Request, kw_only=True):
    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class OllamaToolCall(Request, kw_only=True):
    function: CallFunction
    id: str | None = None


class Message(Request, kw_only=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class _GenerationRequest(Request, kw_only=True):
    """What /api/chat and /api/generate share: output format, sampling options, streaming, lifetime, extras."""

    model: Annotated[str, Meta(min_length=1)]
    format: Format = None
    options: Options | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] = 0
    session: SessionId | None = None
    return_token_ids: bool = False


class ChatRequest(_GenerationRequest, kw_only=True):
    messages: list[Message] = []
    tools: list[Tool] | None = None


class GenerateRequest(_GenerationRequest, kw_only=True):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[Annotated[int, Meta(ge=0)]] | None = None
    raw: bool = False
    images: list[str] | None = None


class ShowRequest(Request, kw_only=True):
    """`model` names the model; older clients (Continue.dev) send `name`, which Ollama also accepts."""

    model: Annotated[str, Meta(min_length=1)] | None = None
    name: Annotated[str, Meta(min_length=1)] | None = None
    verbose: bool = False


# ---- responses ---------------------------------------------------------------------------------------------
class Response(Struct, frozen=True, kw_only=True):
    """Base for response bodies."""


class OutCallFunction(Response, kw_only=True):
    name: str
    arguments: dict[str, Any]
    index: int


class OllamaOutToolCall(Response, kw_only=True):
    id: str
    function: OutCallFunction


class OutMessage(Response, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str
    tool_calls: list[OllamaOutToolCall] | UnsetType = UNSET


class OllamaTopLogprob(Response, kw_only=True):
    token: str
    logprob: float


class Logprob(Response, kw_only=True):
    token: str
    logprob: float
    top_logprobs: list[OllamaTopLogprob]


class _Chunk(Response, kw_only=True):
    """What /api/chat and /api/generate lines share: the model, the time, and the final line's statistics."""

    model: str
    created_at: str
    done: bool
    done_reason: str | UnsetType = UNSET
    total_duration: int | UnsetType = UNSET
    load_duration: int | UnsetType = UNSET
    prompt_eval_count: int | UnsetType = UNSET
    prompt_eval_duration: int | UnsetType = UNSET
    eval_count: int | UnsetType = UNSET
    eval_duration: int | UnsetType = UNSET
    logprobs: list[Logprob] | UnsetType = UNSET
    prompt_token_ids: list[int] | UnsetType = UNSET
    token_ids: list[int] | UnsetType = UNSET
    cached_tokens: int | UnsetType = UNSET
    tinygpt: dict[str, Any] | UnsetType = UNSET  # extension: {"route": the router's decision} for model "auto"


class ChatChunk(_Chunk, kw_only=True):
    """A line of the /api/chat stream, or the whole answer when not streaming (then `done` is true)."""

    message: OutMessage


class GenerateChunk(_Chunk, kw_only=True):
    """A line of the /api/generate stream, or the whole answer when not streaming."""

    response: str
    context: list[int] | UnsetType = UNSET


class Details(Response, kw_only=True):
    parent_model: str
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ModelEntry(Response, kw_only=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class RunningModel(Response, kw_only=True):
    name: str
    model: str
    size: int
    digest: str
    details: Details
    expires_at: str
    size_vram: int
    context_length: int


class TagsResponse(Response, kw_only=True):
    models: list[ModelEntry]


class PsResponse(Response, kw_only=True):
    models: list[RunningModel]


class ShowResponse(Response, kw_only=True):
    modelfile: str
    parameters: str
    template: str
    details: Details
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class VersionResponse(Response, kw_only=True):
    version: str


class OllamaError(Response, kw_only=True):
    error: str


REQUESTS = (ChatRequest, GenerateRequest, ShowRequest)
RESPONSES = (ChatChunk, GenerateChunk, TagsResponse, PsResponse, ShowResponse, VersionResponse, OllamaError)
