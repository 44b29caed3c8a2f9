"""The calendar task families: each draws one task on a random week and writes its gold solution.

A family is a function (rng, world) -> Plan | None, as in fileops_tasks.py. Users name events by their full
title, so the gold solution searches for that title (`find_events`) and acts on the id it returns; most families
need more of an earlier result: the time or day to keep, another event's day, the events `list_events` returns,
the id `add_event` gave in the turn before, or the day an event had before it moved. Every turn's gold ends
with a call that changes the calendar (add, move or cancel), so the end state tells a finished turn from one
stopped a call short; some answers must say a day, a time or a count. It does not check episodes or assign
splits (calendar_suite.py, generated.py).
"""
from __future__ import annotations

import random

from tinygpt.evals.calendar_world import Event, World
from tinygpt.evals.generated import Plan, c, one_turn
from tinygpt.evals.suite import Call
from tinygpt.tools.calendar_api import DAYS


def find(event: Event) -> tuple[Call, ...]:
    return c("find_events", query=event.title)


def other_day(rng: random.Random, day: str) -> str:
    return rng.choice([d for d in DAYS if d != day])


def shifted(time: str, hours: int) -> str:
    return f"{int(time[:2]) + hours:02d}{time[2:]}"


def add_event(rng: random.Random, world: World) -> Plan | None:
    title, (day, time) = world.new_title(rng), world.free_slot(rng)
    prompt = rng.choice((f"Add '{title}' to my calendar on {day} at {time}.",
                         f"Please put {title} on {day} at {time}.",
                         f"Schedule '{title}' for {day}, {time}.",
                         f"I have {title} on {day} at {time}; add it to the calendar."))
    return one_turn(prompt, [c("add_event", title=title, day=day, time=time), f"Added {title} on {day} at {time}."])


def cancel_event(rng: random.Random, world: World) -> Plan | None:
    e = rng.choice(world.events)
    prompt = rng.choice((f"Cancel my {e.title}.", f"Please remove {e.title} from my calendar.",
                         f"The {e.title} is off this week; delete it.", f"I can't make the {e.title}. Cancel it."))
    return one_turn(prompt, [find(e), c("cancel_event", event_id=e.id),
                             f"Cancelled {e.title} ({e.day} at {e.time})."])


def move_event(rng: random.Random, world: World) -> Plan | None:
    e = rng.choice(world.events)
    day, time = world.free_slot(rng)
    prompt = rng.choice((f"Move my {e.title} to {day} at {time}.", f"Reschedule {e.title} for {day} at {time}.",
                         f"Can you shift the {e.title} to {time} on {day}?",
                         f"The {e.title} has to change: make it {day}, {time}."))
    return one_turn(prompt, [find(e), c("move_event", event_id=e.id, day=day, time=time),
                             f"Moved {e.title} to {day} at {time}."])


def move_keep_time(rng: random.Random, world: World) -> Plan | None:
    e = rng.choice(world.events)
    day = other_day(rng, e.day)
    if not world.is_free(day, e.time):
        return None
    prompt = rng.choice((f"Move {e.title} to {day}, keeping the same time.",
                         f"Shift the {e.title} to {day}; the time stays as it is.",
                         f"Can my {e.title} happen on {day} instead? Same time as now."))
    return one_turn(prompt, [find(e), c("move_event", event_id=e.id, day=day, time=e.time),
                             f"Moved {e.title} to {day} at {e.time}."])


def delay_event(rng: random.Random, world: World) -> Plan | None:
    e = rng.choice(world.events)
    hours, words = rng.choice(((1, "an hour later"), (2, "two hours later"), (-1, "an hour earlier")))
    new = shifted(e.time, hours)
    if not world.is_free(e.day, new):
        return None
    prompt = rng.choice((f"Make {e.title} {words}, same day, and tell me the new time.",
                         f"The {e.title} needs to start {words} on the same day. What is the new time?",
                         f"Move my {e.title} {words} and tell me when it starts now."))
    return one_turn(prompt, [find(e), c("move_event", event_id=e.id, day=e.day, time=new),
                             f"The {e.title} now starts at {new} on {e.day}."], (new,))


