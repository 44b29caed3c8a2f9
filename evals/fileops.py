"""The file-ops suite: this project's own multi-step file tasks on the virtual file system, checked by end state.

Tasks are generated from a fixed seed (fileops_tasks.py families on fileops_world.py worlds), deduplicated by a
content hash of (family, turns, world, gold), and given a split by that hash: 60% of hash space is train, 20%
validation, 20% held-out, filled to 600 / 200 / 200 tasks. One content is one id is one split, so the splits
never overlap. An episode runs on a fresh VirtualFileSystem of the task's world (tools/fs_virtual.py, the
`fs:virtual` tools); after each user turn the checker compares the whole tree with the state the gold calls
leave (file text compared without trailing spaces and blank lines at either end) and looks in the final answer
for what the turn must say (whole words, any case). A task passes when every turn passes.
It does not run the agent (runner.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache

from tinygpt.evals.episode import TurnSummary
from tinygpt.evals.fileops_tasks import FAMILIES, Plan
from tinygpt.evals.fileops_world import make_world
from tinygpt.evals.suite import Check, Episode, Step, Task
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.tools.fs_virtual import VirtualFileSystem

NAME = "fileops"
SPLITS = ("train", "validation", "heldout")
SYSTEM = ("You operate a file system through the tools. You start at the top of the workspace (/workspace); paths "
          "in requests are relative to it. cd moves one folder at a time. When the job is done, answer briefly.")
SEED = 12
QUOTAS = {"train": 600, "validation": 200, "heldout": 200}
_BUCKETS = (("train", 6), ("validation", 8), ("heldout", 10))  # hash mod 10 below the bound -> split
_EXTRA_STEPS = 4  # steps a model may take beyond the gold solution's, per turn


@dataclass(frozen=True)
class FileopsData:
    """The suite's part of a task: the initial world, the normalized tree after each gold turn, and per turn
    the words its answer must contain."""

    world: dict
    expected: tuple[dict, ...]
    answers: tuple[tuple[str, ...], ...]
    content_hash: str


def tasks(split: str) -> list[Task]:
    """Every task of `split`, in generation order."""
    return list(_generate()[split])


def start(task: Task) -> Episode:
    """A fresh copy of the task's world as a toolset, and the checker of each turn on it."""
    fs = VirtualFileSystem.from_bfcl(copy.deepcopy(task.data.world))

    def check(turn: int, summary) -> Check:
        return judge(task, turn, fs.to_bfcl(), summary.answer)

    return Episode(toolset=fs_toolset(fs, timeout_s=None), check=check)


def judge(task: Task, turn: int, tree: dict, answer: str) -> Check:
    """Turn `turn` passes when the tree equals the gold state and the answer says what it must."""
    problem = tree_difference(task.data.expected[turn], normalized(tree))
    if problem:
        return Check(False, f"file system differs from the expected state: {problem}")
    missing = [w for w in task.data.answers[turn] if not says(answer, w)]
    if missing:
        return Check(False, f"the answer does not say {missing[0]!r}")
    return Check(True, "ok")


def says(answer: str, word: str) -> bool:
    """True if `word` occurs in `answer` as a whole word (not inside a longer word or number), any case."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", answer, re.IGNORECASE) is not None


def normalized(tree: dict) -> dict:
    """A GorillaFileSystem tree as {name: text or {...}}, file text without trailing spaces or blank end lines."""
    def walk(contents: dict) -> dict:
        return {name: ("\n".join(r.rstrip() for r in body["content"].strip("\n").splitlines())
                       if body["type"] == "file" else walk(body["contents"])) for name, body in contents.items()}

    return walk(tree["root"])


def tree_difference(want: dict, got: dict, where: str = "") -> str:
    """The first difference between two normalized trees, in words ("" when equal)."""
    for name in sorted(set(want) | set(got)):
        path = f"{where}/{name}" if where else name
        if name not in got:
            return f"{path} is missing"
        if name not in want:
            return f"{path} should not exist"
        a, b = want[name], got[name]
        if isinstance(a, dict) != isinstance(b, dict):
            return f"{path} should be a {'folder' if isinstance(a, dict) else 'file'}"
        if isinstance(a, dict):
            inner = tree_difference(a, b, path)
            if inner:
                return inner
        elif a != b:
            return f"{path} has other content"
    return ""


def replay(task: Task, turns: tuple[tuple[Step, ...], ...], *, tools: bool = True) -> list[Check]:
    """Play the given steps (gold or not) without a model and return each turn's check. With `tools` the calls
    go through the episode's Toolset, as a model's would (validated, ~5 ms to build); without, straight to the
    file system's methods (the same operations, for checking a thousand tasks quickly)."""
    episode = start(task) if tools else None
    fs = VirtualFileSystem.from_bfcl(copy.deepcopy(task.data.world))
    checks = []
    for i, steps in enumerate(turns):
        answer = ""
        for step in steps:
            if isinstance(step, str):
                answer = step
            for call in () if isinstance(step, str) else step:
                if episode is not None:
                    episode.toolset.call(call.name, call.arguments)
                else:
                    getattr(fs, call.name)(**call.arguments)
        checks.append(episode.check(i, TurnSummary(answer)) if episode else judge(task, i, fs.to_bfcl(), answer))
    return checks


def content_hash(category: str, plan: Plan, world: dict) -> str:
    body = {"family": category, "turns": plan.turns, "gold": plan.gold, "world": world}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def split_of(digest: str) -> str:
    """The split a content hash belongs to."""
    bucket = int(digest[:8], 16) % 10
    return next(name for name, bound in _BUCKETS if bucket < bound)


def _expected_states(world: dict, plan: Plan) -> tuple[dict, ...]:
    fs = VirtualFileSystem.from_bfcl(copy.deepcopy(world))
    states = []
    for steps in plan.gold:
        for step in steps:
            for call in () if isinstance(step, str) else step:
                result = getattr(fs, call.name)(**call.arguments)
                if isinstance(result, dict) and "error" in result:  # a family wrote a call that cannot run: a bug
                    raise RuntimeError(f"gold call {call} fails: {result['error']}")
        states.append(normalized(fs.to_bfcl()))
    return tuple(states)


@lru_cache(maxsize=1)
def _generate() -> dict[str, tuple[Task, ...]]:
    rng = random.Random(SEED)
    out: dict[str, list[Task]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    names = list(FAMILIES)
    for i in range(50 * sum(QUOTAS.values())):
        if all(len(out[s]) >= QUOTAS[s] for s in SPLITS):
            return {s: tuple(out[s]) for s in SPLITS}
        category = names[i % len(names)]
        world = make_world(rng)
        plan = FAMILIES[category](rng, world)
        if plan is None:
            continue
        config = world.config()
        digest = content_hash(category, plan, config)
        split = split_of(digest)
        if digest in seen or len(out[split]) >= QUOTAS[split]:
            continue
        seen.add(digest)
        data = FileopsData(world=config, expected=_expected_states(config, plan), answers=plan.answers,
                           content_hash=digest)
        out[split].append(Task(id=f"{NAME}-{category}-{digest[:12]}", suite=NAME, split=split, category=category,
                               turns=plan.turns, gold=plan.gold, data=data,
                               max_steps=max(len(t) for t in plan.gold) + _EXTRA_STEPS))
    raise RuntimeError("the file-ops generator could not fill its splits; a family rarely finds a task")
