"""eval-router on the project's labelled set (issue 13 #5): routing accuracy, calibration, escalation and the
three-tier cost–quality curve of a router trained on the train split, measured on the heldout split.

Cases: `tools` (the heldout requests as they come, with their tools), `text-only` (the same requests with their
tools removed: the text alone must carry the domain), and `travel-unseen` (a router trained without any travel
request, so travel is out of every domain it knows). Specialists: fileops, trading and vehicle (travel has none,
and `general`, the off-domain requests for the generalist, never has one: their requests should escalate). Quality per tier is the stated assumption QUALITY below (no eval result
rows exist yet for a specialist, the generalist and a cloud model on these tasks); costs are eval-router's
default relative units. Writes benchmarks/results/eval_router.json.
Usage: python benchmarks/bench_eval_router.py
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SPECIALISTS = "fileops,trading,vehicle"
QUALITY = "specialist=0.9,off_domain=0.1,generalist=0.6,cloud=0.95"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train(data: Path, out: Path) -> float:
    from tinygpt.cli_route import train_main

    start = time.perf_counter()
    assert train_main(["--data", str(data), "--out", str(out), "--json"]) == 0
    return time.perf_counter() - start


def _evaluate(router: Path, data: Path) -> tuple[dict, float]:
    from tinygpt.cli_eval_router import build_parser, run

    start = time.perf_counter()
    result = run(build_parser().parse_args(["--router", str(router), "--data", str(data), "--specialists",
                                            SPECIALISTS, "--quality", QUALITY]))
    return result, time.perf_counter() - start


def _summary(name: str, result: dict, train_s: float, eval_s: float) -> dict:
    c = result["curve"]
    keep = ("requests", "accuracy", "per_domain", "ece", "reliability", "escalation", "shares", "quality_source",
            "quality_inputs", "costs", "specialists", "settings", "quality_at_settings", "cost_at_settings")
    return {"case": name, "train_s": round(train_s, 2), "eval_s": round(eval_s, 2), "router_id": result["router_id"],
            "router_domains": result["router_domains"], **{k: result[k] for k in keep},
            "curve": {"apgr": c["apgr"], "cpt50": c["cpt50"], "cpt80": c["cpt80"], "weak": c["weak"],
                      "strong": c["strong"], "oracle": {k: c["oracle"][k] for k in ("apgr", "cpt50", "cpt80")},
                      "references": c["references"], "points": len(c["points"])}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "results" / "eval_router.json"))
    a = p.parse_args()
    from machine import machine_info, write_result

    from tinygpt.evals.router_data import labelled_rows

    train_rows, heldout_rows = labelled_rows("train"), labelled_rows("heldout")
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_all = _write(tmp / "train.jsonl", train_rows)
        heldout = _write(tmp / "heldout.jsonl", heldout_rows)
        text_only = _write(tmp / "heldout-text.jsonl", [{**r, "tools": []} for r in heldout_rows])
        train_s = _train(train_all, tmp / "r4")
        for name, data in (("tools", heldout), ("text-only", text_only)):
            result, eval_s = _evaluate(tmp / "r4", data)
            cases.append(_summary(name, result, train_s, eval_s))
        no_travel = _write(tmp / "train-no-travel.jsonl", [r for r in train_rows if r["domain"] != "travel"])
        train_s = _train(no_travel, tmp / "r3")
        result, eval_s = _evaluate(tmp / "r3", heldout)
        cases.append(_summary("travel-unseen", result, train_s, eval_s))
    for c in cases:
        e = c["escalation"]
        print(f"{c['case']:<14} accuracy {c['accuracy']['rate']:.3f} ECE {c['ece']:.3f} escalation P "
              f"{e['precision']} R {e['recall']} APGR {c['curve']['apgr']:.3f} (oracle "
              f"{c['curve']['oracle']['apgr']:.3f}) CPT50 {c['curve']['cpt50']:.3f} CPT80 {c['curve']['cpt80']:.3f}")
    write_result(a.out, {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"),
                         "data": "the project's labelled set (evals/router_data.py): train split -> router, heldout "
                                 "split measured", "train_requests": len(train_rows),
                         "heldout_requests": len(heldout_rows), "quality_assumption": QUALITY,
                         "specialists": SPECIALISTS.split(","), "cases": cases})


if __name__ == "__main__":
    main()
