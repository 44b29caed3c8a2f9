"""`tinygpt route`: where would a request go, and why; `route train` fits a router; `route ls` shows the registry
the router routes over; `route describe` records what a specialist is for (its domain and tools); `route data`
writes the project's labelled request set (evals/router_data.py).

The router is a calibrated classifier over domains (docs/router.md): a request goes to a shipped specialist of
its domain when the calibrated confidence reaches the threshold, else to the local generalist (or an enabled
remote/cloud target configured to take low-confidence requests). Nothing here runs a model or sends anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinygpt.flags import float_in, int_in

SUBCOMMANDS = ("train", "ls", "describe", "data")

EPILOG = """examples:
  tinygpt route "move report.txt into the archive folder" --tools ls,cd,mv
  tinygpt route --messages request.json --json           (request.json: {"messages": [...], "tools": [...]})
  tinygpt route train --data labelled.jsonl --traces runs/evals --out ~/.cache/tinygpt/router
  tinygpt route ls
  tinygpt route describe files-spec --domain fileops --tools ls,cd,mv,cp
  tinygpt route data --out labelled.jsonl --split train   (the project's labelled set, from the suites' tasks)
  tinygpt route -- train                                  (route the text "train")

the decision (docs/router.md):
  d, s = the router's top domain and its calibrated confidence
  a ship specialist of d takes it if s >= --ship; a routed-ship one if s >= --routed-ship (never outside d)
  else, if s < --escalate-below and an enabled target takes low-confidence requests: that target
  else the local generalist
