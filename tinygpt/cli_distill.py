"""`tinygpt distill`: distillation from a local teacher that shares the student's tokenizer.

  teacher-logprobs   the teacher's top-k logprobs at every trained token of a rows.jsonl, written beside it (a
                     sidecar); then `tinygpt train ROWS --teacher-logprobs SIDECAR` trains with KL + NLL
  on-policy          the student samples in the agent loop, the teacher scores its tokens, the per-token reverse
                     KL drives a policy-gradient update; the episodes are recorded in RUN/episodes/ (.atraj) and
                     `--resume RUN` continues a killed or interrupted run exactly
A cloud teacher gives text only: record its episodes (`tinygpt agent --remote`, evals) and train on them with
`tinygpt train`. Errors are one line (exit 2); Ctrl-C during on-policy training checkpoints and exits 130.
"""
from __future__ import annotations

import argparse
import json
import sys

from tinygpt.flags import int_in
from tinygpt.run_output import announcer

EPILOG = """examples:
  tinygpt distill teacher-logprobs --teacher big --rows data/rows.jsonl --top-k 20
  tinygpt train data/rows.jsonl --teacher-logprobs data/rows.topk.safetensors --alpha 0.5 --temperature 2
  tinygpt distill on-policy --student small --teacher big --prompts prompts.jsonl --iters 50 --out runs/op
  tinygpt distill on-policy --student small --teacher big --prompts world --tools fs:virtual
  tinygpt distill on-policy --resume runs/op          continue a killed or Ctrl-C'd run exactly
  tinygpt traces show runs/op/episodes                the episodes the student sampled (.atraj)
See docs/trainer.md, "Distillation".
"""

ON_POLICY_GROUPS = {"student": "who samples, who scores, on what", "out": "output", "method": "what is trained",
                    "optimizer": "optimization", "iters": "steps and sampling", "seed": "run"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt distill", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    t = sub.add_parser("teacher-logprobs", help="write the teacher's top-k logprobs beside a rows.jsonl",
                       description="Write the teacher's top-k logprobs (T=1) at every trained token of ROWS into a "
                                   "sidecar (default: ROWS with .topk.safetensors), for `tinygpt train "
                                   "--teacher-logprobs`. The teacher must share the rows' tokenizer.")
    t.add_argument("--teacher", required=True, help="the teacher: registered name, model directory or hub id")
    t.add_argument("--rows", required=True, help="a rows.jsonl from `tinygpt traces-to-data`")
    t.add_argument("--out", default=None, help="the sidecar file, ending in .safetensors (default: beside ROWS, "
                                               "NAME.topk.safetensors); never ROWS or a file tinygpt did not write")
    t.add_argument("--force", action="store_true", help="replace --out if it is a sidecar this command wrote")
    t.add_argument("--top-k", type=int_in(1), default=20, help="ids kept per token (default: 20)")
    t.add_argument("--batch-size", type=int_in(1), default=8, help="rows per forward pass (default: 8)")
    t.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="stored logprobs (default: float32; float16 halves the file)")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    o = sub.add_parser("on-policy", help="the student samples in the agent loop, the teacher scores its tokens",
                       description="On-policy distillation: each step the student plays --batch-size episodes "
                                   "in the agent loop, the teacher scores every sampled token, and the update "
                                   "follows the per-token advantage log p_teacher - log p_student (the loss "
                                   "shown is the sampled reverse KL). The sampled episodes are recorded as .atraj "
                                   "in RUN/episodes/; checkpoints hold weights, optimizer, step, prompt cursor and "
                                   "the episodes' sampling seeds, so --resume RUN ends as the uninterrupted run "
                                   "would. Exit 0 complete, 130 after Ctrl-C (with a checkpoint), 2 bad input.")
    from tinygpt.cli_train import add_config_flags
    from tinygpt.trainer.on_policy_config import OnPolicyConfig

    add_config_flags(o, OnPolicyConfig, ON_POLICY_GROUPS)
    o.add_argument("--config", default=None, metavar="TOML", help="a TOML file of these settings (flags win)")
    o.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the on-policy run in RUN from its latest checkpoint, with its saved config and "
                        "prompts (only --register may be given); it ends as the uninterrupted run would")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _progress(total_hint: str):
    """A per-batch progress callback: a rich bar on a terminal's stderr, a line every ~5% otherwise."""
    state = {"bar": None, "task": None, "last": -1}

    def step(done: int, total: int) -> None:
        if sys.stderr.isatty():
            if state["bar"] is None:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                state["bar"] = Progress(TextColumn(total_hint), BarColumn(), MofNCompleteColumn(),
                                        TimeRemainingColumn(), console=Console(stderr=True))
                state["bar"].start()
                state["task"] = state["bar"].add_task(total_hint, total=total)
            state["bar"].update(state["task"], completed=done)
            if done >= total:
                state["bar"].stop()
            return
        tick = done * 20 // total
        if tick != state["last"]:
            state["last"] = tick
            sys.stderr.write(f"{total_hint}: {done}/{total} rows\n")
            sys.stderr.flush()

    return step


