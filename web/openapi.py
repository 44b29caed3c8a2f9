"""The published OpenAPI spec, generated from the same msgspec Structs that decode and encode the bodies.

Routes read raw bodies (decoded with msgspec, not pydantic), so FastAPI cannot see their schemas; each route
names its request and response Structs here (`body_of`, `responses_of`) and `install` merges msgspec's JSON
Schema components into FastAPI's spec. One source for the wire format, the validator and the docs.
Not here: the routes themselves.
"""
from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

from tinygpt.web import wire_ollama, wire_openai

REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def body_of(name: str) -> dict:
    """`openapi_extra` for a route whose JSON body is the Struct `name`."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(name)}}}}


_ERRORS = {400: "malformed JSON or an invalid field", 401: "missing or wrong API key",
           403: "Host header not allowed", 404: "unknown model or route", 413: "body too large",
           429: "too many queued requests"}


def responses_of(name: str | None, *, stream: str | None = None, item: str | None = None, ollama: bool = False,
                 media: str = "application/json") -> dict[int | str, Any]:
    """`responses` for a route: 200 with `name` (and a stream of `item`s), and the error statuses."""
    ok: dict[str, Any] = {media: {"schema": _ref(name) if name else {"type": "string"}}}
    if stream == "text/event-stream":  # an event's data is a JSON chunk (or an error), the last is [DONE]
        data = {"anyOf": [{"type": "string", "const": "[DONE]"},
                          {"type": "string", "contentMediaType": "application/json",
                           "contentSchema": {"anyOf": [_ref(item or name), _ref("ErrorBody")]}}]}
        ok[stream] = {"schema": {"type": "object", "required": ["data"],
                                 "properties": {"data": data, "event": {"type": "string"}}}}
    elif stream:  # NDJSON: each line is one of these
        ok[stream] = {"schema": {"anyOf": [_ref(item or name), _ref("OllamaError")]}}
    err = _ref("OllamaError" if ollama else "ErrorBody")
    out: dict[int | str, Any] = {200: {"description": "OK", "content": ok}}
    for status, why in _ERRORS.items():
        out[status] = {"description": why, "content": {"application/json": {"schema": err}}}
    return out


def install(app: FastAPI, model_names: list[str]) -> None:
    """Make `app.openapi()` include the msgspec components; request `model` fields list the served names."""
    types = wire_openai.REQUESTS + wire_openai.RESPONSES + wire_ollama.REQUESTS + wire_ollama.RESPONSES
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    for name in ("ChatCompletionRequest", "CompletionRequest", "ChatRequest", "GenerateRequest", "ShowRequest"):
        components[name]["properties"]["model"] = {"type": "string", "enum": model_names,
                                                   "description": "the served model (others: 404)"}
    components["ShowRequest"]["properties"]["name"] = {"type": "string", "enum": model_names,
                                                       "description": "older clients' spelling of `model`"}
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = original()
            spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi
