"""`tinygpt quickstart`: the main job on the embedded default — model, tool world, traces, training data.

Runs every embedded world task twice through the real agent loop, each episode recorded as `.atraj`:
once by the scripted teacher (the reference solution) and once by the model itself under the tool grammar.
A checker judges each episode; then traces-to-data turns them into pre-tokenized training rows and chat
records. Later stages of the loop (train, eval gate, promote) join here as they are built.

The run directory must be new or empty; `quickstart.json` in it says `"status": "running"` until the run ends,
then holds the summary with `"complete"` (or `"interrupted"` / `"failed"`), so a cut-short run never looks
finished. It never writes outside its run directory (and the embedded model's cache place).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tinygpt.flags import SEED_MAX, int_in
from tinygpt.model_arg import add_model_flag, load_engine, resolve

STATUS_FILE = "quickstart.json"

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


def write_status(run_dir: Path, status: str, fields: dict) -> None:
    """Atomically (re)write the run's status file."""
    tmp = run_dir / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps({"status": status, **fields}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / STATUS_FILE)


class RunDirError(RuntimeError):
    """The run directory cannot be used; the message says why and what to do."""


def _fresh_default() -> Path:
    base = Path(f"runs/quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    out, n = base, 1
    while out.exists() or out.is_symlink():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def make_run_dir(given: str | None) -> Path:
    """The run directory, created new (or an empty one reused); a user's non-empty directory is refused."""
    out = Path(given) if given else _fresh_default()
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise RunDirError(f"--out {out} exists and is not an empty directory; quickstart writes only into a new "
                          "one. Choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_status(out, "running", {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {out}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}; choose a writable place with --out"
                          ) from exc
    return out


def untrained_note(loaded) -> str | None:
    """What to tell the user when the model is random-init (an untrained model scores 0%), else None."""
    from tinygpt.runtime.presets import is_untrained

    if not is_untrained(loaded):
        return None
    model_path = loaded.path
    return (f"{model_path} has random weights (made by `tinygpt init-model`, never trained), so a 0% model pass "
            "rate is expected. The teacher episodes above are its training data (`tinygpt train <data>/rows.jsonl "
            "--model <model>` trains on them; the quickstart does not train yet); to measure a real model run "
            "`tinygpt quickstart --model <trained dir or hub id>`.")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt quickstart", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(p)
    p.add_argument("--out", default=None, help="run directory (default: ./runs/quickstart-<time>)")
    p.add_argument("--max-tokens", type=int_in(1), default=48, help="tokens per model step (default 48)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="sampling seed of the first task (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    from rich.console import Console

    # no markup (paths may hold brackets), no wrapping when piped (paths stay whole)
    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(), markup=False, highlight=False)
    cfg = resolve(a)
    engine = load_engine(cfg)  # a bad --model fails before any run directory exists
    out = make_run_dir(a.out)
    try:
        summary = run(a, engine, out, console)
    except BaseException as exc:
        from tinygpt.cli import interrupted

        write_status(out, "interrupted" if interrupted(exc) else "failed",
                     {"error": f"{type(exc).__name__}: {exc}"})
        console.print(f"run directory {out} is incomplete ({STATUS_FILE} says so)")
        raise
    write_status(out, "complete", summary)
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(f"teacher pass rate {summary['teacher_pass_rate']:.0%}, "
                      f"model pass rate {summary['model_pass_rate']:.0%}")
        if summary.get("note"):
            console.print(summary["note"])
        console.print(f"training data: {summary['training_rows']} rows, {summary['tokens']} tokens "
                      f"({summary['trained_tokens']} trained) in {out / 'data'}")
        console.print(f"inspect: tinygpt traces ls {out / 'traces'}  |  tinygpt traces show <file>")
    if summary["teacher_pass_rate"] < 1.0:
        console.print("the scripted teacher failed a task: this is a bug", style="red")
        return 1
    return 0


def run(a, engine, out: Path, console) -> dict:
    """Record and judge every task by teacher and model, export training data; return the summary."""
    from rich.progress import Progress

    from tinygpt import blas
    from tinygpt.evals.world_tasks import TASKS
    from tinygpt.runtime import agent_events as ev
    from tinygpt.traces.atraj import ToolCall
    from tinygpt.traces.to_data import ExportConfig, traces_to_data

    traces_dir, data_dir = out / "traces", out / "data"
    console.print(f"quickstart -> {out}: model {engine.loaded.path} ({engine.loaded.config.get('num_hidden_layers')} "
                  f"layers, vocab {engine.loaded.vocab_size}), world fs:virtual, {len(TASKS)} tasks, "
                  f"max {a.max_tokens} tokens/step, seed {a.seed}, BLAS {blas.loaded_openblas() or 'bundled'}")
    verdicts: dict[str, list[bool]] = {"teacher": [], "model": []}
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("recording episodes", total=2 * len(TASKS))
        for i, task in enumerate(TASKS):
            for kind in ("teacher", "model"):
                events, passed = run_task(engine, task, kind, traces_dir, a.seed + i, a.max_tokens)
                calls = [e for e in events if isinstance(e, ToolCall)]
                end = next(e for e in events if isinstance(e, ev.TurnEnd))
                verdicts[kind].append(passed)
                console.print(f"{kind:>7} {task.id:<14} {len(calls)} calls, {end.reason}, "
                              f"{'pass' if passed else 'fail'}")
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
    note = untrained_note(engine.loaded)
    if note:
        summary["random_init"], summary["note"] = True, note
    return summary