def _teacher_logprobs(a) -> int:
    from tinygpt.runtime.models import load
    from tinygpt.trainer.teacher import teacher_logprobs

    teacher = load(a.teacher)
    summary = teacher_logprobs(teacher, a.rows, a.out, k=a.top_k, batch_size=a.batch_size, dtype=a.dtype,
                               force=a.force, progress=_progress("teacher logprobs"))
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['sidecar']}: top-{summary['k']} of {summary['teacher']} at {summary['supervised']:,} "
              f"trained tokens of {summary['rows']:,} rows ({summary['bytes'] / 2**20:,.1f} MiB, "
              f"{summary['seconds']:.1f} s)\nnext: tinygpt train {a.rows} --teacher-logprobs {summary['sidecar']}")
    return 0


def read_prompts(spec: str) -> list[str]:
    """The prompts `--prompts` names: `world` (the embedded tool world's tasks) or a JSONL file of
    {"prompt": ...} or chat records (their first user message)."""
    from pathlib import Path

    from tinygpt.trainer.errors import TrainError

    if spec == "world":
        from tinygpt.evals.world_tasks import TASKS

        return [task.prompt for task in TASKS]
    if not spec:
        raise TrainError("--prompts is required: a JSONL file of {\"prompt\": ...} records, or `world`")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TrainError(f"--prompts {path}: no such file (a JSONL of {{\"prompt\": ...}} records, or `world`)")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrainError(f"{path}:{number}: not JSON ({exc})") from None
        text = record.get("prompt") if isinstance(record, dict) else None
        if text is None and isinstance(record, dict) and isinstance(record.get("messages"), list):
            text = next((m.get("content") for m in record["messages"]
                         if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(text, str) or not text:
            raise TrainError(f"{path}:{number}: no prompt (a record is {{\"prompt\": TEXT}} or chat messages with "
                             "a user message)")
        prompts.append(text)
    return prompts


def toolset_factory(spec: str):
    """A callable that makes a fresh toolset per episode: `none` (no tools) or a `tinygpt agent --tools` spec
    (checked now, so a bad spec fails before any model loads)."""
    from tinygpt.tools.catalog import load_toolset
    from tinygpt.tools.registry import Toolset

    if spec == "none":
        return lambda: Toolset([], timeout_s=None)
    load_toolset(spec)
    return lambda: load_toolset(spec)


def _on_policy(a) -> int:
    from dataclasses import fields

    from tinygpt.trainer.errors import TrainError
    from tinygpt.trainer.on_policy_config import OnPolicyConfig, resolve
    from tinygpt.trainer.on_policy_run import resumed_config, run

    flags = {f.name: getattr(a, f.name, None) for f in fields(OnPolicyConfig)}
    if a.resume and a.config:
        raise TrainError(f"--resume {a.resume} continues with the run's saved config; leave out --config {a.config}")
    cfg = resumed_config(a.resume, flags) if a.resume else resolve(flags, a.config)
    if not cfg.student:
        from tinygpt.config import load_config
        from tinygpt.model_arg import model_path

        cfg.student = model_path(load_config())
    prompts, make_toolset = read_prompts(cfg.prompts), toolset_factory(cfg.tools)
    if prompts and cfg.batch_size > len(prompts):  # a step plays each prompt once at most (on_policy.picks)
        sys.stderr.write(f"warning: --batch-size {cfg.batch_size} is more than the {len(prompts)} prompts, so each "
                         f"step plays {len(prompts)} episodes, not {cfg.batch_size}; give more prompts or a smaller "
                         "--batch-size\n")
    s = run(cfg, prompts, make_toolset, resume=bool(a.resume), announce=announcer("distill on-policy"))
    if a.json:
        print(json.dumps(s, indent=2))
    else:
        if s.get("already_complete"):
            print(f"{s['run_dir']} is already complete; nothing was run or rewritten. Its summary:")
        kl = f"sampled reverse KL {s['first_loss']:.4f} -> {s['final_loss']:.4f}" if s["final_loss"] is not None \
            else "no steps"
        print(f"{s['status']}: step {s['step']}/{s['iters']} in {s['seconds']:.1f} s, {s['episodes']} episodes, {kl}"
              + (f"\nepisodes: {s['episodes_dir']}" if s.get("episodes_dir") else "")
              + (f"\nadapter: {s['adapter']}" if s.get("adapter") else "")
              + (f"\nregistered as {s['registered']}" if s.get("registered") else "")
              + (f"\ncontinue with: tinygpt distill on-policy --resume {s['run_dir']}"
                 if s["status"] != "complete" else ""))
    return 0 if s["status"] == "complete" else 130


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    return _teacher_logprobs(a) if a.command == "teacher-logprobs" else _on_policy(a)