def same_day_as(rng: random.Random, world: World) -> Plan | None:
    x, y = rng.sample(world.events, 2)
    if x.day == y.day:
        return None
    _, time = world.free_slot(rng, y.day)
    prompt = rng.choice((f"Move {x.title} to the same day as {y.title}, at {time}.",
                         f"Put my {x.title} on whatever day the {y.title} is, at {time}.",
                         f"I want {x.title} on the day of {y.title}. Make it {time} that day."))
    return one_turn(prompt, [find(x), find(y), c("move_event", event_id=x.id, day=y.day, time=time),
                             f"Moved {x.title} to {y.day} at {time}, the day of {y.title}."])


def clear_day(rng: random.Random, world: World) -> Plan | None:
    days = sorted({e.day for e in world.events}, key=DAYS.index)
    busy = [d for d in days if len(world.on(d)) > 1]  # a day of several events, where there is one
    day = rng.choice(busy or days)
    events = world.on(day)
    n = len(events)
    prompt = rng.choice((f"Cancel everything on {day} and tell me how many events that was.",
                         f"I'm taking {day} off. Clear all my events that day; how many did you cancel?",
                         f"Wipe my {day}: cancel every event on it, then say how many there were."))
    names = ", ".join(e.title for e in events)
    return one_turn(prompt, [c("list_events", day=day), *[c("cancel_event", event_id=e.id) for e in events],
                             f"Cancelled {n} event{'s' if n != 1 else ''} on {day}: {names}."], (str(n),))


def cancel_report(rng: random.Random, world: World) -> Plan | None:
    e = rng.choice(world.events)
    prompt = rng.choice((f"Cancel {e.title}, and tell me what day and time it was.",
                         f"Remove the {e.title} from my calendar. When was it?",
                         f"Delete my {e.title}; remind me when it was scheduled."))
    return one_turn(prompt, [find(e), c("cancel_event", event_id=e.id),
                             f"Cancelled {e.title}; it was on {e.day} at {e.time}."], (e.day, e.time))


def add_then_move(rng: random.Random, world: World) -> Plan | None:
    title, (day, time) = world.new_title(rng), world.free_slot(rng)
    later_day, later_time = world.free_slot(rng, taken=((day, time),))
    new_id = f"e{world.next_id}"
    first = rng.choice((f"Add '{title}' on {day} at {time}.", f"Put {title} in my calendar for {day}, {time}.",
                        f"Please schedule {title} on {day} at {time}."))
    second = rng.choice((f"Actually, move it to {later_day} at {later_time}.",
                         f"Change of plan: make that {later_day} at {later_time}.",
                         f"Sorry, it should be on {later_day} at {later_time}."))
    return Plan((first, second),
                ((c("add_event", title=title, day=day, time=time), f"Added {title} on {day} at {time}."),
                 (c("move_event", event_id=new_id, day=later_day, time=later_time),
                  f"Moved {title} to {later_day} at {later_time}.")),
                ((), ()))


def move_then_fill(rng: random.Random, world: World) -> Plan | None:
    x = rng.choice(world.events)
    day, time = world.free_slot(rng, other_day(rng, x.day))
    _, fill_time = world.free_slot(rng, x.day)
    title = world.new_title(rng)
    first = rng.choice((f"Move my {x.title} to {day} at {time}.", f"Reschedule the {x.title} for {day}, {time}."))
    second = rng.choice((f"Now add '{title}' at {fill_time} on the day the {x.title} used to be. Which day is that?",
                         f"Put {title} on the {x.title}'s old day, at {fill_time}, and tell me the day."))
    return Plan((first, second),
                ((find(x), c("move_event", event_id=x.id, day=day, time=time), f"Moved {x.title} to {day} at {time}."),
                 (c("add_event", title=title, day=x.day, time=fill_time),
                  f"Added {title} on {x.day} at {fill_time}, where {x.title} was.")),
                ((), (x.day,)))


FAMILIES = {f.__name__.replace("_", "-"): f for f in (
    add_event, cancel_event, move_event, move_keep_time, delay_event, same_day_as, clear_day, cancel_report,
    add_then_move, move_then_fill)}
