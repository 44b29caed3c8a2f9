"""The memory budget of loaded models: which ones to unload, least recently used first, so that another fits.

`plan_room` decides, from what the scheduler measured: idle models go first, in least-recently-used order; a model
with work in flight is never unloaded, it is *drained* (it finishes what it runs; new work for it waits) and
goes once idle. A model that does not fit even when every idle one is gone loads anyway when nothing busy stands
in the way (it is then the only model, as Ollama serves one model larger than memory); otherwise it waits for
the drained ones. Plain values and callables: no MLX, no threads. Not here: measuring bytes and unloading
(scheduler.py), estimating a model before it loads (provider.footprint).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

T = TypeVar("T")  # a unit that unloads as a whole (the scheduler's lane)


@dataclass
class Room(Generic[T]):
    """What to do so that a model of `need` bytes loads: unload `evict` now and load (`fits`), or drain `drain`
    (and keep `evict`'s models from taking new work) and try again later."""

    fits: bool
    evict: list[T] = field(default_factory=list)
    drain: list[T] = field(default_factory=list)

    @property
    def waits(self) -> bool:
        return bool(self.drain)


def plan_room(budget: int, need: int, candidates: list[T], idle: Callable[[T], bool],
              held_without: Callable[[list[T]], int]) -> Room[T]:
    """How to make room for `need` more bytes under `budget`. `candidates` are the units that may go (least
    recently used first; the caller leaves out those the new model shares weights with); `held_without(units)`
    is the bytes held if `units` were gone. Over budget and nothing busy left: it loads anyway (`fits`)."""
    evict: list[T] = []
    for unit in [u for u in candidates if idle(u)]:
        if held_without(evict) + need <= budget:
            break
        evict.append(unit)
    busy = [u for u in candidates if not idle(u)]
    if held_without(evict) + need <= budget or not busy:
        return Room(fits=True, evict=evict)
    drain: list[T] = []
    for unit in busy:
        drain.append(unit)
        if held_without(evict + drain) + need <= budget:
            break
    return Room(fits=False, evict=evict, drain=drain)
