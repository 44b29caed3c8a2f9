"""`tinygpt eval-gate`: should a candidate ship? Compares it with a baseline on the result rows of `tinygpt eval`.

Prints tables per suite and category with intervals (or --json), writes gate-result.json and a PNG chart, and
records the verdict as the candidate's status in the model store. Exit code: 0 ship or routed-ship, 1 reject,
3 inconclusive, 2 a usage error — including any missing results, which never count as a pass.
"""
from __future__ import annotations

import argparse
import sys

from tinygpt.cli_eval import DEFAULT_OUT

EPILOG = f"""examples:
  tinygpt eval-gate --candidate my-specialist --baseline qwen3-0.6b --suites fileops
  tinygpt eval-gate --candidate spec --baseline base --suites fileops bfcl-other-domains --config gate.toml --json
  tinygpt eval-gate --candidate spec --baseline base --suites fileops --results runs/evals --split heldout

how it decides (docs/evals.md has the details):
  The first suite (or --target) is the target; the others are guards. Tasks are paired across the two models.
  Per suite: each model's pass rate with a Wilson interval (the task is the unit); the paired difference with
  the exact McNemar test and Tango's interval for one pass per task, or a seeded paired bootstrap over tasks
  for K passes. The target is tested for "no improvement", each guard for "worse by more than its margin",
  Holm-adjusted across the suites.
    ship          the target improves and every guard holds within its margin        exit 0
    routed-ship   the target improves, a guard may lose more than its margin          exit 0
                  (use the candidate only behind the router, for the target's requests)
    reject        no improvement on the target (or clearly worse)                     exit 1
    inconclusive  an improvement the data cannot yet show; says how many more tasks   exit 3
                  would resolve it at the observed effect

config (TOML, fixed before the runs; its SHA-256 goes into gate-result.json):
  confidence = 0.95    margin = 0.05    min_tasks = 10    power = 0.8
  bootstrap_resamples = 10000    seed = 0
  [margins]
  bfcl-other-domains = 0.03
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt eval-gate", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", required=True, help="the model to judge, as named in `tinygpt eval --model`")
    p.add_argument("--baseline", required=True, help="the model it must beat")
    p.add_argument("--suites", nargs="+", required=True, help="suites to judge on (space- or comma-separated)")
    p.add_argument("--target", default=None, help="the suite the candidate must improve (default: the first)")
    p.add_argument("--results", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    p.add_argument("--split", default=None, help="use only runs of this split (default: every run found)")
    p.add_argument("--config", default=None, help="gate config TOML (default: the defaults shown below)")
    p.add_argument("--out", default=None, help="where to write the result (default RESULTS/gate-result.json)")
    p.add_argument("--chart", default=None, help="where to write the PNG chart (default RESULTS/gate-result.png)")
    p.add_argument("--no-chart", action="store_true", help="do not write the chart")
    p.add_argument("--no-record", action="store_true", help="do not record the verdict in the model store")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    import msgspec
    from rich.console import Console

    from tinygpt.evals.chart import SOFTWARE
    from tinygpt.evals.errors import EvalError
    from tinygpt.evals.gate import RESULT_KIND, evaluate
    from tinygpt.evals.gate_config import load_gate_config
    from tinygpt.evals.owned_file import check_owned, json_of_kind, png_by, write_owned
    from tinygpt.evals.results import read_results
    from tinygpt.evals.suite import SUITES

    _ours_json, _ours_png = json_of_kind(RESULT_KIND), png_by(SOFTWARE)
    suites = [s for item in a.suites for s in item.split(",") if s]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise EvalError(f"unknown suite {unknown[0]!r}; suites: {', '.join(SUITES)}")
    out = a.out or f"{a.results}/gate-result.json"
    chart = None if a.no_chart else (a.chart or f"{a.results}/gate-result.png")
    check_owned(out, _ours_json, "--out")  # before any work: a user's file there is refused at once
    if chart:
        check_owned(chart, _ours_png, "--chart")
    cfg, source = load_gate_config(a.config)
    result = evaluate(read_results(a.results), candidate=a.candidate, baseline=a.baseline, suites=suites,
                      target=a.target, cfg=cfg, source=source, split=a.split)
    scripted = [f"the {name}'s rows are a scripted replay (policy {arm.policy})"
                for name, arm in (("candidate", result.candidate), ("baseline", result.baseline))
                if arm.policy != "model"]
    if scripted:  # a harness check says nothing about the model: never a verdict in the store
        result = msgspec.structs.replace(result, recorded=f"not recorded: {'; '.join(scripted)}, not the model's "
                                                          "own answers")
    elif not a.no_record:
        from tinygpt.evals.verdict_store import record_verdict
        from tinygpt.runtime.store import ModelStore

        recorded = record_verdict(ModelStore(), a.candidate, result.candidate.model_fingerprint, result.verdict)
        result = msgspec.structs.replace(result, recorded=recorded)
    else:
        result = msgspec.structs.replace(result, recorded="not recorded (--no-record)")
    body = msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"
    write_owned(out, body, _ours_json, "--out")
    if chart:
        from tinygpt.evals.chart import chart_png

        write_owned(chart, chart_png(result), _ours_png, "--chart")
    if a.json:
        sys.stdout.write(body.decode())
    else:
        from tinygpt.evals.report import print_gate

        print_gate(result, Console(width=None if sys.stdout.isatty() else 200, markup=False, highlight=False))
        err = Console(stderr=True, markup=False, highlight=False)
        err.print(f"{result.recorded}; wrote {out}" + (f" and {chart}" if chart else ""))
        if result.config_fixed_before_runs is False:
            err.print(f"warning: the gate config {result.config_path} was changed after the runs it judges began; "
                      "margins are meant to be fixed before the runs", style="yellow")
    return result.exit_code
