"""`tinygpt quickstart`: the main job on the embedded default — model, tool world, traces, training data.

Runs every embedded world task twice through the real agent loop, each episode recorded as `.atraj`:
once by the scripted teacher (the reference solution) and once by the model itself under the tool grammar.
A checker judges each episode; then traces-to-data turns them into pre-tokenized training rows and chat
records. Later stages of the loop (train, eval gate, promote) join here as they are built.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tinygpt.model_arg import add_model_flag, load_engine, resolve

EPILOG = """examples:
  tinygpt quickstart                        everything on the embedded default model and world
  tinygpt quickstart --out runs/demo --model models/q06 --json
"""


def run_task(engine, task, policy_kind: str, traces_dir: Path, seed: int, max_tokens: int):
    """One recorded, judged episode of `task` by the teacher or the model; returns (events, passed)."""
    from tinygpt.evals.world_tasks import make_judge
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.policy import ScriptedPolicy
    from tinygpt.runtime.recording import record_episode
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.tools.catalog import open_filesystem
    from tinygpt.tools.fs_tools import fs_toolset

    fs = open_filesystem("fs:virtual")
    policy = ScriptedPolicy(engine, list(task.teacher)) if policy_kind == "teacher" else None
    config = AgentConfig(max_steps=len(task.teacher) + 1,
                         sampling=SamplingParams(temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=seed))
    agent = Agent(engine, fs_toolset(fs, timeout_s=None), config, policy=policy)
    judge, verdicts = make_judge(task, fs), []

    def judge_and_keep(events):
        reward, verdict = judge(events)
        verdicts.append(verdict.passed)
        return reward, verdict

    events = list(record_episode(agent.run(task.prompt), traces_dir, engine=engine, agent=agent, task_id=task.id,
                                 split="train" if policy_kind == "teacher" else "rollout", judge=judge_and_keep,
                                 labels={"policy": policy_kind}))
    return events, verdicts[0]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt quickstart", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(p)
    p.add_argument("--out", default=None, help="run directory (default: ./runs/quickstart-<time>)")
    p.add_argument("--max-tokens", type=int, default=48, help="tokens per model step (default 48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    from rich.console import Console
    from rich.progress import Progress

    from tinygpt import blas
    from tinygpt.evals.world_tasks import TASKS
    from tinygpt.runtime import agent_events as ev
    from tinygpt.traces.to_data import ExportConfig, traces_to_data

    console = Console(stderr=True)
    out = Path(a.out or f"runs/quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    traces_dir, data_dir = out / "traces", out / "data"
    cfg = resolve(a)
    console.print(f"[bold]tinygpt quickstart[/bold] -> {out}   (BLAS: {blas.loaded_openblas() or 'bundled'})")
    engine = load_engine(cfg)
    console.print(f"model: {engine.loaded.path} ({engine.loaded.config.get('num_hidden_layers')} layers, "
                  f"vocab {engine.loaded.vocab_size}); world: fs:virtual; {len(TASKS)} tasks")
    verdicts: dict[str, list[bool]] = {"teacher": [], "model": []}
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("recording episodes", total=2 * len(TASKS))
        for i, task in enumerate(TASKS):
            for kind in ("teacher", "model"):
                events, passed = run_task(engine, task, kind, traces_dir, a.seed + i, a.max_tokens)
                calls = [e for e in events if isinstance(e, ev.ToolCall)]
                end = next(e for e in events if isinstance(e, ev.TurnEnd))
                verdicts[kind].append(passed)
                console.log(f"{kind:>7} {task.id:<14} {len(calls)} calls, {end.reason}, "
                            f"{'pass' if verdicts[kind][-1] else 'fail'}")
                bar.advance(job)
    report = traces_to_data([traces_dir], data_dir, ExportConfig(require_pass=True))
    summary = {
        "out": str(out), "model": str(engine.loaded.path), "episodes": 2 * len(TASKS),
        "teacher_pass_rate": sum(verdicts["teacher"]) / len(TASKS),
        "model_pass_rate": sum(verdicts["model"]) / len(TASKS),
        "training_rows": report.rows, "trained_tokens": report.trained_tokens, "tokens": report.tokens,
        "rows_file": str(data_dir / "rows.jsonl"), "chat_file": str(data_dir / "chat.jsonl"),
        "next": "train/eval/promote stages are not built yet",
    }
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(f"teacher pass rate {summary['teacher_pass_rate']:.0%}, "
                      f"model pass rate {summary['model_pass_rate']:.0%}")
        console.print(f"training data: {report.rows} rows, {report.tokens} tokens "
                      f"({report.trained_tokens} trained) in {data_dir}")
        console.print(f"inspect: tinygpt traces ls {traces_dir}  |  tinygpt traces show <file>")
    if summary["teacher_pass_rate"] < 1.0:
        console.print("[red]the scripted teacher failed a task: this is a bug[/red]")
        return 1
    return 0

