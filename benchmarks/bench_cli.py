"""CLI start-up: how long `tinygpt serve --help` and `tinygpt agent --bad-flag` take as whole processes.

Each command runs as a fresh process (the installed `tinygpt` entry point) once to warm the page cache, then
`--runs` times, the commands interleaved so machine drift hits all alike; wall time from the parent, CPU time
from the child's rusage. `python -c pass` is measured alongside as the floor no CLI can beat. Writes
benchmarks/results/cli.json with the machine it ran on and prints median/min/max. Target: median <= 0.5 s.
Usage: python benchmarks/bench_cli.py [--runs 15]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TINYGPT = str(Path(sys.executable).with_name("tinygpt"))
COMMANDS = {
    "tinygpt serve --help": [TINYGPT, "serve", "--help"],
    "tinygpt agent --bad-flag": [TINYGPT, "agent", "--bad-flag"],
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
}
TARGET_S = 0.5


def time_once(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, child CPU seconds, exit code) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15, help="counted runs per command (default 15)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cli.json")
    a = p.parse_args()
    from machine import machine_info

    load_before = os.getloadavg()[0]
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    codes: dict[str, int] = {}
    for name, argv in COMMANDS.items():
        codes[name] = time_once(argv)[2]  # warm-up, not counted
    for _ in range(a.runs):
        for name, argv in COMMANDS.items():
            wall, cpu, _code = time_once(argv)
            walls[name].append(round(wall, 4))
            cpus[name].append(round(cpu, 4))
    results = {}
    for name in COMMANDS:
        w = walls[name]
        results[name] = {"wall_s": w, "median_s": round(statistics.median(w), 3), "min_s": min(w), "max_s": max(w),
                         "median_cpu_s": round(statistics.median(cpus[name]), 3), "exit_code": codes[name]}
        print(f"{name:<28} median {results[name]['median_s']:.3f} s  min {min(w):.3f}  max {max(w):.3f}  "
              f"(cpu {results[name]['median_cpu_s']:.3f} s, exit {codes[name]})")
    cli_names = [n for n in COMMANDS if n.startswith("tinygpt")]
    result = {
        "benchmark": "cli-startup", "target_median_s": TARGET_S, "runs": a.runs, "commands": results,
        "passed": all(results[n]["median_s"] <= TARGET_S for n in cli_names),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "machine": machine_info(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"target median <= {TARGET_S} s: {'met' if result['passed'] else 'not met'} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
