"""Random small weeks for the calendar suite: a seeded `World` of 6-10 events in the Calendar config shape.

Titles come from a fixed list in which no title contains another, so searching an event's full title finds that
event alone; times sit on the half hour from 08:00 to 18:30, never two events in one slot. The same random stream
always builds the same week. `World` also answers what the task families ask (events of a day, free slots, a
title not in use). It does not make tasks or run tools (calendar_tasks.py, tools/calendar_api.py).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from tinygpt.tools.calendar_api import DAYS

TITLES = ("dentist", "team standup", "lunch with carol", "gym", "yoga class", "piano lesson", "book club",
          "haircut", "car service", "budget review", "call with mom", "dinner with dave", "project demo",
          "doctor", "vet visit", "coffee with erin", "soccer practice", "parent meeting", "tax advisor",
          "swim lesson", "guitar practice", "sprint planning", "client call", "design review", "board meeting",
          "brunch with grace", "movie night", "date night", "bike repair", "french class", "chess club",
          "interview", "one on one with bob", "physio", "eye exam", "choir rehearsal", "school pickup",
          "farmers market", "laundry", "hiking trip", "pottery class", "drinks with ivan", "team lunch",
          "code review", "dog walk", "plumber visit", "volunteer shift", "tennis match", "study group",
          "flight to rome")
TIMES = tuple(f"{h:02d}:{m:02d}" for h in range(8, 19) for m in (0, 30))


@dataclass(frozen=True)
class Event:
    """An event of the world as the calendar holds it."""

    id: str
    title: str
    day: str
    time: str


@dataclass
class World:
    """A week of events; `next_id` is the number the next added event's id gets."""

    events: list[Event] = field(default_factory=list)

    @property
    def next_id(self) -> int:
        return len(self.events) + 1

    def config(self) -> dict:
        """The week as a Calendar config (what Calendar.from_config loads and to_config returns)."""
        return {"events": [{"id": e.id, "title": e.title, "day": e.day, "time": e.time} for e in self.events],
                "next_id": self.next_id}

    def on(self, day: str) -> list[Event]:
        """The events of `day`, earliest first (the order list_events gives)."""
        return sorted((e for e in self.events if e.day == day), key=lambda e: e.time)

    def is_free(self, day: str, time: str) -> bool:
        return all((e.day, e.time) != (day, time) for e in self.events)

    def free_slot(self, rng: random.Random, day: str | None = None, *,
                  taken: tuple[tuple[str, str], ...] = ()) -> tuple[str, str]:
        """A random (day, time) no event holds (on `day` if given), nor any slot in `taken`."""
        while True:
            slot = (day or rng.choice(DAYS), rng.choice(TIMES))
            if self.is_free(*slot) and slot not in taken:
                return slot

    def new_title(self, rng: random.Random) -> str:
        """A title no event has (from the same list, so it neither contains nor is inside another)."""
        used = {e.title for e in self.events}
        return rng.choice([t for t in TITLES if t not in used])


def make_world(rng: random.Random) -> World:
    """A random week of 6-10 events with distinct titles and slots; ids e1, e2, ... in the (random) order they
    were added, so an id says nothing about when an event is."""
    world = World()
    count = rng.randint(6, 10)
    slots: list[tuple[str, str]] = []
    while len(slots) < count:
        slot = (rng.choice(DAYS), rng.choice(TIMES))
        if slot not in slots:
            slots.append(slot)
    for n, ((day, time), title) in enumerate(zip(slots, rng.sample(TITLES, count)), 1):
        world.events.append(Event(f"e{n}", title, day, time))
    return world
