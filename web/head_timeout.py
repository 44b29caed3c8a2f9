"""uvicorn's h11 protocol with a deadline on request heads.

A connection that has not sent a whole request head (request line and headers) within the deadline of
opening, or of its last response, is closed, with a 408 if it had begun one. uvicorn alone waits forever for
a first request's head (its keep-alive timeout only runs between requests, and stops at the first byte), so a
client trickling headers, or opening connections and sending nothing, would hold them forever.
Bodies are timed by the Guard (guard.py), with the same deadline. Not here: anything after the head.
"""
from __future__ import annotations

import asyncio

_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s")


def head_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """An `http=` protocol class for `uvicorn.Config` that closes connections whose head is late."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._timed_cycle = None
            self._head_timer: asyncio.TimerHandle | None = None
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._timed_cycle:  # a new request's head has arrived
                self._timed_cycle = self.cycle
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()  # before: a pipelined request handled inside disarms it again
            super().on_response_complete()
            if self.transport.is_closing():
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _late(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.conn.trailing_data[0]:  # part of a head came: say why the connection closes
                body = b'{"error": "the request head did not arrive within %g s"}' % seconds
                self.transport.write(_408 % (len(body), body))
            self.transport.close()

    return HeadTimeoutProtocol
