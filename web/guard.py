"""The server's front door, as one ASGI middleware, checked in this order:
- Host allow-list (403: a page on a DNS-rebinding domain cannot reach a loopback server through the browser);
- API key (`Authorization: Bearer KEY` on every route, 401 otherwise, constant-time compare), except a GET of
  a `keyless_paths` path that sends no Authorization header at all: it passes marked `KEYLESS` in the request's
  state, and the route decides what such a caller sees (the model list: config.MODELS_WITHOUT_KEY);
- cross-site requests: a state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` is not allowed, or
  that a browser marks `Sec-Fetch-Site: cross-site` without an Origin, gets 403; a body sent as `text/plain` or
  `multipart/form-data` (what a page can send without a CORS preflight) gets 415 unless its Origin is allowed.
  No Origin and JSON, a missing content type or curl's default form type (SDKs, curl, Ollama's clients) pass;
- the body: 413 over the limit (announced by Content-Length or seen while reading a chunked body), 408 if
  it has not all arrived within `body_timeout_s`, 400 if its JSON nests deeper than `max_depth` (checked
  before anything decodes it, so no route can hit Python's recursion limit). It is read here and replayed.
A refused request's unread body is drained (at most LINGER_BYTES for LINGER_S) before the connection closes,
so a client that sends everything before reading (urllib) reads the answer instead of a reset.
Errors come in the shape of the route's API (errors.py); CORS preflights are answered by the CORS middleware
outside this one. Not here: anything about generation.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from typing import Callable

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinygpt.web.errors import ApiError, error_response

LINGER_BYTES = 64 << 20   # most of a refused body read (and dropped) before closing
LINGER_S = 5.0            # longest spent doing so
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BROWSER_ONLY_TYPES = frozenset({"text/plain", "multipart/form-data"})
KEYLESS = "tinygpt.keyless"  # request-state flag: passed without a key (see keyless_paths)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON text `body` nests arrays/objects more than `limit` levels (brackets in strings don't
    count). Byte-level passes in C and one numpy cumulative sum: ~50 ms for 8 MiB of brackets. Exact for valid
    JSON; on invalid JSON it may miscount, and the decoder refuses that body anyway."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # In valid JSON a backslash only starts a two-byte escape inside a string; once `\\` and `\"` are gone,
    # quotes alternate between opening and closing a string, so every other piece is outside strings.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.translate(None, _NOT_BRACKETS).split(b'"')[0::2])
    signs = np.frombuffer(outside.translate(_SIGNS), dtype=np.int8)
    return bool(signs.size) and int(signs.cumsum(dtype=np.int32).max()) > limit


class Guard:
    def __init__(self, app: ASGIApp, *, allowed_hosts: frozenset[str] | None, api_key: str | None,
                 max_body: int, origin_allowed: Callable[[str], bool] = lambda _o: False, max_depth: int = 64,
                 body_timeout_s: float = 30.0, keyless_paths: frozenset[str] = frozenset()):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.api_key = api_key.encode() if api_key else None
        self.keyless_paths = keyless_paths
        self.max_body = max_body
        self.origin_allowed = origin_allowed
        self.max_depth = max_depth
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        err = (self._check_host(headers) or self._check_key(scope, headers) or self._check_site(scope, headers)
               or self._check_length(headers))
        if err is not None:
            # Drain the unread body, unless the client waits for "100 Continue" (then it never sends it).
            expects = headers.get("expect", b"").lower() == b"100-continue"
            await self._refuse(scope, receive, send, err, linger=not expects)
            return
        body, err = await self._read_body(receive)
        if err is None and body and json_too_deep(body, self.max_depth):
            err = ApiError(400, f"the JSON body nests more than {self.max_depth} levels deep; flatten it "
                                "(this limit covers tool and response schemas too)", code="invalid_json")
        if err is not None:
            await self._refuse(scope, receive, send, err, linger=err.status == 413)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_host(self, headers: dict[str, bytes]) -> ApiError | None:
        if self.allowed_hosts is None or "host" not in headers:
            return None
        host = headers["host"].decode("latin-1").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
        if name.startswith("[") and "]:" in name:
            name = name[: name.index("]") + 1]
        if name not in self.allowed_hosts:
            return ApiError(403, f"Host {host!r} is not allowed; this server answers requests for "
                                 f"{', '.join(sorted(self.allowed_hosts))} (add one with --allowed-host)")
        return None

    def _check_key(self, scope: Scope, headers: dict[str, bytes]) -> ApiError | None:
        if self.api_key is None:
            return None
        if ("authorization" not in headers and scope.get("method") == "GET"
                and scope.get("path") in self.keyless_paths):
            scope.setdefault("state", {})[KEYLESS] = True  # a wrong key is still refused below
            return None
        auth = headers.get("authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
            return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            code="invalid_api_key")
        return None

    def _check_site(self, scope: Scope, headers: dict[str, bytes]) -> ApiError | None:
        """Refuse what a page on another site can make a browser send without asking (a "simple" request)."""
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        origin = headers.get("origin", b"").decode("latin-1").strip()
        if origin and (self.origin_allowed(origin) or _same_origin(origin, headers)):
            return None  # a page the user allowed may send what it likes
        if origin:
            return ApiError(403, f"requests from pages on {origin} are refused; to allow that page, start the "
                                 f"server with --cors-origin {origin}", code="origin_not_allowed")
        if not origin and headers.get("sec-fetch-site", b"").lower() == b"cross-site":
            return ApiError(403, "cross-site requests from a browser are refused; call the API from your own "
                                 "code, or allow the page with --cors-origin", code="origin_not_allowed")
        media = headers.get("content-type", b"").split(b";", 1)[0].strip().lower().decode("latin-1")
        if media in BROWSER_ONLY_TYPES:
            return ApiError(415, f"the body is sent as {media}; send JSON with 'Content-Type: application/json'",
                            code="unsupported_media_type")
        return None

    def _check_length(self, headers: dict[str, bytes]) -> ApiError | None:
        raw = headers.get("content-length")
        if raw is None:
            return None
        try:
            n = int(raw)
        except ValueError:
            return ApiError(400, "Content-Length is not a number")
        return self._too_large(n) if n > self.max_body else None

    def _too_large(self, n: int | None = None) -> ApiError:
        size = f"{n} bytes" if n is not None else "more"
        return ApiError(413, f"the request body is {size}; the limit is {self.max_body} bytes "
                             "(raise it with --max-body-mb)", code="request_too_large")

    async def _read_body(self, receive: Receive) -> tuple[bytes, ApiError | None]:
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return b"", ApiError(408, f"the request body did not arrive within {self.body_timeout_s:g} s; "
                                          "send it whole (and a Content-Length that matches it)",
                                     code="request_timeout")
            if msg["type"] == "http.disconnect":
                return b"", None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", self._too_large()
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks), None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, err: ApiError, *, linger: bool) -> None:
        """Answer `err`; with `linger`, read and drop what is left of the body before the connection closes."""
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
        if err.status in (408, 413) or linger:
            headers["Connection"] = "close"
        response = error_response(scope.get("path", ""), err, headers)
        if not linger:
            await response(scope, receive, send)
            return
        # The whole answer goes out first (clients that read early have it), then the body is drained, then
        # the empty last part completes the response and the server closes the connection.
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        await _drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drain(receive: Receive) -> None:
    """Read and drop the request body, at most LINGER_BYTES for at most LINGER_S."""
    deadline, size = time.monotonic() + LINGER_S, 0
    while size <= LINGER_BYTES:
        try:
            msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            return
        size += len(msg.get("body", b""))


def _same_origin(origin: str, headers: dict[str, bytes]) -> bool:
    """A page served by this server itself (its origin is the Host the request was sent to)."""
    host = headers.get("host", b"").decode("latin-1").strip().lower()
    return bool(host) and origin.lower() in (f"http://{host}", f"https://{host}")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
