"""The model provider: loads models by name (through the store) and keeps them in memory within a budget.

`ModelProvider(store, memory_budget_bytes=..., keep_alive_s=...)`; `get(name)` returns a `LoadedModel`,
loading it on first use. A base is loaded once and shared: every specialist on it reuses the base's weight
arrays (models.attach_adapter), so a specialist costs only its adapter's bytes. Models are kept in LRU order;
after each `get`, least recently used models are dropped until the bytes of weights held (unique arrays) fit
the budget. The model just asked for is never dropped, nor a base while any of its specialists is held; a lone
model larger than the budget is still served. `keep_alive_s` drops models unused for that long (checked on each
`get` and by `expire()`). Dropping removes the provider's reference only: memory returns once callers (engines)
drop theirs too. Thread-safe (one lock; a load holds it). It does not generate or schedule.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinygpt.runtime.models import LoadedModel, attach_adapter, load_base
from tinygpt.runtime.store import ModelStore, Resolved

Key = tuple[Path, "Path | None"]  # (base directory, adapter directory or None), both resolved


@dataclass
class _Slot:
    loaded: LoadedModel
    nbytes: int  # bytes this slot adds: all weights for a base, the adapter's own arrays for a specialist
    last_used: float


@dataclass(frozen=True)
class Held:
    """One model the provider holds (for `loaded()`)."""

    name: str
    key: str  # identity key
    base: Path
    adapter: Path | None
    nbytes: int
    idle_s: float


def unique_nbytes(models, exclude: set[int] | None = None) -> int:
    """Bytes of the distinct weight arrays of `models` (an array shared by several is counted once)."""
    from mlx.utils import tree_flatten

    seen = set(exclude or ())
    total = 0
    for model in models:
        for _, a in tree_flatten(model.parameters()):
            if id(a) not in seen:
                seen.add(id(a))
                total += a.nbytes
    return total


def _array_ids(model) -> set[int]:
    from mlx.utils import tree_flatten

    return {id(a) for _, a in tree_flatten(model.parameters())}


class ModelProvider:
    """Loads by name; LRU within `memory_budget_bytes` (None: no limit); `keep_alive_s` (None: forever)."""

    def __init__(self, store: ModelStore | None = None, memory_budget_bytes: int | None = None,
                 keep_alive_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.store = store or ModelStore()
        self.memory_budget_bytes = memory_budget_bytes
        self.keep_alive_s = keep_alive_s
        self._clock = clock
        self._slots: OrderedDict[Key, _Slot] = OrderedDict()  # least recently used first
        self._lock = threading.RLock()

    def get(self, name: str) -> LoadedModel:
        """The model `name` means, loaded (once) and marked most recently used."""
        with self._lock:
            self.expire()
            r = self.store.resolve(name)
            base_key: Key = (r.base.resolve(), None)
            key: Key = (base_key[0], r.adapter.resolve() if r.adapter is not None else None)
            if key not in self._slots:
                self._load(key, base_key, r)
            now = self._clock()
            for k in (base_key, key):  # using a specialist uses its base
                self._slots[k].last_used = now
                self._slots.move_to_end(k)
            self._evict(keep={key, base_key})
            loaded = self._slots[key].loaded
            return loaded if loaded.name == r.name else dataclasses.replace(loaded, name=r.name)

    def _load(self, key: Key, base_key: Key, r: Resolved) -> None:
        now = self._clock()
        if base_key not in self._slots:
            base = load_base(r.base, name=r.base_name)
            self._slots[base_key] = _Slot(base, unique_nbytes([base.model]), now)
        if r.adapter is None:
            return
        base = self._slots[base_key].loaded
        spec = attach_adapter(base, r.adapter, name=r.name)
        self._slots[key] = _Slot(spec, unique_nbytes([spec.model], exclude=_array_ids(base.model)), now)

    def held_bytes(self) -> int:
        """Bytes of weights held (each shared array once)."""
        with self._lock:
            return sum(s.nbytes for s in self._slots.values())

    def _droppable(self, keep: set) -> list[Key]:
        bases_in_use = {(k[0], None) for k in self._slots if k[1] is not None}
        return [k for k in self._slots if k not in keep and k not in bases_in_use]

    def _evict(self, keep: set) -> None:
        if self.memory_budget_bytes is None:
            return
        while self.held_bytes() > self.memory_budget_bytes:
            candidates = self._droppable(keep)
            if not candidates:
                return
            del self._slots[candidates[0]]

    def expire(self) -> list[str]:
        """Drop models unused for longer than keep_alive_s; returns their names."""
        if self.keep_alive_s is None:
            return []
        dropped = []
        with self._lock:
            while True:
                now = self._clock()
                stale = [k for k in self._droppable(set()) if now - self._slots[k].last_used > self.keep_alive_s]
                if not stale:
                    return dropped
                for k in stale:
                    dropped.append(self._slots.pop(k).loaded.name)

    def unload(self, name: str) -> bool:
        """Drop `name` (and, for a base, its specialists) now; False if it was not held."""
        with self._lock:
            r = self.store.resolve(name)
            key = (r.base.resolve(), r.adapter.resolve() if r.adapter is not None else None)
            if key not in self._slots:
                return False
            doomed = [k for k in self._slots if k == key or (key[1] is None and k[0] == key[0])]
            for k in doomed:
                del self._slots[k]
            return True

    def loaded(self) -> list[Held]:
        """What is held, least recently used first."""
        with self._lock:
            now = self._clock()
            return [Held(name=s.loaded.name, key=s.loaded.fingerprint, base=k[0], adapter=k[1], nbytes=s.nbytes,
                         idle_s=now - s.last_used) for k, s in self._slots.items()]
