"""HTTP errors and their two wire shapes: OpenAI's `{"error": {message, type, param, code}}` under /v1, and
Ollama's `{"error": "..."}` everywhere else.

`ApiError` is what handlers raise for anything a client got wrong (4xx, never 5xx); `decode` turns a body
into a msgspec Struct or raises a 400 that names the bad field. Not here: deciding *whether* a request is
valid beyond its types (the API modules do that).
"""
from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.responses import Response

T = TypeVar("T")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 502: "server_error", 503: "server_error"}


class ApiError(Exception):
    """An error answer: HTTP status, a message that says what was wrong and what to do, and OpenAI's extras."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, err: ApiError) -> bytes:
    """The error in the shape the client of `path` expects."""
    if is_openai_path(path):
        detail = {"message": err.message, "type": _TYPES.get(err.status, "invalid_request_error"),
                  "param": err.param, "code": err.code}
        return msgspec.json.encode({"error": detail})
    return msgspec.json.encode({"error": err.message})


def error_response(path: str, err: ApiError, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(path, err), status_code=err.status, media_type="application/json",
                    headers=headers)


_PATH = re.compile(r"at `\$(?P<path>[^`]*)`")


def decode(body: bytes, type_: type[T]) -> T:
    """Decode a JSON body into `type_`; malformed JSON or a wrongly typed field is a 400 naming the field."""
    if not body.strip():
        raise ApiError(400, "the request body is empty: send a JSON object", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=type_, strict=False)  # 2.0 is an integer in JSON Schema
    except msgspec.ValidationError as exc:
        m = _PATH.search(str(exc))
        param = m.group("path").lstrip(".") if m else None
        raise ApiError(400, f"invalid request: {exc}", param=param or None, code="invalid_value") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from exc
