"""`tinygpt quickstart`: the whole trace -> specialist loop on the embedded base model and tool world.

The embedded base (runtime/assets/world-base, a small general model of the tool world: a file system, a calendar
and a shop) is the generalist. The loop, each stage resumable and reused on a re-run:
  1-6. `tinygpt retrain` (tinygpt/retrain.py) into RUN/loop: the oracle teacher plays the domain's train tasks
       through the real agent loop (every episode a token-exact .atraj), checker-passing episodes become rows,
       a specialist is trained on them, base and specialist are evaluated on held-out tasks of the domain and of
       the other domains, the gate gives its verdict, and a ship / routed-ship specialist is registered in the
       model store with its domain;
  7.   router: a calibrated domain classifier trained on the first requests of train tasks of every domain
       (RUN/router, what `tinygpt agent --router` and `tinygpt serve --router` load);
  8.   report: the router routes every held-out task's first request; base, specialist and router are scored on
       the same tasks (evals/loop_report.py: the router's score on a task is that of the model it chose, whose
       greedy episode it is), in-domain, out-of-domain and mixed, with 95% intervals: a table, RUN/summary.png,
       and the commands to chat with the routed pair.
RUN/quickstart.json says "running" until the end, then "complete" with the summary (or "interrupted" /
"failed"), so a cut-short run never looks finished; re-running the same command continues it. It writes only
into RUN, plus the specialist's entry in the model store when the gate ships it.
`--data FILE.jsonl` runs the same loop on the user's own chats (docs/quickstart.md, "Your own data"): the domain
is `--domain NAME` or the file's stem, the chats are checked first (every bad line named, nothing written), the
data stage replaces the rollouts (the recorded assistant turns are the teacher), the specialist is scored on the
held-out chats turn by turn (evals/chat_eval.py) with the three tool-world domains as guards, and the router
learns the domain from the first requests of the train chats. The router stage has a fingerprint of what it
learned from (RUN/router-stage.json), so an edited file retrains it too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from tinygpt.flags import SEED_MAX, int_in

STATUS_FILE = "quickstart.json"
CREATOR = "tinygpt quickstart"
DOMAINS = ("fileops", "calendar", "shop")
ROUTER_EXAMPLES = 300  # train tasks per domain the router learns from
ROUTER_STAGE = "router-stage.json"  # what the router in RUN/router learned from (its fingerprint)
# the specialist's training on 2 CPU cores (flags override): all weights, one pass over the rollouts
# (4096 tokens: a file-system episode is ~2,000, so none is split into windows that lose their context)
TRAIN = {"method": "full", "learning_rate": 3e-5, "epochs": 1.0, "batch_size": 4, "save_every": 25,
         "max_seq_length": 4096}

EPILOG = """examples:
  tinygpt quickstart                                   the whole loop on the embedded base and world (~10 min)
  tinygpt quickstart --out runs/qs                     the same command again: finished stages are reused
  tinygpt quickstart --domain shop --train-tasks 200   a shop specialist instead of a calendar one
  tinygpt quickstart --traces runs/my-traces           add your own recorded .atraj episodes to the training data
  tinygpt quickstart --data my-chats.jsonl             the same loop on your own chats (domain: the file's stem;
                                                       run directory runs/quickstart-<domain>)
  tinygpt quickstart --short                           a few tasks per stage: the whole loop in a minute or two
                                                       (numbers too small to mean anything; what CI runs)
then:
  tinygpt agent --router RUN/router --tools calendar   chat with the routed pair
  tinygpt serve --router RUN/router                    model "auto" routes each request
