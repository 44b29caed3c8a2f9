"""The calendar suite: multi-turn tasks on a small weekly calendar, checked by end state like BFCL.

Tasks are generated from a fixed seed (calendar_tasks.py families on calendar_world.py weeks) by the machinery all
generated suites share (generated.py: content-hash splits that never overlap, filled to 2000 / 200 / 200 tasks;
train is large because it feeds the pretraining corpus). An episode runs on a fresh Calendar of the task's week
(tools/calendar_api.py); after each user turn the checker compares every event (id, title in any case, day, time)
with the state the gold calls leave and looks in the final answer for what the turn must say. It does not run the
agent (runner.py).
"""
from __future__ import annotations


from tinygpt.evals import generated
from tinygpt.evals.calendar_tasks import FAMILIES
from tinygpt.evals.calendar_world import make_world
from tinygpt.evals.generated import Plan, content_hash, says, split_of  # noqa: F401  (the suite's surface)
from tinygpt.tools.calendar_api import Calendar, calendar_toolset

NAME = "calendar"
SPLITS = generated.SPLITS
SYSTEM = ("You manage a weekly calendar through the tools. Get an event's id from find_events or list_events "
          "before you move or cancel it. When the job is done, answer briefly.")
SEED = 14
QUOTAS = {"train": 3000, "validation": 200, "heldout": 200}


def difference(want: dict, got: dict) -> str:
    """The first difference of two Calendar states, in words ("" when equal)."""
    for ident in sorted(set(want) | set(got), key=lambda i: int(i[1:])):
        a, b = want.get(ident), got.get(ident)
        if a == b:
            continue
        if b is None:
            return f"{ident} ({a['title']}) is missing"
        if a is None:
            return f"{ident} ({b['title']}) should not exist"
        if a["title"] != b["title"]:
            return f"{ident} should be titled {a['title']!r}, not {b['title']!r}"
        return f"{ident} ({a['title']}) should be on {a['day']} at {a['time']}, not {b['day']} at {b['time']}"
    return ""


DOMAIN = generated.Domain(
    name=NAME, families=FAMILIES, make_world=make_world, backend=Calendar.from_config,
    state=lambda cal: cal.state(), difference=difference,
    toolset=lambda cal: calendar_toolset(cal, timeout_s=None), noun="calendar")


SUITE = generated.Suite(DOMAIN, seed=SEED, quotas=QUOTAS)
tasks, start, judge, replay = SUITE.tasks, SUITE.start, SUITE.judge, SUITE.replay
