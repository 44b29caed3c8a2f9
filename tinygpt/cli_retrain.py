"""`tinygpt retrain`: the factory loop in one resumable command — teacher rollouts, rejection-sampled data, training,
eval of base and specialist, the eval gate, and on ship / routed-ship the specialist registered for its domain.

Every stage writes a versioned directory under --out with a stage.json; running the same command again reuses
finished stages, continues an interrupted one (training resumes exactly from its checkpoint) and redoes into a
new version any stage whose inputs changed (more --traces, other --iters), keeping the old ones. Exit codes:
0 ship / routed-ship, 1 reject, 3 inconclusive (as eval-gate), 2 bad input (nothing written), 130 Ctrl-C
(the stage stays resumable: run the same command again). See docs/retrain.md.
"""
from __future__ import annotations

import argparse
import json
import sys

from tinygpt.flags import SEED_MAX, float_in, int_in

EPILOG = """examples:
  tinygpt retrain --model models/q06 --domain fileops --out runs/fileops-spec
        the teacher (oracle: gold solutions replayed) plays 32 train tasks; train, gate on 50 held-out tasks
        against calendar and shop as guards; on ship, `fileops-spec` is in the store and the router uses it
  tinygpt retrain --model models/q06 --domain fileops --out runs/fileops-spec
        the same command again: every finished stage is reused ("reusing"), an interrupted one continues
  tinygpt retrain --model models/q06 --domain fileops --out runs/fileops-spec --traces ~/my-traces
        add your own recorded .atraj episodes (read only): data, train and later stages get a new version
  tinygpt retrain --model models/q06 --domain fileops --out runs/fs2 --teacher qwen3-4b --train-tasks 200 \\
        --method full --learning-rate 1e-5 --iters 300 --name fs-full --json
  tinygpt retrain --model models/q06 --domain calendar --guards fileops --out runs/cal --config train.toml
  tinygpt retrain --model models/q06 --domain fileops --out runs/fs-remote --teacher-remote http://127.0.0.1:8000/v1 \
        --teacher-model qwen3-32b --api-key-env MY_KEY --in-flight 8
        a model on an OpenAI-compatible server plays the train tasks (text only: its passing episodes train as chat)

stages and what each leaves in RUN/<stage>/v<N>/ (plus its stage.json):
  rollouts  traces/<run id>/*.atraj and the teacher's result rows on the domain's train split
  data      export/rows.jsonl, chat.jsonl, report.json: checker-passing episodes only (rejection sampling);
            training uses rows.jsonl if every kept episode is token-exact, else chat.jsonl (all of them)
  train     run/: a `tinygpt train` run directory (adapter/, checkpoints/, metrics.jsonl, loss.png)
  eval      results/: base and specialist result rows + manifests on the domain's and guards' held-out tasks
  gate      gate-result.json and gate-result.png (ship / routed-ship / reject / inconclusive)
  register  on ship / routed-ship: the specialist in the model store (status, domain, tools, provenance)
RUN/retrain.json: the overall status, each stage's current version and, when complete, the summary.
"""

# TrainConfig fields retrain offers as flags (each the kebab-case of its field); more through --config TOML
TRAIN_FLAGS = ("method", "iters", "epochs", "learning_rate", "batch_size", "rank", "num_layers", "max_seq_length",
               "save_every")


