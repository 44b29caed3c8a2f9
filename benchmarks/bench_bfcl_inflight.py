"""P10 (issue 12): BFCL multi-turn episodes per minute with N episodes in flight / one at a time, same model, same
tasks, same token budget, greedy (so both ways do the same work: the rows must be equal, which is checked).

A random-init model of a preset's shape (default qwen3-0.6b, the embedded BPE vocabulary: no download) plays the
first --tasks tasks of a BFCL category through evals/runner.py's run_suite under the tool grammar, once with
--in-flight 1 and once with N (episodes interleaved so their calls batch in the engine's one scheduler).
Writes JSON. It changes nothing; it only measures.
Usage: python benchmarks/bench_bfcl_inflight.py [--device gpu|cpu] [--tasks 16] [--in-flight 8] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
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
from tinygpt.runtime.presets import InitSpec, init_model  # noqa: E402


def play(model_dir: Path, tasks, in_flight: int, max_tokens: int, out: Path) -> dict:
    engine = Engine(load(str(model_dir)), solo_processors=in_flight == 1)
    settings = RunSettings(max_tokens=max_tokens, in_flight=in_flight)
    run_suite(engine, bfcl, tasks[:1], settings, out / "warmup", model="bench", split="test")  # kernels, grammar
    started = time.perf_counter()
    _, rows = run_suite(engine, bfcl, tasks, settings, out / f"n{in_flight}", model="bench", split="test")
    wall = time.perf_counter() - started
    lane = engine.scheduler.lane()
    return {"in_flight": in_flight, "wall_s": round(wall, 2), "episodes_per_min": round(len(rows) * 60 / wall, 2),
            "steps": sum(r.steps for r in rows), "output_tokens": sum(r.output_tokens for r in rows),
            "prompt_tokens": sum(r.prompt_tokens for r in rows), "peak_batch": lane.peak_active,
            "rows": [(r.task_id, r.steps, r.output_tokens, r.end, r.passed) for r in rows]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu" if mx.default_device() == mx.gpu else "cpu")
    p.add_argument("--preset", default="qwen3-0.6b")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--category", default="base")
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per model step")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    mx.set_default_device(mx.gpu if a.device == "gpu" else mx.cpu)
    dtype = a.dtype or ("bfloat16" if a.device == "gpu" else "float32")
    tasks = [t for t in bfcl.tasks("test") if t.category == a.category][: a.tasks]
    with tempfile.TemporaryDirectory() as tmp:
        model = init_model(Path(tmp) / "model", InitSpec(preset=a.preset, dtype=dtype))
        one = play(model, tasks, 1, a.max_tokens, Path(tmp))
        many = play(model, tasks, a.in_flight, a.max_tokens, Path(tmp))
    same = one.pop("rows") == many.pop("rows")
    result = {"benchmark": "bfcl_inflight", "machine": machine_info(), "preset": a.preset, "dtype": dtype,
              "category": a.category, "tasks": len(tasks), "max_tokens": a.max_tokens, "one": one, "many": many,
              "same_rows": same, "speedup": round(many["episodes_per_min"] / one["episodes_per_min"], 2),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
