"""The server's front door, as one ASGI middleware: Host allow-list (403: a page on a DNS-rebinding domain
cannot reach a loopback server through the browser), API key (`Authorization: Bearer KEY` on every route, 401
otherwise, constant-time compare), and the body limit (413 whether announced by Content-Length or only seen
while reading a chunked body; the body is read here and replayed to the app).
Errors come in the shape of the route's API (errors.py); CORS preflights are answered by the CORS middleware
outside this one. Not here: anything about generation.
"""
from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinygpt.web.errors import ApiError, error_response


class Guard:
    def __init__(self, app: ASGIApp, *, allowed_hosts: frozenset[str] | None, api_key: str | None,
                 max_body: int):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.api_key = api_key.encode() if api_key else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        err = self._check_host(headers) or self._check_key(headers) or self._check_length(headers)
        if err is not None:
            await self._refuse(scope, receive, send, err)
            return
        body, err = await self._read_body(receive)
        if err is not None:
            await self._refuse(scope, receive, send, err)
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

    def _check_key(self, headers: dict[str, bytes]) -> ApiError | None:
        if self.api_key is None:
            return None
        auth = headers.get("authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
            return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            code="invalid_api_key")
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
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return b"", None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", self._too_large()
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks), None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, err: ApiError) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
        if err.status == 413:
            headers["Connection"] = "close"
        await error_response(scope.get("path", ""), err, headers)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
