"""The closed loop (issue 14): `tinygpt quickstart` from scratch, timed, with its numbers.

Runs `tinygpt quickstart --out <fresh dir> --json [flags]` as a user would (one process, a model store in a
temporary TINYGPT_CACHE so the user's is untouched), records the wall time (set-up excluded: the venv exists),
the load average while it ran, each stage's time from the run's files, and the summary (base / specialist /
router pass rates with 95% intervals in-domain, out-of-domain and mixed, the gate's verdict).
Writes benchmarks/results/loop.json. Usage: python benchmarks/bench_loop.py [quickstart flags...]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    from machine import machine_info, write_result

    flags = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "qs"
        env = {**os.environ, "TINYGPT_CACHE": str(Path(tmp) / "cache")}
        command = ["tinygpt", "quickstart", "--out", str(out), "--json", *flags]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"quickstart failed ({done.returncode}):\n{done.stderr[-4000:]}")
        summary = json.loads(done.stdout)
        stages = {}
        for stage_json in sorted((out / "loop").glob("*/v*/stage.json")):
            s = json.loads(stage_json.read_text())
            stages[stage_json.parent.parent.name] = round(s.get("seconds") or 0.0, 1)
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "loop-summary.png").write_bytes(Path(summary["chart"]).read_bytes())
    write_result(str(HERE / "results" / "loop.json"), {
        "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["tinygpt", "quickstart", *flags]), "wall_s": round(wall, 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "stages_s": stages,
        "summary": {k: v for k, v in summary.items() if k not in ("next",)}})


if __name__ == "__main__":
    main()
