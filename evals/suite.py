"""What an eval suite is: a module with one small agreed surface, found by name. Its tasks are plain values.

A suite module exports
  NAME: str, SPLITS: tuple[str, ...], SYSTEM: str | None (the system message its episodes start with),
  tasks(split) -> list[Task]       every task of a split, in a fixed order,
  start(task) -> Episode           a fresh world for one episode: its toolset and its per-turn checker,
and may export DEFAULT_SPLIT (the split `tinygpt eval` runs when none is named) and MODES (how it can present
its tools, the first the default; `start(task, mode)` then takes one: bfcl-multi-turn's native | prompting).
A `Task` holds its user turns and, per turn, the gold steps that solve it (a step is the calls of one model
reply, or the final answer text). The runner (runner.py) plays the turns through the agent loop; the checker
judges each turn from the world's state and a `TurnSummary` (episode.py). A task passes when every turn passes.
`drop_last_call` makes the broken solution every suite must fail: the gold steps less the last call of each turn.
Suites: `fileops` (this project's file-operations gate), `calendar` and `shop` (the embedded tool world's other
domains; fileops, calendar and shop are generated suites, generated.py), `bfcl-multi-turn` (BFCL v4 multi-turn, bfcl.py),
`bfcl-other-domains` (its tasks with no file system: the out-of-domain guard for a file specialist, bfcl_domains.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, NamedTuple

from tinygpt.evals.errors import EvalError

SUITES = {"fileops": "tinygpt.evals.fileops", "calendar": "tinygpt.evals.calendar_suite",
          "shop": "tinygpt.evals.shop_suite", "bfcl-multi-turn": "tinygpt.evals.bfcl",
          "bfcl-other-domains": "tinygpt.evals.bfcl_domains"}


class Call(NamedTuple):
    """One tool call of a gold solution."""

    name: str
    arguments: dict


Step = tuple[Call, ...] | str  # the calls of one model reply, or the final answer


@dataclass(frozen=True)
class Task:
    """One eval task. `gold[i]` are the steps that solve user turn `turns[i]`; `data` is the suite's own."""

    id: str
    suite: str
    split: str
    category: str
    turns: tuple[str, ...]
    gold: tuple[tuple[Step, ...], ...]
    max_steps: int
    data: Any = None


class Check(NamedTuple):
    """A checker's verdict on one turn; `stop`: play no later turn (they fail), as BFCL ends an entry at its
    step limit."""

    passed: bool
    reason: str
    stop: bool = False


@dataclass
class Episode:
    """One episode's world: the toolset the agent acts through and the checker of each turn (by index).
    Optional: `offered(turn)`, the names of the tools offered from that turn on (None: all of the toolset's);
    `close()`, called once the episode ends, whatever happened; how the tools are presented: `system` (the
    system message, in place of the suite's SYSTEM), `tool_format` (the call syntax; "": the model's own) and
    `template_tools` (False: the chat template is not given the tools, the system message lists them)."""

    toolset: Any
    check: Callable[[int, Any], Check]
    offered: Callable[[int], list[str] | None] | None = None
    close: Callable[[], None] | None = None
    system: str | None = None
    tool_format: str = ""
    template_tools: bool = True


def load_suite(name: str) -> ModuleType:
    """The suite module called `name`; EvalError listing the suites if there is none."""
    if name not in SUITES:
        raise EvalError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return importlib.import_module(SUITES[name])


def start_episode(suite: ModuleType, task: Task, mode: str = "") -> Episode:
    """`suite.start(task)`, in `mode` where the suite has modes ("": its default); EvalError for a mode it lacks."""
    modes = getattr(suite, "MODES", ())
    if mode and mode not in modes:
        known = f"modes: {', '.join(modes)}" if modes else "it has no modes"
        raise EvalError(f"suite {suite.NAME} has no mode {mode!r}; {known}")
    return suite.start(task, mode or modes[0]) if modes else suite.start(task)


def select_tasks(suite: ModuleType, split: str, *, categories: list[str] | None = None,
                 ids: list[str] | None = None, limit: int | None = None) -> list[Task]:
    """A split's tasks, filtered by category and id, the first `limit` of them; an empty choice is an error."""
    if split not in suite.SPLITS:
        raise EvalError(f"suite {suite.NAME} has no split {split!r}; splits: {', '.join(suite.SPLITS)}")
    tasks = suite.tasks(split)
    if categories:
        known = sorted({t.category for t in tasks})
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise EvalError(f"suite {suite.NAME} has no category {unknown[0]!r}; categories: {', '.join(known)}")
        tasks = [t for t in tasks if t.category in categories]
    if ids:
        by_id = {t.id: t for t in tasks}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EvalError(f"no task {missing[0]!r} in split {split} of suite {suite.NAME} (with the categories "
                            "asked for)")
        tasks = [by_id[i] for i in ids]
    return tasks[:limit] if limit is not None else tasks


def drop_last_call(turn: tuple[Step, ...]) -> tuple[Step, ...]:
    """A turn's gold steps without its last call (a step left with no calls goes too): the broken solution."""
    steps = list(turn)
    for i in range(len(steps) - 1, -1, -1):
        if not isinstance(steps[i], str):
            rest = steps[i][:-1]
            steps[i:i + 1] = [rest] if rest else []
            break
    return tuple(steps)
