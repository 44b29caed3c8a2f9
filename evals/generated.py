"""Generated suites: seeded task families on random worlds, judged by end state — what fileops, calendar and shop
share.

A domain is a `Domain`: its task families ({category: family(rng, world) -> Plan | None}), `make_world(rng)` (a
world whose `config()` is the JSON initial state), `backend(config)` (a fresh object whose methods are the tools:
a gold call runs as `getattr(backend, name)(**arguments)`), `state(backend)` (its state as a normalized JSON
value), `difference(want, got)` (the first difference of two states in words, "" when equal) and
`toolset(backend)` (the Toolset a model acts through, over the same backend).

`generate` draws families in turn on fresh worlds from one seed, deduplicates by a content hash of (family,
turns, world, gold) and gives each task the split its hash falls in: of hash space 60% train, 20% validation,
20% held-out, each filled to its quota. One content is one id is one split, so splits never overlap, and raising
a quota only adds tasks (the earlier ones of every split stay). Every gold call is run once while generating; one
that returns an error is a bug in its family. After each user turn the checker compares the backend's whole state
with the state the gold calls leave and looks in the final answer for what the turn must say (whole words, any
case). A task passes when every turn passes. This module runs no agent (runner.py does).
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from tinygpt.evals.episode import TurnSummary
from tinygpt.evals.suite import Call, Check, Episode, Step, Task

SPLITS = ("train", "validation", "heldout")
BUCKETS = (("train", 6), ("validation", 8), ("heldout", 10))  # hash mod 10 below the bound -> split
EXTRA_STEPS = 4  # steps a model may take beyond the gold solution's, per turn


@dataclass(frozen=True)
class Plan:
    """A task as a family draws it: user turns, gold steps per turn, and per turn what the answer must contain."""

    turns: tuple[str, ...]
    gold: tuple[tuple[Step, ...], ...]
    answers: tuple[tuple[str, ...], ...]


def c(tool: str, /, **arguments) -> tuple[Call, ...]:
    """A gold step of one call."""
    return (Call(tool, arguments),)


def one_turn(prompt: str, steps: list, answer: tuple[str, ...] = ()) -> Plan:
    return Plan((prompt,), (tuple(steps),), (answer,))


@dataclass(frozen=True)
class Domain:
    """What a generated suite is made of (see the module docstring)."""

    name: str
    families: dict[str, Callable[[random.Random, Any], Plan | None]]
    make_world: Callable[[random.Random], Any]
    backend: Callable[[dict], Any]
    state: Callable[[Any], Any]
    difference: Callable[[Any, Any], str]
    toolset: Callable[[Any], Any]
    noun: str = "state"  # what a failed check says differs: "file system", "calendar", ...


@dataclass(frozen=True)
class WorldData:
    """A generated task's own part: the initial world, the normalized state after each gold turn, and per turn
    the words its answer must contain."""

    world: dict
    expected: tuple[Any, ...]
    answers: tuple[tuple[str, ...], ...]
    content_hash: str


class Suite:
    """A generated domain's suite surface (what evals/suite.py asks of a suite module): its tasks, drawn once per
    process, and start / judge / replay on them. A suite module binds these as its module functions."""

    def __init__(self, domain: Domain, *, seed: int, quotas: dict[str, int]) -> None:
        self.domain, self.seed, self.quotas = domain, seed, quotas
        self._tasks: dict[str, tuple[Task, ...]] | None = None

    def generate(self) -> dict[str, tuple[Task, ...]]:
        """Every split's tasks, drawn anew (tasks() keeps the first draw)."""
        return generate(self.domain, seed=self.seed, quotas=self.quotas)

    def tasks(self, split: str) -> list[Task]:
        """Every task of `split`, in generation order."""
        if self._tasks is None:
            self._tasks = self.generate()
        return list(self._tasks[split])

    def start(self, task: Task) -> Episode:
        """A fresh backend on the task's world as a toolset, and the checker of each turn on it."""
        return start(self.domain, task)

    def judge(self, task: Task, turn: int, state: Any, answer: str) -> Check:
        """Turn `turn` passes when `state` (the backend's normalized state) equals the gold state and the answer
        says what it must."""
        return judge(self.domain, task, turn, state, answer)

    def replay(self, task: Task, turns: tuple[tuple[Step, ...], ...], *, tools: bool = True) -> list[Check]:
        """Play the given steps without a model and return each turn's check."""
        return replay(self.domain, task, turns, tools=tools)


