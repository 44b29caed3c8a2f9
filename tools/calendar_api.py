"""A small weekly calendar: the calendar domain's backend, whose five documented methods are its tools.

An event has a short id ("e1", "e2", ...), a title, a day (monday..sunday) and a start time ("HH:MM", 24-hour);
two events never share a day and time. A model's wrong call (unknown id, bad day or time, a taken slot) returns
`{"error": ...}` saying what to do instead; it never raises. Results are small JSON objects of the same event
shape, so a tiny model sees few distinct forms. `to_config`/`from_config` are its JSON initial state, `state()`
its normalized state for an end-state checker. It does NOT generate tasks or judge them (evals/calendar_*.py).
"""
from __future__ import annotations

import re
from typing import Optional

from tinygpt.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, Toolset
from tinygpt.tools.tool import tool_from_function

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TOOLS = ("list_events", "find_events", "add_event", "move_event", "cancel_event")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


class Calendar:
    """Events by id, in the order they were added. Build with `from_config`."""

    def __init__(self, events: dict[str, dict], next_id: int) -> None:
        self.events = events
        self.next_id = next_id

    @classmethod
    def from_config(cls, config: dict) -> "Calendar":
        """Load `{"events": [{"id", "title", "day", "time"}, ...], "next_id": n}` (next_id optional: one past
        the highest id). ValueError if the config is malformed (a bug in whoever wrote it)."""
        events: dict[str, dict] = {}
        for item in config.get("events", []):
            ident, title, day, time = (item.get(k) for k in ("id", "title", "day", "time"))
            if not (isinstance(ident, str) and re.fullmatch(r"e\d+", ident)) or ident in events:
                raise ValueError(f"calendar config: bad or repeated event id {ident!r} (want e1, e2, ...)")
            if not isinstance(title, str) or day not in DAYS or _clock(time) != time:
                raise ValueError(f"calendar config: event {ident} needs a title, a day of {DAYS} and a time HH:MM")
            events[ident] = {"title": title, "day": day, "time": time}
        highest = max((_number(i) for i in events), default=0)
        next_id = config.get("next_id", highest + 1)
        if not isinstance(next_id, int) or next_id <= highest:
            raise ValueError(f"calendar config: next_id {next_id!r} must be an integer above every id")
        return cls(events, next_id)

    def to_config(self) -> dict:
        """The calendar as JSON (what `from_config` loads)."""
        return {"events": [self._public(i) for i in self.events], "next_id": self.next_id}

    def state(self) -> dict:
        """{id: {title, day, time}} with titles lower-cased and spaces collapsed, for comparing end states."""
        return {i: {"title": " ".join(e["title"].lower().split()), "day": e["day"], "time": e["time"]}
                for i, e in self.events.items()}

    def list_events(self, day: str) -> dict:
        """List the events of one day, earliest first.

        Args:
            day: A weekday, e.g. "friday".
        """
        wanted = _day(day)
        if wanted is None:
            return _bad_day(day)
        return {"events": self._sorted(i for i, e in self.events.items() if e["day"] == wanted)}

    def find_events(self, query: str) -> dict:
        """Find the events whose title contains the query (any case), with their ids.

        Args:
            query: A title or part of one, e.g. "dentist".
        """
        needle = " ".join(query.lower().split())
        return {"events": self._sorted(i for i, e in self.events.items() if needle in e["title"].lower())}

    def add_event(self, title: str, day: str, time: str) -> dict:
        """Add an event and return it with its new id.

        Args:
            title: What the event is, e.g. "lunch with carol".
            day: A weekday, e.g. "friday".
            time: The start time, 24-hour HH:MM, e.g. "09:30".
        """
        if not title.strip():
            return {"error": "the title is empty; give the event a name"}
        slot = self._free_slot(day, time, moving=None)
        if "error" in slot:
            return slot
        ident = f"e{self.next_id}"
        self.next_id += 1
        self.events[ident] = {"title": title.strip(), **slot}
        return {"added": self._public(ident)}

    def move_event(self, event_id: str, day: str, time: str) -> dict:
        """Move an event to another day and time.

        Args:
            event_id: The event's id, e.g. "e3".
            day: The new weekday, e.g. "friday".
            time: The new start time, 24-hour HH:MM, e.g. "09:30".
        """
        if event_id not in self.events:
            return _unknown(event_id)
        slot = self._free_slot(day, time, moving=event_id)
        if "error" in slot:
            return slot
        self.events[event_id].update(slot)
        return {"moved": self._public(event_id)}

    def cancel_event(self, event_id: str) -> dict:
        """Cancel an event (delete it from the calendar).

        Args:
            event_id: The event's id, e.g. "e3".
        """
        if event_id not in self.events:
            return _unknown(event_id)
        gone = self._public(event_id)
        del self.events[event_id]
        return {"cancelled": gone}

    def _free_slot(self, day: str, time: str, *, moving: Optional[str]) -> dict:
        """{"day", "time"} normalized, or an error if either is bad or another event holds that slot."""
        wanted_day, wanted_time = _day(day), _clock(time)
        if wanted_day is None:
            return _bad_day(day)
        if wanted_time is None:
            return {"error": f"bad time {time!r}; use 24-hour HH:MM, e.g. \"09:30\""}
        for ident, e in self.events.items():
            if ident != moving and e["day"] == wanted_day and e["time"] == wanted_time:
                return {"error": f"{wanted_day} {wanted_time} is taken by {ident} ({e['title']}); pick another time"}
        return {"day": wanted_day, "time": wanted_time}

    def _public(self, ident: str) -> dict:
        return {"id": ident, **self.events[ident]}

    def _sorted(self, idents) -> list[dict]:
        return [self._public(i) for i in sorted(idents, key=lambda i: (DAYS.index(self.events[i]["day"]),
                                                                        self.events[i]["time"], _number(i)))]


def calendar_toolset(cal: Calendar, *, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                     max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> Toolset:
    """A Toolset whose five tools run on `cal`."""
    return Toolset([tool_from_function(getattr(cal, name)) for name in TOOLS], timeout_s=timeout_s,
                   max_output_chars=max_output_chars)


def demo_config() -> dict:
    """A fixed small week, for `tinygpt agent --tools calendar`."""
    rows = (("team standup", "monday", "09:00"), ("dentist", "tuesday", "10:30"),
            ("lunch with carol", "wednesday", "12:30"), ("yoga class", "thursday", "18:00"),
            ("project review", "friday", "15:00"), ("dinner with dave", "saturday", "19:30"))
    return {"events": [{"id": f"e{n}", "title": t, "day": d, "time": h} for n, (t, d, h) in enumerate(rows, 1)],
            "next_id": len(rows) + 1}


def _day(day: str) -> Optional[str]:
    name = day.strip().lower()
    return name if name in DAYS else None


def _clock(time) -> Optional[str]:
    """'9:30' or '09:30' -> '09:30'; None if it is no 24-hour time."""
    match = _TIME.match(time.strip()) if isinstance(time, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    return f"{int(match[1]):02d}:{match[2]}"


def _number(ident: str) -> int:
    return int(ident[1:])


def _bad_day(day: str) -> dict:
    return {"error": f"bad day {day!r}; use one of {', '.join(DAYS)}"}


def _unknown(event_id: str) -> dict:
    return {"error": f"no event {event_id!r}; get ids from find_events or list_events"}
