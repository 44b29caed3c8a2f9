"""Run a suite's tasks through the agent loop on one engine, K passes each: every episode recorded as `.atraj`,
judged by the suite's checker, and written as a result row the moment it ends.

The policy is the model (the engine, under the tool grammar) or a script replaying each task's gold steps
("gold": must score 100%) or the gold steps less the last call of each turn ("drop-last": must score 0%);
the scripts check the harness itself and are marked in every row. Each episode gets its own seed, derived from
the run's seed, the task id and the pass index, so a run is reproducible and its passes differ.
Episodes run one after another on the engine's inline scheduler. It does not load models (the CLI does) and
does not compare runs (gate.py).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from tinygpt.evals.episode import play, reply_text
from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id
from tinygpt.evals.suite import Task, drop_last_call

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

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.passes == 1 else 0.7


def scripted_replies(task: Task, policy: str, tokenizer) -> list[str] | None:
    """The assistant replies a scripted policy plays for `task` (all turns in order); None for the model."""
    if policy == "model":
        return None
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; policies: {', '.join(POLICIES)}")
    turns = task.gold if policy == "gold" else tuple(drop_last_call(t) for t in task.gold)
    return [reply_text(step, tokenizer) for turn in turns for step in turn]


def episode_seed(seed: int, task_id: str, pass_index: int) -> int:
    """The sampling seed of one episode: a hash of the run seed, the task and the pass (fits MLX's uint32 use)."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{pass_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def run_episode(engine, suite: ModuleType, task: Task, pass_index: int, settings: RunSettings, *, run_id: str,
                model: str, out_dir: Path) -> ResultRow:
    """One episode of `task` (all its turns), recorded under out_dir/traces/<run_id>/, as a result row."""
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.policy import ScriptedPolicy
    from tinygpt.runtime.sampling import SamplingParams

    seed = episode_seed(settings.seed, task.id, pass_index)
    episode = suite.start(task)
    replies = scripted_replies(task, settings.policy, engine.tokenizer)
    sampling = SamplingParams(temperature=settings.resolved_temperature(), top_p=settings.top_p,
                              max_tokens=settings.max_tokens, seed=seed)
    agent = Agent(engine, episode.toolset, AgentConfig(max_steps=task.max_steps, system=suite.SYSTEM,
                                                       grammar_backend=settings.grammar_backend, sampling=sampling),
                  policy=ScriptedPolicy(engine, replies) if replies is not None else None)
    labels = {"suite": suite.NAME, "category": task.category, "pass": str(pass_index), "policy": settings.policy,
              "run": run_id}
    started = time.perf_counter()
    outcomes, paths = play(engine, agent, task.turns, out_dir / "traces" / run_id,
                           episode_id=f"{task.id}.k{pass_index}", task_id=task.id, split=task.split, labels=labels,
                           check=episode.check, checker=f"evals.{suite.NAME}")
    latency = time.perf_counter() - started
    failed = next((check for _, check in outcomes if not check.passed), None)
    loaded = engine.loaded
    return ResultRow(
        run_id=run_id, suite=suite.NAME, split=task.split, category=task.category, task_id=task.id,
        pass_index=pass_index, model=model, model_fingerprint=loaded.fingerprint,
        base_fingerprint=loaded.identity.base, adapter_fingerprint=loaded.identity.adapter, policy=settings.policy,
        passed=failed is None,
        score=sum(c.passed for _, c in outcomes) / len(task.turns),
        steps=sum(s.steps for s, _ in outcomes), prompt_tokens=sum(s.prompt_tokens for s, _ in outcomes),
        output_tokens=sum(s.output_tokens for s, _ in outcomes), latency_s=latency, seed=seed,
        finished_at=time.time(), end=outcomes[-1][0].end,
        reason=failed.reason if failed else "ok",
        trajectories=[str(Path(p).relative_to(out_dir)) for p in paths])


def run_suite(engine, suite: ModuleType, tasks: list[Task], settings: RunSettings, out_dir: str | Path, *,
              model: str, split: str, on_row: Callable[[ResultRow], None] | None = None) -> tuple[RunManifest, list]:
    """Run every task `settings.passes` times; rows go to out_dir/<run_id>.results.jsonl as they finish and the
    run's manifest says "complete" only once all are written. Returns (manifest, rows)."""
    out_dir = Path(out_dir)
    run_id = new_run_id(suite.NAME, split, model)
    manifest = RunManifest(
        run_id=run_id, status="running", suite=suite.NAME, split=split, model=model,
        model_fingerprint=engine.loaded.fingerprint, policy=settings.policy, passes=settings.passes,
        tasks=len(tasks), started_at=time.time(),
        settings={**{k: v for k, v in asdict(settings).items() if k != "temperature"},
                  "temperature": settings.resolved_temperature(), "suite_generator_seed": getattr(suite, "SEED", None)})
    rows = []
    with ResultWriter(out_dir, manifest) as writer:
        for task in tasks:
            for k in range(settings.passes):
                row = run_episode(engine, suite, task, k, settings, run_id=run_id, model=model, out_dir=out_dir)
                writer.add(row)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
        writer.complete()
        return writer.manifest, rows
