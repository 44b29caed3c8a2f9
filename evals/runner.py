"""Run a suite's tasks through the agent loop on one engine, K passes each: every episode recorded as `.atraj`,
judged by the suite's checker, and written as a result row the moment it ends.

The policy is the model (the engine, under the tool grammar) or a script replaying each task's gold steps
("gold": must score 100%) or the gold steps less the last call of each turn ("drop-last": must score 0%);
the scripts check the harness itself and are marked in every row. Each episode gets its own seed, derived from
the run's seed, the task id and the pass index, so a run is reproducible and its passes differ.
With `in_flight` > 1, that many episodes are played at once: on a local engine each is a generator stepped in
turn in this one thread, so their model calls meet in the engine's one scheduler and are batched there; a remote
(message-level) model's episodes each get a thread (they wait on the network). Rows are written as episodes end
and returned in task order. It does not load models (the CLI does) and does not compare runs (gate.py).
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Generator, Iterator

from tinygpt.evals.episode import reply_text, summarize, verdict_of
from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id
from tinygpt.evals.suite import Check, Task, drop_last_call, start_episode

POLICIES = ("model", "gold", "drop-last")


@dataclass(frozen=True)
class RunSettings:
    """How a suite is run. `temperature` None: greedy for one pass, 0.7 for several (so passes differ)."""

    passes: int = 1
    seed: int = 0
    policy: str = "model"
    max_tokens: int = 256
    temperature: float | None = None
    top_p: float = 1.0
    grammar_backend: str = "llguidance"
    in_flight: int = 1  # episodes played at once
    mode: str = ""  # how the suite presents its tools (its MODES; "": its default)

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.passes == 1 else 0.7


def scripted_replies(task: Task, policy: str, tokenizer, tool_format: str = "") -> list[str] | None:
    """The assistant replies a scripted policy plays for `task` (all turns in order), calls written in
    `tool_format` ("": the model's own); None for the model."""
    if policy == "model":
        return None
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; policies: {', '.join(POLICIES)}")
    turns = task.gold if policy == "gold" else tuple(drop_last_call(t) for t in task.gold)
    return [reply_text(step, tokenizer, tool_format) for turn in turns for step in turn]


def episode_seed(seed: int, task_id: str, pass_index: int) -> int:
    """The sampling seed of one episode: a hash of the run seed, the task and the pass (fits MLX's uint32 use)."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{pass_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def run_episode(engine, suite: ModuleType, task: Task, pass_index: int, settings: RunSettings, *, run_id: str,
                model: str, out_dir: Path, remote=None) -> ResultRow:
    """One episode of `task` (all its turns), recorded under out_dir/traces/<run_id>/, as a result row."""
    return _finish(episode_steps(engine, suite, task, pass_index, settings, run_id=run_id, model=model,
                                 out_dir=out_dir, remote=remote))


def episode_steps(engine, suite: ModuleType, task: Task, pass_index: int, settings: RunSettings, *, run_id: str,
                  model: str, out_dir: Path, remote=None) -> Generator[None, None, ResultRow]:
    """One episode as a generator that yields after every agent event and returns its result row. `engine` None
    with `remote` a message-level policy: that model answers. Before each turn the tools the suite offers for it
    are offered; a check that says `stop` ends the episode (the turns left count as failed)."""
    from tinygpt.runtime import agent_events as ev
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.policy import ScriptedPolicy
    from tinygpt.runtime.recording import ConversationRecorder
    from tinygpt.runtime.sampling import SamplingParams

    seed = episode_seed(settings.seed, task.id, pass_index)
    episode = start_episode(suite, task, settings.mode)
    try:
        replies = (scripted_replies(task, settings.policy, engine.tokenizer, episode.tool_format)
                   if engine is not None else None)
        sampling = SamplingParams(temperature=settings.resolved_temperature(), top_p=settings.top_p,
                                  max_tokens=settings.max_tokens, seed=seed)
        system = episode.system if episode.system is not None else suite.SYSTEM
        config = AgentConfig(max_steps=task.max_steps, system=system, grammar_backend=settings.grammar_backend,
                             tool_format=episode.tool_format, template_tools=episode.template_tools,
                             sampling=sampling)
        agent = Agent(engine, episode.toolset, config,
                      policy=ScriptedPolicy(engine, replies) if replies is not None else remote)
        labels = {"suite": suite.NAME, "category": task.category, "pass": str(pass_index),
                  "policy": settings.policy, "run": run_id}
        checker = f"evals.{suite.NAME}"
        started = time.perf_counter()
        recorder = ConversationRecorder(out_dir / "traces" / run_id, engine, agent, task_id=task.id,
                                        split=task.split, fsync="episode", labels=labels,
                                        episode_id=f"{task.id}.k{pass_index}")
        outcomes, offered = [], None
        try:
            for i, user in enumerate(task.turns):
                names = episode.offered(i) if episode.offered is not None else None
                if names is not None and names != offered:
                    agent.offer_tools(names)
                    offered = names
                events = []
                for event in recorder.record(agent.run(user)):
                    if not isinstance(event, (ev.Token, ev.TextDelta)):
                        events.append(event)
                    yield
                summary = summarize(events)
                if summary.end == "remote_error":  # no answer at all: nothing to check; later turns are not played
                    error = next((e.message for e in reversed(events) if isinstance(e, ev.Error)), "no reply")
                    outcomes.append((summary, Check(False, f"remote_error: {error}", stop=True)))
                    break
                outcomes.append((summary, episode.check(i, summary)))
                if outcomes[-1][1].stop:
                    break
            unplayed = [Check(False, "not played: " + outcomes[-1][1].reason)] * (len(task.turns) - len(outcomes))
            checks = [c for _, c in outcomes] + unplayed
            path = recorder.end(outcomes[-1][0].end, *verdict_of(checks, checker))
        finally:
            recorder.close()
        latency = time.perf_counter() - started
    finally:
        if episode.close is not None:
            episode.close()
    failed = next((c for c in checks if not c.passed), None)
    fingerprint, base, adapter = identity(engine, remote)
    return ResultRow(
        run_id=run_id, suite=suite.NAME, split=task.split, category=task.category, task_id=task.id,
        pass_index=pass_index, model=model, model_fingerprint=fingerprint, base_fingerprint=base,
        adapter_fingerprint=adapter, policy=settings.policy, passed=failed is None,
        score=sum(c.passed for c in checks) / len(task.turns),
        steps=sum(s.steps for s, _ in outcomes), prompt_tokens=sum(s.prompt_tokens for s, _ in outcomes),
        output_tokens=sum(s.output_tokens for s, _ in outcomes), latency_s=latency, seed=seed,
        finished_at=time.time(), end=outcomes[-1][0].end, reason=failed.reason if failed else "ok",
        trajectories=[str(Path(path).relative_to(out_dir))])


def identity(engine, remote=None) -> tuple[str, str, str | None]:
    """(model fingerprint, base fingerprint, adapter fingerprint) of the local model, or of the remote one (where
    it ran, by name: its weights are unknown here)."""
    if engine is None:
        return remote.fingerprint, remote.fingerprint, None
    loaded = engine.loaded
    return loaded.fingerprint, loaded.identity.base, loaded.identity.adapter


def _finish(steps: Generator[None, None, ResultRow]) -> ResultRow:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def run_suite(engine, suite: ModuleType, tasks: list[Task], settings: RunSettings, out_dir: str | Path, *,
              model: str, split: str, on_row: Callable[[ResultRow], None] | None = None,
              remote=None) -> tuple[RunManifest, list]:
    """Run every task `settings.passes` times, `settings.in_flight` episodes at once; rows go to
    out_dir/<run_id>.results.jsonl as they finish and the run's manifest says "complete" only once all are
    written ("failed" instead when a remote model gave no answer in some episode: such rows say nothing about it). `engine` None: the message-level policy `remote` is the model. Returns (manifest, rows in task
    order)."""
    if settings.in_flight < 1:
        raise ValueError(f"in_flight must be >= 1, got {settings.in_flight}")
    if engine is None and (remote is None or settings.policy != "model"):
        raise ValueError("without an engine, a remote model must answer (policy 'model')")
    out_dir = Path(out_dir)
    run_id = new_run_id(suite.NAME, split, model)
    manifest = RunManifest(
        run_id=run_id, status="running", suite=suite.NAME, split=split, model=model,
        model_fingerprint=identity(engine, remote)[0], policy=settings.policy, passes=settings.passes,
        tasks=len(tasks), started_at=time.time(),
        settings={**{k: v for k, v in asdict(settings).items() if k != "temperature"},
                  "temperature": settings.resolved_temperature(), "suite_generator_seed": getattr(suite, "SEED", None)})
    planned = [(task, k) for task in tasks for k in range(settings.passes)]
    episodes = (episode_steps(engine, suite, task, k, settings, run_id=run_id, model=model, out_dir=out_dir,
                              remote=remote) for task, k in planned)
    rows = []
    with ResultWriter(out_dir, manifest) as writer:
        def done(row: ResultRow) -> None:
            writer.add(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)

        if engine is None and settings.in_flight > 1:
            _threads(episodes, settings.in_flight, done)
        else:
            _interleave(episodes, settings.in_flight, done)
        unanswered = [r for r in rows if r.end == "remote_error"]
        if unanswered:
            writer.fail(f"{len(unanswered)} of {len(rows)} episodes got no answer from the remote model (first: "
                        f"{unanswered[0].task_id}, {unanswered[0].reason.removeprefix('remote_error: ')})")
        else:
            writer.complete()
        order = {(task.id, k): i for i, (task, k) in enumerate(planned)}
        return writer.manifest, sorted(rows, key=lambda r: order[(r.task_id, r.pass_index)])


def _interleave(episodes: Iterator[Generator], in_flight: int, done: Callable[[ResultRow], None]) -> None:
    """Step up to `in_flight` episodes in turn, one agent event each, starting the next as one ends."""
    active: deque = deque()
    try:
        while True:
            while len(active) < in_flight and (steps := next(episodes, None)) is not None:
                active.append(steps)
            if not active:
                return
            steps = active.popleft()
            try:
                next(steps)
            except StopIteration as end:
                done(end.value)
                continue
            active.append(steps)
    finally:
        for steps in active:  # interrupted: each open episode stays a .part and its world is closed
            steps.close()


def _threads(episodes: Iterator[Generator], in_flight: int, done: Callable[[ResultRow], None]) -> None:
    """Play each episode to its end in one of `in_flight` threads (a remote model: they wait on the network)."""
    with ThreadPoolExecutor(in_flight, thread_name_prefix="eval-episode") as pool:
        running = set()
        try:
            while True:
                while len(running) < in_flight and (steps := next(episodes, None)) is not None:
                    running.add(pool.submit(_finish, steps))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(future.result())
        finally:
            for future in running:
                future.cancel()
