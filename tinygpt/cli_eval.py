"""`tinygpt eval`: run an eval suite on a model from the store, through the agent loop and the engine.

Every episode is recorded as `.atraj` under OUT/traces/<run id>/ and judged by the suite's checker; one result
row per episode goes to OUT/<run id>.results.jsonl as it finishes, and OUT/<run id>.run.json says "complete"
only when the whole run is written (`tinygpt eval-gate` refuses partial runs). Runs only add new files to OUT,
so a candidate and its baseline can share it. `--remote URL --model NAME` scores a model on an OpenAI-compatible
server with the same harness. Heavy imports happen inside `main`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from tinygpt.cli_agent import add_remote_flags, remote_policy
from tinygpt.flags import SEED_MAX, float_in, int_in
from tinygpt.model_arg import add_model_flag, load_engine, resolve

DEFAULT_OUT = "runs/evals"
EPILOG = """examples:
  tinygpt eval --suite fileops --model my-specialist --split validation --out runs/evals
  tinygpt eval --suite fileops --model qwen3-0.6b --split validation --out runs/evals    (its baseline)
  tinygpt eval-gate --candidate my-specialist --baseline qwen3-0.6b --suites fileops --results runs/evals
  tinygpt eval --suite fileops --model default --passes 5 --limit 50          5 sampled passes of 50 tasks
  tinygpt eval --suite fileops --policy gold --limit 20      check the harness: replaying gold scores 100%
  tinygpt eval --suite fileops --split heldout --list        the tasks of a split, without running them
  tinygpt eval --suite bfcl-multi-turn --category base --model qwen3-0.6b --in-flight 8
  tinygpt eval --suite bfcl-multi-turn --mode prompting --model qwen3-0.6b     BFCL's prompting format
  tinygpt eval --suite bfcl-multi-turn --remote https://api.example.com/v1 --model some-model --api-key-env KEY

suites and splits:
  fileops   train 600 / validation 200 / heldout 200 multi-step file tasks on the virtual file system
            (docs/evals.md). Use train for training data, validation to compare models, and heldout once, last.
  bfcl-multi-turn   test: BFCL v4 multi-turn, categories base, miss_func, miss_param, long_context (200 each),
            BFCL's own data, backends and checker from the bfcl-eval wheel (fetched once into the cache).
            --mode native (default): tools through the chat template, calls in the model's own format;
            --mode prompting: BFCL's prompting system prompt, calls as a Python list (docs/bfcl.md).

policies:
  model      the model answers (the default; the only policy whose results say anything about the model)
  gold       each task's gold solution is replayed: must score 100% (checks the suite and the harness)
  drop-last  the gold solution less its last call per turn: must score 0% (checks that the checker bites)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt eval", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="fileops", help="the suite to run (default fileops)")
    add_model_flag(p)
    p.add_argument("--split", default=None,
                   help="fileops: train | validation | heldout (default validation); bfcl-multi-turn: test")
    p.add_argument("--passes", "-k", type=int_in(1, 1000), default=1,
                   help="episodes per task, K (default 1; K > 1 samples, see --temperature)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    p.add_argument("--policy", default="model", choices=["model", "gold", "drop-last"],
                   help="who answers: the model (default), or a harness check (see below)")
    p.add_argument("--limit", type=int_in(1), default=None, help="run only the first N tasks of the split")
    p.add_argument("--category", action="append", default=None, help="run only this category (repeatable)")
    p.add_argument("--task", action="append", default=None, help="run only this task id (repeatable)")
    p.add_argument("--max-tokens", type=int_in(1), default=256, help="tokens per model step (default 256)")
    p.add_argument("--temperature", type=float_in(0.0), default=None,
                   help="sampling temperature (default: 0 = greedy for one pass, 0.7 for several)")
    p.add_argument("--top-p", type=float_in(0.0, 1.0, lo_open=True), default=1.0, help="nucleus mass (default 1)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0,
                   help="run seed; each episode's seed derives from it, the task and the pass (default 0)")
    p.add_argument("--grammar-backend", default=None, choices=["llguidance", "outlines"],
                   help="constrained-decoding backend (default: config, else llguidance)")
    p.add_argument("--mode", default="",
                   help="how the suite presents its tools, if it has modes (bfcl-multi-turn: native | prompting)")
    p.add_argument("--in-flight", type=int_in(1, 256), default=1,
                   help="episodes played at once; a local model's calls are batched in its scheduler (default 1)")
    p.add_argument("--list", action="store_true", help="list the chosen tasks and exit")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    add_remote_flags(p, "remote model (an OpenAI-compatible server answers; --model names its model)")
    return p