"""


def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ship", type=float_in(0, 1), default=None, help="threshold for a ship specialist")
    p.add_argument("--routed-ship", type=float_in(0, 1), default=None,
                   help="threshold for a routed-ship specialist (stricter)")
    p.add_argument("--escalate-below", type=float_in(0, 1), default=None,
                   help="under this confidence, an enabled low-confidence target takes the request")
    p.add_argument("--generalist", default=None, help="the local model for general requests (default: default)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt route", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", default=None, help="the request's text")
    p.add_argument("--tools", default="", help="comma-separated names of the tools offered with it")
    p.add_argument("--messages", default=None, help="a JSON file: a list of chat messages, or {messages, tools}")
    p.add_argument("--router", default=None, help="the router directory (default: CACHE/router)")
    _settings_flags(p)
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    return p


def build_train_parser() -> argparse.ArgumentParser:
    from tinygpt.router.train_options import TrainOptions

    d = TrainOptions()
    p = argparse.ArgumentParser(prog="tinygpt route train", description="fit and save a calibrated router",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                                    'data: JSON Lines of {"text" | "messages", "tools"?, "domain", "group"?}, and/or '
                                    ".atraj trajectories (domain from the header's labels: domain, else suite)"))
    p.add_argument("--data", action="append", default=[], help="labelled JSONL file (repeatable)")
    p.add_argument("--traces", action="append", default=[], help="directory of .atraj trajectories (repeatable)")
    p.add_argument("--out", default=None, help="where to save the router (default: CACHE/router)")
    p.add_argument("--dim", type=int_in(16), default=d.dim, help=f"hashed feature buckets, a power of 2 ({d.dim})")
    p.add_argument("--steps", type=int_in(1), default=d.steps, help=f"optimizer steps ({d.steps})")
    p.add_argument("--l2", type=float_in(0), default=d.l2, help=f"L2 penalty ({d.l2})")
    p.add_argument("--lr", type=float_in(0, lo_open=True), default=d.lr, help=f"learning rate ({d.lr})")
    p.add_argument("--calibration", type=float_in(0, 0.9), default=d.calibration,
                   help=f"share held out to fit the temperature ({d.calibration})")
    p.add_argument("--test", type=float_in(0, 0.9), default=d.test, help=f"share held out to measure ({d.test})")
    p.add_argument("--seed", type=int_in(0), default=d.seed, help=f"split seed ({d.seed})")
    p.add_argument("--no-text-only", dest="text_only", action="store_false",
                   help="do not also learn each request with tools as if it came without them")
    _settings_flags(p)
    p.add_argument("--json", action="store_true", help="print the training report as JSON")
    return p


def _default_dir() -> Path:
    from tinygpt.runtime.vocab import cache_dir

    return cache_dir() / "router"


def _settings(base, a):
    import msgspec

    changes = {k: v for k, v in (("ship", a.ship), ("routed_ship", a.routed_ship),
                                 ("escalate_below", a.escalate_below), ("generalist", a.generalist)) if v is not None}
    return msgspec.structs.replace(base, **changes)


def main(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        return {"train": train_main, "ls": ls_main, "describe": describe_main, "data": data_main}[argv[0]](argv[1:])
    a = build_parser().parse_args(argv)
    from tinygpt.router.errors import RouterError
    from tinygpt.router.features import request_from
    from tinygpt.router.model import load
    from tinygpt.router.policy import decide
    from tinygpt.router.registry import load_registry
    from tinygpt.runtime.store import ModelStore

    messages, tools = _messages(a.messages) if a.messages else (None, [])
    tools = tools + [t.strip() for t in a.tools.split(",") if t.strip()]
    if a.text is None and not messages:
        raise RouterError("give the request's text (tinygpt route \"...\") or --messages FILE")
    try:
        request = request_from(messages, tools, a.text)
    except ValueError as exc:
        raise RouterError(str(exc)) from exc
    model = load(a.router or _default_dir())
    try:
        settings = _settings(model.meta.settings, a).checked()
    except ValueError as exc:
        raise RouterError(str(exc)) from exc
    registry = load_registry(ModelStore(), generalist=settings.generalist, targets=_live(settings.targets)[0])
    decision = decide(request, model, registry, settings)
    if a.json:
        import msgspec

        sys.stdout.write(msgspec.json.encode(decision).decode() + "\n")
        return 0
    threshold = "" if decision.threshold is None else f" (threshold {decision.threshold:g})"
    print(f"route: {decision.route} ({decision.kind}){threshold}")
    print(f"domain: {decision.domain} at {decision.score:.3f}")
    print(f"reason: {decision.reason}")
    print("domain scores:")
    for d, v in sorted(decision.domain_scores.items(), key=lambda kv: -kv[1]):
        print(f"  {d:<24} {v:6.3f}  {'#' * round(v * 20)}")
    print("target scores:")
    for t, v in sorted(decision.scores.items(), key=lambda kv: -kv[1]):
        print(f"  {t:<24} {v:6.3f}")
    return 0


def _live(targets) -> tuple[tuple, dict[str, str]]:
    """The targets as the server sees them (on only when enabled in router.json and backends.toml), and why each
    one that is off is off."""
    from tinygpt.router.backends import load_backends
    from tinygpt.router.serve_route import live_targets, why_off

    backends = load_backends()
    return live_targets(list(targets), backends), {t.name: why_off(t, backends) for t in targets}


def _messages(path: str) -> tuple[list, list]:
    from tinygpt.router.errors import RouterError

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RouterError(f"no file at {path}; --messages takes a JSON file of chat messages") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RouterError(f"{path} is not JSON ({exc})") from exc
    if isinstance(value, dict):
        messages, tools = value.get("messages"), value.get("tools", [])
    else:
        messages, tools = value, []
    if not isinstance(messages, list) or not isinstance(tools, list):
        raise RouterError(f"{path}: expected a list of messages, or an object with 'messages' (and 'tools') lists")
    return messages, tools


def train_main(argv: list[str]) -> int:
    a = build_train_parser().parse_args(argv)
    from tinygpt.router.data import read_jsonl, read_traces
    from tinygpt.router.errors import RouterError
    from tinygpt.router.model import save, saved_settings
    from tinygpt.router.settings import Settings
    from tinygpt.router.train import TrainOptions, train

    if not a.data and not a.traces:
        raise RouterError("no labelled data: give --data FILE.jsonl and/or --traces DIR")
    options = TrainOptions(dim=a.dim, steps=a.steps, l2=a.l2, lr=a.lr, calibration=a.calibration, test=a.test,
                           seed=a.seed, text_only=a.text_only)
    out = Path(a.out).expanduser() if a.out else _default_dir()
    kept = saved_settings(out)  # before any work: a router.json tinygpt did not write is refused at once
    try:
        settings = _settings(kept or Settings(), a).checked()  # flag > the router's own file > default
    except ValueError as exc:
        raise RouterError(str(exc)) from exc
    examples, skipped = [], 0
    for path in a.data:
        examples += read_jsonl(path)
    for root in a.traces:
        found, missed = read_traces(root)
        examples += found
        skipped += missed
    print(f"router: {len(examples)} labelled requests" + (f" ({skipped} trajectories without a domain label "
                                                         "skipped)" if skipped else "") + f"; options {options}",
          file=sys.stderr)

    def progress(step: int, loss: float) -> None:
        end = "\n" if step == a.steps else ""
        print(f"\rtraining: step {step}/{a.steps}, loss {loss:.4f}", end=end, file=sys.stderr, flush=True)

    from tinygpt.runtime.store import DEFAULT, ModelStore

    known = ModelStore().names()
    if settings.generalist != DEFAULT and settings.generalist not in known:
        raise RouterError(f"the generalist {settings.generalist!r} is not a model of the store ({', '.join(known)}); "
                          "register it (`tinygpt models add NAME DIR`) or give --generalist one of those")
    if kept is not None:
        print(f"router: keeping the settings of {out / 'router.json'} (flags override them)", file=sys.stderr)
    model = train(examples, options, settings, sources=[*a.data, *a.traces], progress=progress)
    save(model, out)
    m = model.meta.metrics
    report = {"router": str(out), "id": model.id, "domains": m.per_domain, "train": m.train,
              "calibration": m.calibration, "test": m.test, "temperature": round(model.temperature, 4),
              "accuracy": m.accuracy, "ece_raw": m.ece_raw, "ece": m.ece}
    if a.json:
        print(json.dumps(report))
        return 0
    print(f"saved {model.id} to {out}")
    print("domains: " + ", ".join(f"{d} ({n})" for d, n in m.per_domain.items()))
    print(f"rows: {m.train} train, {m.calibration} calibration, {m.test} test; temperature {model.temperature:.3f}")
    if m.accuracy is None:
        print("held-out: none (too few groups per domain to hold any out)")
    else:
        print(f"held-out accuracy {m.accuracy:.3f}; ECE {m.ece_raw:.3f} before calibration, {m.ece:.3f} after")
    return 0


def ls_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt route ls", description="the specialists the router sees, and why each "
                                "is or is not routable")
    p.add_argument("--router", default=None, help="the router directory, for its generalist and targets")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    import msgspec

    from tinygpt.router.model import JSON_NAME, load
    from tinygpt.router.registry import load_registry
    from tinygpt.router.settings import Settings
    from tinygpt.runtime.store import ModelStore

    where = Path(a.router).expanduser() if a.router else _default_dir()
    settings = load(where).meta.settings if (where / JSON_NAME).is_file() else Settings()
    targets, off = _live(settings.targets)
    reg = load_registry(ModelStore(), generalist=settings.generalist, targets=targets)
    if a.json:
        print(json.dumps({"generalist": reg.generalist, "specialists": msgspec.to_builtins(list(reg.specialists)),
                          "targets": [{**msgspec.to_builtins(t), "why_off": off[t.name]} for t in reg.targets]}))
        return 0
    print(f"generalist: {reg.generalist}")
    for s in reg.specialists:
        print(f"{'+' if s.routable else '-'} {s.name:<24} domain {s.domain or '-':<14} {s.status:<12} {s.why}")
    if not reg.specialists:
        print("no specialists registered (`tinygpt models add NAME --base BASE --adapter DIR`)")
    for t in reg.targets:
        print(f"{'+' if t.enabled else '-'} {t.name:<24} {t.kind} target, {'on' if t.enabled else 'off'}"
              + (f" ({off[t.name]})" if off[t.name] else "")
              + (", takes low-confidence requests" if t.low_confidence else ""))
    return 0


def describe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt route describe", description="record a registered model's domain "
                                "and tools (what the router routes to it)")
    p.add_argument("name", help="a registered model (see `tinygpt models ls`)")
    p.add_argument("--domain", default=None, help="its domain, as the labelled data names it ('' clears it)")
    p.add_argument("--tools", default=None, help="comma-separated tool names it was trained to call")
    a = p.parse_args(argv)
    from tinygpt.router.errors import RouterError
    from tinygpt.runtime.store import ModelStore

    if a.domain is None and a.tools is None:
        raise RouterError("nothing to record: give --domain and/or --tools")
    tools = None if a.tools is None else [t.strip() for t in a.tools.split(",") if t.strip()]
    e = ModelStore().describe(a.name, domain=a.domain, tools=tools)
    print(f"{e.name}: domain {e.domain or '-'}, tools {', '.join(e.tools) or '-'}, status {e.status}")
    return 0


def data_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt route data", description="write the labelled request set built from "
                                "the suites' tasks (fileops; BFCL's trading, vehicle and travel tasks)")
    p.add_argument("--out", required=True, help="the JSONL file to write (a new file)")
    p.add_argument("--split", choices=("train", "heldout"), default=None, help="only this split (default: both)")
    a = p.parse_args(argv)
    from collections import Counter

    from tinygpt.evals.router_data import labelled_rows

    rows = labelled_rows(a.split)
    with open(Path(a.out).expanduser(), "x", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    counts = Counter(r["domain"] for r in rows)
    print(f"wrote {len(rows)} labelled requests to {a.out}: "
          + ", ".join(f"{d} {n}" for d, n in sorted(counts.items())))
    return 0