"""


class RunDirError(RuntimeError):
    """The run directory cannot be used; the message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt quickstart", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="run directory (default ./runs/quickstart; a quickstart run there "
                   "is continued)")
    p.add_argument("--model", "-m", default="default", help="the base model (default: the embedded world base)")
    p.add_argument("--domain", default=None, help="the specialist's domain: fileops, calendar or shop (default "
                   "calendar); with --data, the name of your chats' domain (default: the file's stem)")
    p.add_argument("--data", default=None, metavar="FILE.jsonl",
                   help="your own chats (mlx-lm's chat/tools JSONL: messages with assistant tool_calls and tool "
                        "results, plus tools): the specialist learns their assistant turns and is scored on "
                        "held-out ones; the file is only read")
    p.add_argument("--train-tasks", type=int_in(1), default=300,
                   help="train tasks the teacher plays (default 300; with --data every train chat is used)")
    p.add_argument("--eval-tasks", type=int_in(1), default=200,
                   help="held-out tasks (with --data: held-out chats) of the domain (default 200, the whole split)")
    p.add_argument("--guard-tasks", type=int_in(1), default=60,
                   help="held-out tasks of each other domain (default 60)")
    p.add_argument("--traces", action="append", default=[], metavar="DIR",
                   help="your own recorded .atraj episodes to train on too (read only; repeatable)")
    p.add_argument("--name", default="", help="the specialist's name in the model store (default <domain>-specialist)")
    p.add_argument("--in-flight", type=int_in(1), default=8, help="episodes played at once in evals (default 8)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="run seed (default 0)")
    p.add_argument("--short", action="store_true", help="a few tasks per stage (a smoke test of the whole loop)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(), markup=False, highlight=False)
    if a.short:
        a.train_tasks, a.eval_tasks, a.guard_tasks = min(a.train_tasks, 24), min(a.eval_tasks, 12), min(a.guard_tasks, 6)
    error = check_domain(a)
    if error:
        sys.stderr.write(f"tinygpt quickstart: error: {error}\n")
        return 2
    from tinygpt.retrain import RetrainError, prepare

    out = Path(a.out) if a.out else Path("runs/quickstart" + (f"-{a.domain}" if a.data else ""))
    cfg = loop_config(a, out)
    check_run_dir(out)
    try:
        plan = prepare(cfg)  # every input checked (model, domain, traces, names, --data) before anything is written
        if a.data:  # --short: one pass (a smoke test of the loop)
            cfg.train["epochs"] = 1.0 if a.short else data_epochs(len(plan.suite.tasks("train")))
        out = run_dir(out)
        summary = run_marked(a, cfg, out, console, plan.suite if a.data else None)
    except RetrainError as exc:  # bad input, or a stage that cannot go on: retrain's message says what to do
        sys.stderr.write(f"tinygpt quickstart: error: {exc}\n")
        return 2
    write_status(out, "complete", summary)
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(summary["table"]))
        print(summary["conclusion"])
        print(f"chart: {summary['chart']}")
        for line in summary["next"]:
            print(line)
    return 0


def run_marked(a, cfg, out: Path, console, chats=None) -> dict:
    """`run`, with quickstart.json marked "interrupted" or "failed" if it does not finish."""
    try:
        return run(a, cfg, out, console, chats)
    except BaseException as exc:
        from tinygpt.cli import interrupted

        write_status(out, "interrupted" if interrupted(exc) else "failed", {"error": f"{type(exc).__name__}: {exc}"})
        console.print(f"run directory {out} is incomplete ({STATUS_FILE} says so); the same command continues it")
        raise


def write_status(out: Path, status: str, fields: dict) -> None:
    """Atomically (re)write the run's status file."""
    tmp = out / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps({"created_by": CREATOR, "status": status, **fields}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / STATUS_FILE)


def check_run_dir(out: Path) -> None:
    """RunDirError unless `out` is new, empty, or an earlier quickstart run (continued)."""
    status = out / STATUS_FILE
    ours = False
    if status.is_file() and not status.is_symlink():
        try:
            ours = json.loads(status.read_text(encoding="utf-8")).get("created_by") == CREATOR
        except (OSError, ValueError, AttributeError):
            ours = False
    if out.is_symlink() or (out.exists() and (not out.is_dir() or (any(out.iterdir()) and not ours))):
        raise RunDirError(f"--out {out} exists and is neither empty nor a quickstart run; quickstart writes only into "
                          "a new directory or continues its own. Choose another --out")


def run_dir(out: Path) -> Path:
    """Create (or reopen) the run directory and mark it running."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_status(out, "running", {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {out}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}; choose a writable place with --out"
                          ) from exc
    return out


def check_domain(a) -> str:
    """"" when --domain (and --data) can be used, else what is wrong; fills in the default domain."""
    if a.data is None:
        a.domain = a.domain or "calendar"
        if a.domain not in DOMAINS:
            return (f"--domain {a.domain}: the tool world's domains are {', '.join(DOMAINS)}; for your own chats "
                    f"give --data FILE.jsonl --domain {a.domain}")
        return ""
    if a.domain is None:
        a.domain = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(a.data).stem).strip("-._")[:64] or "chats"
    return ""


def data_epochs(train_chats: int) -> float:
    """Passes over the user's train chats: as many optimizer steps as the built-in recipe takes on its 300
    episodes (one pass), and at most 10 passes."""
    return round(min(10.0, max(1.0, 300 / max(1, train_chats))), 2)


def loop_config(a, out: Path):
    """The retrain run of stages 1-6."""
    from tinygpt.retrain import RetrainConfig

    return RetrainConfig(model=a.model, domain=a.domain, out=str(out / "loop"),
                         guards=[d for d in DOMAINS if d != a.domain], traces=list(a.traces),
                         train_tasks=a.train_tasks, eval_tasks=a.eval_tasks, guard_tasks=a.guard_tasks,
                         train=dict(TRAIN), name=a.name or f"{a.domain}-specialist", in_flight=a.in_flight,
                         max_tokens=128, seed=a.seed, data=a.data or "")


def run(a, cfg, out: Path, console, chats=None) -> dict:
    """Retrain (stages 1-6), the router, the report; returns the summary. `chats`: the user's ChatSuite (--data)."""
    from tinygpt.retrain import retrain

    started = time.time()
    guards, name = cfg.guards, cfg.name
    loop = retrain(cfg, console)
    loop_s = time.time() - started
    router_dir, router_s = train_router(out / "router", a.model, a.short, console, chats)
    report = make_report(a, out, loop, router_dir, name, guards, console, chats)
    report["seconds"] = {"loop": round(loop_s, 1), "router": round(router_s, 1), "total": round(time.time() - started, 1)}
    console.print(f"quickstart: {report['seconds']['total']:.0f} s in all")
    return report


def train_router(directory: Path, generalist: str, short: bool, console, chats=None) -> tuple[Path, float]:
    """Stage 7: the router, trained on the first request of train tasks of every domain (and of the user's train
    chats); reused when RUN/router-stage.json says it learned from the same examples."""
    from tinygpt.evals.loop_report import router_examples
    from tinygpt.router.model import JSON_NAME, save
    from tinygpt.router.settings import Settings
    from tinygpt.router.train import TrainOptions, train

    started = time.time()
    per_suite = 40 if short else ROUTER_EXAMPLES
    suites = [*DOMAINS, *([chats] if chats is not None else [])]
    learned = {"domains": list(DOMAINS), "per_suite": per_suite, "generalist": generalist,
               "chats": None if chats is None else [chats.NAME, [t.id for t in chats.tasks("train")[:per_suite]]]}
    fingerprint = hashlib.sha256(json.dumps(learned, sort_keys=True).encode()).hexdigest()[:16]
    stage = directory.parent / ROUTER_STAGE
    try:
        made = json.loads(stage.read_text(encoding="utf-8")).get("fingerprint") if stage.is_file() else None
    except (OSError, ValueError, AttributeError):
        made = None
    if (directory / JSON_NAME).is_file() and (made == fingerprint or (made is None and not stage.exists()
                                                                      and chats is None)):
        console.print(f"[router] reusing {directory}")  # (no stage file: a built-in run from before it existed)
        return directory, 0.0
    examples = router_examples(suites, per_suite)
    names = ", ".join(s if isinstance(s, str) else f"{s.NAME} (your train chats)" for s in suites)
    console.print(f"[router] training on {len(examples)} first requests of train tasks ({names})")
    model = train(examples, TrainOptions(), Settings(generalist=generalist).checked(), sources=["quickstart"])
    save(model, directory)
    tmp = stage.with_name(f".{stage.name}.tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "examples": len(examples),
                               "learned": {**learned, "chats": learned["chats"] and learned["chats"][0]}},
                              indent=2) + "\n", encoding="utf-8")
    tmp.replace(stage)
    m = model.meta.metrics
    console.print(f"[router] done in {time.time() - started:.1f}s: held-out accuracy "
                  f"{m.accuracy if m.accuracy is not None else '-'}, ECE {m.ece if m.ece is not None else '-'}")
    return directory, time.time() - started