def main(argv: list[str]) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    from rich.console import Console

    from tinygpt.evals.runner import RunSettings
    from tinygpt.evals.suite import load_suite, select_tasks

    suite = load_suite(a.suite)
    a.split = a.split or getattr(suite, "DEFAULT_SPLIT", "validation")
    modes = getattr(suite, "MODES", ())
    if a.mode and a.mode not in modes:
        p.error(f"--mode {a.mode!r}: suite {suite.NAME} " + (f"has modes {', '.join(modes)}" if modes else
                                                            "has no modes"))
    a.mode = a.mode or (modes[0] if modes else "")
    remote = remote_policy(p, a)
    if remote is not None and a.policy != "model":
        p.error("--policy gold / drop-last replay scripts through a local engine; leave --remote out for them")
    if remote is not None and a.mode == "prompting":
        p.error("--mode prompting reads calls out of the model's text in the pythonic format; a remote model's calls "
                "come back as structured tool calls: run it in --mode native")
    tasks = select_tasks(suite, a.split, categories=a.category, ids=a.task, limit=a.limit)
    if a.list:
        for t in tasks:
            print(f"{t.id}\t{t.category}\t{t.turns[0]}")
        return 0
    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(), markup=False, highlight=False)
    cfg = resolve(a)
    values = {f.name: getattr(a, f.name) for f in fields(RunSettings)}  # each flag is its field's kebab-case
    settings = RunSettings(**{**values, "grammar_backend": a.grammar_backend or cfg.grammar_backend})
    if a.passes > 1 and settings.resolved_temperature() == 0:
        console.print("note: --temperature 0 is greedy, so all passes of a task will be the same episode")
    engine = load_engine(cfg, solo_processors=a.in_flight == 1) if remote is None else None
    model = a.model or cfg.model or "default"
    who = f"{engine.loaded.fingerprint}" if engine is not None else f"remote, {remote.address}"
    mode = f", mode {a.mode}" if a.mode else ""
    console.print(f"eval {suite.NAME}/{a.split}{mode}: model {model} ({who}), policy {a.policy}, "
                  f"{len(tasks)} tasks x {a.passes} passes, {a.in_flight} in flight, "
                  f"temperature {settings.resolved_temperature()}, top-p {a.top_p}, max {a.max_tokens} tokens/step, "
                  f"seed {a.seed}, grammar {settings.grammar_backend if engine is not None else 'none (remote)'}"
                  f" -> {a.out}")
    started = time.time()
    try:
        manifest, rows = _run(console, engine, suite, tasks, settings, a.out, model, a.split, remote)
    except BaseException:
        for path in _unfinished(a.out, started):
            console.print(f"the run did not finish: {path} says \"running\", so eval-gate will not use its partial "
                          "results; run the eval again")
        raise
    code = _report(console, a, manifest, rows, suite, tasks)
    if manifest.status == "failed":
        console.print(f"the run failed: {manifest.failure}. Its results say nothing about the model and eval-gate "
                      "will not use them; check the server and run the eval again", style="red")
        return 1
    return code


def _unfinished(out: str, since: float) -> list:
    """Manifests in `out` of runs started at or after `since` that are still "running"."""
    from pathlib import Path

    from tinygpt.evals.results import MANIFEST_SUFFIX, read_manifest

    directory = Path(out)
    if not directory.is_dir():
        return []
    return [p for p in sorted(directory.glob(f"*{MANIFEST_SUFFIX}"))
            if (m := read_manifest(p)).status == "running" and m.started_at >= since]


def _run(console, engine, suite, tasks, settings, out, model, split, remote):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tinygpt.evals.runner import run_suite

    total, passed, done, started = len(tasks) * settings.passes, 0, 0, time.monotonic()
    step = max(1, total // 20)  # without a terminal: a line every 5% (and the last)

    def line() -> str:
        spent = time.monotonic() - started
        left = spent / done * (total - done)
        return f"episodes {done}/{total} ({passed} passed), {_clock(spent)} elapsed, ~{_clock(left)} left"

    if not console.is_terminal:
        def on_row(row) -> None:
            nonlocal passed, done
            passed, done = passed + row.passed, done + 1
            if done % step == 0 or done == total:
                console.print(line())

        return run_suite(engine, suite, tasks, settings, out, model=model, split=split, on_row=on_row, remote=remote)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("episodes", total=total)

        def on_bar(row) -> None:
            nonlocal passed, done
            passed, done = passed + row.passed, done + 1
            bar.update(job, advance=1, description=f"episodes ({passed} passed)")

        return run_suite(engine, suite, tasks, settings, out, model=model, split=split, on_row=on_bar, remote=remote)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _report(console, a, manifest, rows, suite, tasks) -> int:
    from rich.console import Console

    from tinygpt.evals.report import pass_rate, run_table

    rate, lo, hi = pass_rate(rows)
    out = a.out.rstrip("/")
    files = {"results": f"{out}/{manifest.run_id}.results.jsonl", "manifest": f"{out}/{manifest.run_id}.run.json",
             "traces": f"{out}/traces/{manifest.run_id}"}
    if a.json:
        print(json.dumps({"run_id": manifest.run_id, "suite": manifest.suite, "split": manifest.split,
                          "model": manifest.model, "model_fingerprint": manifest.model_fingerprint,
                          "policy": manifest.policy, "tasks": manifest.tasks, "passes": manifest.passes,
                          "pass_rate": rate, "interval_95": [lo, hi], **files}, indent=2))
    else:
        title = f"{manifest.suite}/{manifest.split}: {manifest.model}, policy {manifest.policy}"
        Console(width=None if sys.stdout.isatty() else 160).print(run_table(rows, title))
        console.print(f"results: {files['results']}  (traces: {files['traces']})")
    return _check_replay(console, a.policy, rows, suite, tasks)


def _check_replay(console, policy, rows, suite, tasks) -> int:
    """A scripted replay must pass every task (gold; but those whose gold no schema-checked agent can make, which
    the suite names) or none (drop-last); 1 if it did not."""
    if policy not in ("gold", "drop-last"):
        return 0
    unreplayable = getattr(suite, "unreplayable", lambda task: None)
    by_id = {t.id: t for t in tasks}
    wrong = [r for r in rows if r.passed != (policy == "gold" and unreplayable(by_id[r.task_id]) is None)]
    skipped = sum(policy == "gold" and unreplayable(t) is not None for t in tasks)
    if skipped:
        console.print(f"note: {skipped} task(s) have ground truths that no schema-checked agent can replay "
                      "(their data contradicts the suite's own function docs); they must fail (docs/evals.md)")
    if wrong:
        console.print(f"the {policy} replay should {'pass' if policy == 'gold' else 'fail'} {wrong[0].task_id} and "
                      f"did not ({wrong[0].reason}): the suite or the harness is broken (a bug; please report it)",
                      style="red")
        return 1
    return 0
