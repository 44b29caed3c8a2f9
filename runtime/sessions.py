"""Server-side sessions: persistent KV caches keyed by a client-chosen id, bounded, least-recently-used first out.

A session holds a `tinygpt.runtime.kv_cache.Session` (cache + the exact ids in it). While a request runs in a
session the session is *busy*: its cache is inside the batch, and a second request for the same id waits.
Only the scheduler (its thread) touches this store (the caches are MLX state). Not here: saving to disk.
"""
from __future__ import annotations

from collections import OrderedDict

from tinygpt.runtime.kv_cache import Session


class SessionStore:
    """At most `capacity` sessions; using one makes it most recent; the least recent idle one is evicted."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"session capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._busy: set[str] = set()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, sid: str) -> bool:
        return sid in self._items

    def is_busy(self, sid: str) -> bool:
        return sid in self._busy

    def checkout(self, sid: str, model) -> Session:
        """The session `sid` (new if unknown), marked busy until `checkin`."""
        if sid in self._busy:
            raise RuntimeError(f"session {sid!r} is already in use")
        sess = self._items.pop(sid, None) or Session.new(model)
        self._items[sid] = sess
        self._busy.add(sid)
        self._evict()
        return sess

    def checkin(self, sid: str, cache: list | None, ids: list[int] | None) -> None:
        """Store the session's new cache and ids (None: the request failed before any state changed)."""
        self._busy.discard(sid)
        if sid in self._items and cache is not None and ids is not None:
            sess = self._items[sid]
            sess.cache, sess.ids = cache, list(ids)
        self._evict()

    def drop(self, which) -> None:
        """Forget every idle session whose id `which(sid)` selects (a model that left its shared lane)."""
        for sid in [sid for sid in self._items if sid not in self._busy and which(sid)]:
            del self._items[sid]

    def clear(self) -> None:
        self._items.clear()
        self._busy.clear()

    def _evict(self) -> None:
        for sid in list(self._items):
            if len(self._items) <= self.capacity:
                return
            if sid not in self._busy:
                del self._items[sid]