def make_report(a, out: Path, loop: dict, router_dir: Path, name: str, guards: list[str], console,
                chats=None) -> dict:
    """Stage 8: route the held-out tasks, score the three arms on them, write the table and the chart."""
    from tinygpt.evals.loop_report import chart_png, route_tasks, routed_passes, table, text_table
    from tinygpt.router.model import load
    from tinygpt.router.registry import Registry, load_registry
    from tinygpt.router.settings import Settings
    from tinygpt.runtime.store import ModelStore

    evals = json.loads((Path(loop["out"]) / "eval" / f"v{loop['stages']['eval']}" / "stage.json").read_text())
    runs = evals["outputs"]["runs"]
    passed = {suite: {arm: r["passed"] for arm, r in arms.items()} for suite, arms in runs.items()}
    router = load(router_dir)
    settings = Settings(generalist=a.model)
    registry = load_registry(ModelStore(), generalist=a.model)
    # scored against this run's results: other specialists the store may hold (other runs) are left out
    registry = Registry(specialists=tuple(s for s in registry.specialists if s.name == loop.get("registered")),
                        generalist=registry.generalist)
    routes = route_tasks(router, registry, settings,
                         [(chats or a.domain, a.eval_tasks), *((g, a.guard_tasks) for g in guards)])
    (out / "routes.json").write_text(json.dumps(routes, indent=2) + "\n", encoding="utf-8")
    arms = {"base": {s: passed[s]["base"] for s in passed}, "specialist": {s: passed[s]["specialist"] for s in passed},
            "router": routed_passes(routes, passed, loop.get("registered") or name)}
    rows = table(a.domain, arms)
    lines = text_table(rows, {"base": a.model, "specialist": name, "router": "auto"})
    chart = out / "summary.png"
    label = f"{a.domain} (your chats)" if chats is not None else a.domain
    chart.write_bytes(chart_png(rows, f"{label}: gate says {loop['verdict']}"))
    to_specialist = sum(r["route"] == (loop.get("registered") or name) for t in routes.values() for r in t.values())
    base_in, spec_in = rows["base"]["in-domain"], rows["specialist"]["in-domain"]
    base_out, spec_out = rows["base"]["out-of-domain"], rows["specialist"]["out-of-domain"]
    best = max(rows["base"]["mixed"].rate, rows["specialist"]["mixed"].rate)
    where = f"On your held-out {a.domain} chats" if chats is not None else "In-domain"
    conclusion = (f"gate: {loop['verdict']}. {where} the specialist scores {spec_in.rate:.1%} against the base's "
                  f"{base_in.rate:.1%} ({(spec_in.rate - base_in.rate) * 100:+.1f} points); out of domain "
                  f"{spec_out.rate:.1%} against {base_out.rate:.1%} ({(spec_out.rate - base_out.rate) * 100:+.1f}). "
                  f"The router sent {to_specialist} of {sum(len(t) for t in routes.values())} held-out requests to "
                  f"the specialist and scores {rows['router']['mixed'].rate:.1%} on the mixed set (the better arm alone: "
                  f"{best:.1%}).")
    registered = loop.get("registered")
    nxt = ([f"chat with the routed pair:  tinygpt agent --router {router_dir} --tools {_tools(a.domain)}"]
           if chats is None else
           [f"serve the routed pair:      tinygpt serve --router {router_dir}   (model \"auto\"; your client sends "
            "its tools and runs the calls)",
            f"then ask it:                curl -s http://127.0.0.1:11434/v1/chat/completions -H 'content-type: "
            f"application/json' -d @{example_request(out, chats)}   (a held-out chat's first request)",
            f"the held-out turns:         {Path(loop['out']) / 'eval' / ('v' + str(loop['stages']['eval']))}"
            "/results (*.turns.jsonl: each turn's expected and given answer)"])
    if chats is None:
        nxt.append(f"serve it (model \"auto\"):    tinygpt serve --router {router_dir}")
    nxt.append(f"the loop's artifacts:        {loop['out']} (tinygpt retrain --help)")
    if not registered:
        nxt.insert(0, f"the gate did not ship the specialist ({loop['verdict']}): the router sends everything to the base")
    return {"out": str(out), "domain": a.domain, "base": a.model, "specialist": name, "registered": registered,
            "data": str(Path(a.data).expanduser().resolve()) if a.data else None, "chats": loop.get("chats"),
            "verdict": loop["verdict"], "reasons": loop.get("reasons", []),
            "results": {arm: {col: {"passed": c.passed, "tasks": c.tasks, "rate": c.rate, "ci95": [c.lo, c.hi]}
                              for col, c in cells.items()} for arm, cells in rows.items()},
            "table": lines, "conclusion": conclusion, "chart": str(chart), "routes": str(out / "routes.json"),
            "router": str(router_dir), "loop": loop["out"], "next": nxt}


def example_request(out: Path, chats) -> Path:
    """RUN/example-request.json: the first held-out chat's first request as an OpenAI chat-completions body for
    the routed pair (model "auto")."""
    messages, tools = chats.request(chats.tasks("heldout")[0])
    path = out / "example-request.json"
    path.write_text(json.dumps({"model": "auto", "messages": messages, **({"tools": tools} if tools else {})},
                               indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _tools(domain: str) -> str:
    return {"fileops": "fs:virtual", "calendar": "calendar", "shop": "shop"}[domain]
