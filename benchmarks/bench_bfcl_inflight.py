"""P10 (issue 12): BFCL multi-turn episodes per minute with N episodes in flight / one at a time, same model, same
tasks, same token budget, greedy (so both ways do the same work: the rows must be equal, which is checked).

A random-init model of a preset's shape (default qwen3-0.6b, the embedded BPE vocabulary: no download) plays the
first --tasks tasks of a BFCL category through evals/runner.py's run_suite under the tool grammar, once with
--in-flight 1 and once with N (episodes interleaved so their calls batch in the engine's one scheduler).
Both ways must play the same episodes: the same rows, and the same output ids in every model call of every
trajectory (checked). Each way's engine is warmed up on the first task, then its prefix cache and counters are
cleared. The JSON has, per way, the lane's work by path (runtime/lane_work.py: prompt ids prefilled solo, staged
outside the batch and by mlx-lm's batch prompt processing, with their seconds; decode tokens and seconds; ids
reused from sessions and the prefix cache), so a run shows where its time went.
Writes JSON. It changes nothing; it only measures.
Usage: python benchmarks/bench_bfcl_inflight.py [--device gpu|cpu] [--tasks 16] [--in-flight 8] [--out FILE]
       [--prefix-cache-mb 2048] [--stage-min N] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)
import mlx.core as mx

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

from tinygpt.evals import bfcl  # noqa: E402
from tinygpt.evals.runner import RunSettings, run_suite  # noqa: E402
from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.lane_work import LaneWork  # noqa: E402
from tinygpt.runtime.presets import InitSpec, init_model  # noqa: E402
from tinygpt.traces.atraj import ModelCall  # noqa: E402
from tinygpt.traces.reader import read_episode  # noqa: E402


def play(model_dir: Path, tasks, in_flight: int, args, out: Path, name: str) -> dict:
    engine = Engine(load(str(model_dir)), prefix_cache_bytes=args.prefix_cache_mb << 20,
                    solo_processors=in_flight == 1)
    lane = engine.scheduler.lane()
    if args.stage_min is not None:
        lane.config.stage_min = args.stage_min
    settings = RunSettings(max_tokens=args.max_tokens, in_flight=in_flight)
    run_suite(engine, bfcl, tasks[:1], settings, out / "warmup", model="bench", split="test")  # kernels, grammar
    lane.prefix_cache.trim_to(n_sequences=0)  # the measured run starts cold, as the first did
    lane.work = LaneWork()
    started = time.perf_counter()
    _, rows = run_suite(engine, bfcl, tasks, settings, out / name, model="bench", split="test")
    wall = time.perf_counter() - started
    calls = [[(len(c.prompt_token_ids or ()), c.cached_tokens, list(c.output_token_ids or ()))
              for c in read_episode(out / name / r.trajectories[0]).events if isinstance(c, ModelCall)]
             for r in rows]
    return {"in_flight": in_flight, "wall_s": round(wall, 2), "episodes_per_min": round(len(rows) * 60 / wall, 2),
            "steps": sum(r.steps for r in rows), "output_tokens": sum(r.output_tokens for r in rows),
            "prompt_tokens": sum(r.prompt_tokens for r in rows), "peak_batch": lane.peak_active,
            "stage_min": lane.config.stage_min, "prefill_step": lane.config.prefill_step,
            "work": lane.work.as_dict(),
            "rows": [(r.task_id, r.steps, r.output_tokens, r.end, r.passed) for r in rows], "calls": calls}


def _mean(runs: list[dict]) -> dict:
    """One way's runs as one: the first's counts and work, the mean wall (each run's wall listed)."""
    wall = sum(r["wall_s"] for r in runs) / len(runs)
    return {**runs[0], "wall_s": round(wall, 2), "episodes_per_min": round(runs[0]["episodes_per_min"]
                                                                            * runs[0]["wall_s"] / wall, 2),
            "walls_s": [r["wall_s"] for r in runs]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu" if mx.default_device() == mx.gpu else "cpu")
    p.add_argument("--preset", default="qwen3-0.6b")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--category", default="base")
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per model step")
    p.add_argument("--prefix-cache-mb", type=int, default=2048, help="the engine's prefix cache (tinygpt's default)")
    p.add_argument("--stage-min", type=int, default=None,
                   help="prompt ids from which a job is prefilled outside the batch (0: never; default: the lane's)")
    p.add_argument("--rounds", type=int, default=1,
                   help="1: one at a time, then in flight; 2: one, in flight, in flight, one (drift on a shared "
                        "machine cancels out); the ratio is of the mean walls")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    mx.set_default_device(mx.gpu if a.device == "gpu" else mx.cpu)
    dtype = a.dtype or ("bfloat16" if a.device == "gpu" else "float32")
    tasks = [t for t in bfcl.tasks("test") if t.category == a.category][: a.tasks]
    with tempfile.TemporaryDirectory() as tmp:
        model = init_model(Path(tmp) / "model", InitSpec(preset=a.preset, dtype=dtype))
        order = [1, a.in_flight] if a.rounds == 1 else [1, a.in_flight, a.in_flight, 1] * (a.rounds // 2)
        runs = [play(model, tasks, n, a, Path(tmp), f"run{i}-n{n}") for i, n in enumerate(order)]
    rows, calls = [r.pop("rows") for r in runs], [r.pop("calls") for r in runs]
    same = all(x == rows[0] for x in rows)
    same_ids = all([[c[2] for c in e] for e in x] == [[c[2] for c in e] for e in calls[0]] for x in calls)
    same_cached = all([[c[:2] for c in e] for e in x] == [[c[:2] for c in e] for e in calls[0]] for x in calls)
    one, many = (_mean([r for r in runs if r["in_flight"] == n]) for n in (1, a.in_flight))
    result = {"benchmark": "bfcl_inflight", "machine": machine_info(), "preset": a.preset, "dtype": dtype,
              "category": a.category, "tasks": len(tasks), "max_tokens": a.max_tokens,
              "prefix_cache_mb": a.prefix_cache_mb, "rounds": a.rounds, "one": one, "many": many,
              "same_rows": same, "same_output_ids": same_ids, "same_cached_tokens": same_cached,
              "speedup": round(many["episodes_per_min"] / one["episodes_per_min"], 2),
              "load_avg": [round(x, 2) for x in os.getloadavg()],
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0 if same and same_ids else 1


if __name__ == "__main__":
    sys.exit(main())