def start(domain: Domain, task: Task) -> Episode:
    """A fresh backend on the task's world as a toolset, and the checker of each turn on it."""
    backend = domain.backend(copy.deepcopy(task.data.world))

    def check(turn: int, summary) -> Check:
        return judge(domain, task, turn, domain.state(backend), summary.answer)

    return Episode(toolset=domain.toolset(backend), check=check)


def judge(domain: Domain, task: Task, turn: int, state: Any, answer: str) -> Check:
    """Turn `turn` passes when the state equals the gold state and the answer says what it must."""
    problem = domain.difference(task.data.expected[turn], state)
    if problem:
        return Check(False, f"{domain.noun} differs from the expected state: {problem}")
    missing = [w for w in task.data.answers[turn] if not says(answer, w)]
    if missing:
        return Check(False, f"the answer does not say {missing[0]!r}")
    return Check(True, "ok")


def says(answer: str, word: str) -> bool:
    """True if `word` occurs in `answer` as a whole word (not inside a longer word or number), any case."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", answer, re.IGNORECASE) is not None


def replay(domain: Domain, task: Task, turns: tuple[tuple[Step, ...], ...], *, tools: bool = True) -> list[Check]:
    """Play the given steps (gold or not) without a model and return each turn's check. With `tools` the calls
    go through the episode's Toolset, as a model's would (validated); without, straight to the backend's
    methods (the same operations, for checking a thousand tasks quickly)."""
    episode = start(domain, task) if tools else None
    backend = domain.backend(copy.deepcopy(task.data.world))
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
                    getattr(backend, call.name)(**call.arguments)
        checks.append(episode.check(i, TurnSummary(answer)) if episode
                      else judge(domain, task, i, domain.state(backend), answer))
    return checks


def content_hash(category: str, plan: Plan, world: dict) -> str:
    body = {"family": category, "turns": plan.turns, "gold": plan.gold, "world": world}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def split_of(digest: str) -> str:
    """The split a content hash belongs to."""
    bucket = int(digest[:8], 16) % 10
    return next(name for name, bound in BUCKETS if bucket < bound)


def expected_states(domain: Domain, world: dict, plan: Plan) -> tuple[Any, ...]:
    """The state after each gold turn; RuntimeError if a gold call fails (a bug in its family)."""
    backend = domain.backend(copy.deepcopy(world))
    states = []
    for steps in plan.gold:
        for step in steps:
            for call in () if isinstance(step, str) else step:
                result = getattr(backend, call.name)(**call.arguments)
                if isinstance(result, dict) and "error" in result:
                    raise RuntimeError(f"{domain.name}: gold call {call} fails: {result['error']}")
        states.append(domain.state(backend))
    return tuple(states)


def generate(domain: Domain, *, seed: int, quotas: dict[str, int]) -> dict[str, tuple[Task, ...]]:
    """Every split's tasks, drawn from `seed` (see the module docstring)."""
    rng = random.Random(seed)
    out: dict[str, list[Task]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    names = list(domain.families)
    for i in range(50 * sum(quotas.values())):
        if all(len(out[s]) >= quotas[s] for s in SPLITS):
            return {s: tuple(out[s]) for s in SPLITS}
        category = names[i % len(names)]
        world = domain.make_world(rng)
        plan = domain.families[category](rng, world)
        if plan is None:
            continue
        config = world.config()
        digest = content_hash(category, plan, config)
        split = split_of(digest)
        if digest in seen or len(out[split]) >= quotas[split]:
            continue
        seen.add(digest)
        data = WorldData(world=config, expected=expected_states(domain, config, plan), answers=plan.answers,
                         content_hash=digest)
        out[split].append(Task(id=f"{domain.name}-{category}-{digest[:12]}", suite=domain.name, split=split,
                               category=category, turns=plan.turns, gold=plan.gold, data=data,
                               max_steps=max(len(t) for t in plan.gold) + EXTRA_STEPS))
    raise RuntimeError(f"the {domain.name} generator could not fill its splits; a family rarely finds a task")
