"""Out-of-domain breadth for a file-operations specialist: BFCL v4 multi-turn tasks that never touch a file system.

`bfcl-other-domains` is the `bfcl-multi-turn` suite (bfcl.py: BFCL's own tasks, backends and checker, played
through the agent loop) less every task whose `involved_classes` include `GorillaFileSystem`: 600 of BFCL's 800
tasks (150 per category) on its seven other backends (vehicle control, trading, travel, messaging, posting,
tickets, maths). Task ids and categories are BFCL's, so its rows read like the full suite's. Used as a guard suite
of `tinygpt eval-gate` (`--suites fileops:target,bfcl-other-domains:guard`): a specialist trained on file tasks
must not lose the general model's skill outside its domain, or it ships only behind the router.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

from tinygpt.evals import bfcl
from tinygpt.evals.suite import Episode, Task

NAME = "bfcl-other-domains"
SPLITS = bfcl.SPLITS
DEFAULT_SPLIT = bfcl.DEFAULT_SPLIT
SYSTEM = bfcl.SYSTEM
MODES = bfcl.MODES
CATEGORIES = bfcl.CATEGORIES
LEFT_OUT = "GorillaFileSystem"  # the file-operations domain: what the specialist is trained on


def tasks(split: str) -> list[Task]:
    """BFCL's multi-turn tasks with no file system, in BFCL's order."""
    return list(_load()) if split in SPLITS else []


def start(task: Task, mode: str = "native") -> Episode:
    return bfcl.start(task, mode)


def unreplayable(task: Task) -> str | None:
    return bfcl.unreplayable(task)


@lru_cache(maxsize=1)
def _load() -> tuple[Task, ...]:
    return tuple(dataclasses.replace(t, suite=NAME) for t in bfcl.tasks("test")
                 if LEFT_OUT not in t.data.entry["involved_classes"])