def build_parser() -> argparse.ArgumentParser:
    from dataclasses import MISSING, fields

    from tinygpt.trainer.config import TrainConfig, flag

    p = argparse.ArgumentParser(prog="tinygpt retrain", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default=None,
                   help="the base model to specialize: registered name, directory or hub id (default: config "
                        "`model`, else the embedded default, the tool world's base)")
    p.add_argument("--domain", required=True, help="the suite to specialize on: fileops, calendar or shop")
    p.add_argument("--guards", nargs="*", default=None, metavar="SUITE",
                   help="guard suites the specialist must not get worse on (default: the tool world's other "
                        "domains among fileops, calendar, shop; `--guards` alone: none)")
    p.add_argument("--out", required=True, help="run directory: new, or an earlier retrain run to continue")
    p.add_argument("--teacher", default=None,
                   help="who plays the train tasks: oracle (the suite's gold solutions replayed through the agent "
                        "loop; default), a store model (it must share the base's tokenizer) or backend:NAME (a "
                        "backend of backends.toml; text only, trained as chat)")
    p.add_argument("--traces", nargs="+", default=[], metavar="DIR",
                   help="also learn from your own recorded .atraj episodes (read only; checker-passing ones kept)")
    p.add_argument("--train-tasks", type=int_in(1), default=32, help="train-split tasks the teacher plays (32)")
    p.add_argument("--eval-tasks", type=int_in(1), default=50, help="held-out domain tasks per model (50)")
    p.add_argument("--guard-tasks", type=int_in(1), default=50, help="held-out tasks per guard suite per model (50)")
    group = p.add_argument_group("training (flag > --config file > retrain's defaults: lora, learning rate 5e-4, "
                                 "3 epochs, no validation split)")
    for f in fields(TrainConfig):
        if f.name in TRAIN_FLAGS:
            default = f.default if f.default is not MISSING else f.default_factory()
            kind = {int: int, float: float}.get(type(default), str)
            extra = {"choices": f.metadata["choices"]} if f.metadata["choices"] else {}
            group.add_argument(flag(f.name), dest=f.name, type=kind, default=None, help=f.metadata["help"], **extra)
    group.add_argument("--config", default=None, metavar="TOML",
                       help="a `tinygpt train` TOML of training settings (keys = train's field names)")
    p.add_argument("--name", default="", help="the specialist's store name (default: the --out directory's name)")
    p.add_argument("--in-flight", type=int_in(1, 256), default=4,
                   help="episodes played at once; their model calls are batched (default 4)")
    p.add_argument("--max-tokens", type=int_in(1), default=256, help="tokens per model step (default 256)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, dest="run_seed",
                   help="the rollout and eval seed (default 0); the trainer's: key `seed` in --config")
    remote = p.add_argument_group("remote teacher (an OpenAI-compatible server plays the train tasks; text only: "
                                  "its episodes train as chat records)")
    remote.add_argument("--teacher-remote", metavar="URL", default=None,
                        help="the server's API base URL, e.g. http://127.0.0.1:8000/v1 (not with --teacher)")
    remote.add_argument("--teacher-model", metavar="NAME", default=None,
                        help="the server's model to ask (its GET /v1/models lists them)")
    remote.add_argument("--api-key-env", metavar="VAR", default=None,
                        help="read the server's API key from environment variable VAR (default: send no key)")
    remote.add_argument("--timeout", metavar="S", type=float_in(0.0, lo_open=True), default=None,
                        help="seconds to wait for the server (default 120)")
    p.add_argument("--gate-config", default=None, metavar="TOML", help="eval-gate config (margins, confidence)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


def main(argv: list[str]) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.teacher is not None and a.teacher_remote:
        p.error(f"--teacher {a.teacher} and --teacher-remote {a.teacher_remote}: give one")
    from rich.console import Console

    from tinygpt.retrain import RetrainConfig, RetrainError, retrain
    from tinygpt.trainer.config import check_value

    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(), markup=False, highlight=False)
    cfg = RetrainConfig(
        model=a.model or "", domain=a.domain, out=a.out, guards=a.guards, teacher=a.teacher or "oracle",
        teacher_remote=a.teacher_remote or "", teacher_model=a.teacher_model or "", api_key_env=a.api_key_env or "",
        timeout=a.timeout, traces=a.traces,
        train_tasks=a.train_tasks, eval_tasks=a.eval_tasks, guard_tasks=a.guard_tasks,
        train={n: check_value(n, getattr(a, n)) for n in TRAIN_FLAGS if getattr(a, n) is not None},
        train_config=a.config, name=a.name, in_flight=a.in_flight, max_tokens=a.max_tokens, seed=a.run_seed,
        gate_config=a.gate_config)
    if not cfg.model:
        from tinygpt.config import load_config

        cfg.model = load_config().model or ""
    try:
        summary = retrain(cfg, console)
    except RetrainError as exc:
        sys.stderr.write(f"tinygpt retrain: error: {exc}\n")
        return 2
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(console, summary)
    from tinygpt.evals.gate import EXIT_CODES

    return EXIT_CODES[summary["verdict"]]


def _print(console, s: dict) -> None:
    console.print(f"verdict: {s['verdict']} ({s['name']} vs {s['base']}, {s['confidence']:.0%} intervals)")
    for suite, r in s["suites"].items():
        b, c = r["base"], r["specialist"]
        console.print(f"  {suite:<20} {r['role']:<6} {r['tasks']:>4} tasks  base {b['pass_rate']:6.1%} "
                      f"[{b['interval'][0]:.1%}, {b['interval'][1]:.1%}]  specialist {c['pass_rate']:6.1%} "
                      f"[{c['interval'][0]:.1%}, {c['interval'][1]:.1%}]")
    console.print(s["register_note"])
    console.print(f"run: {s['out']}  (gate: {s['paths']['gate_result']}, adapter: {s['paths']['adapter']})")
