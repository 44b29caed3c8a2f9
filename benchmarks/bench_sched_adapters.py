"""P12 (part): specialists of one base served at once — one shared batch (multi_adapter rows) vs each adapter's
own batch in turn — aggregate generated tokens per second through the runtime's scheduler, in one run.

Builds a random-init base (--preset) and --adapters random LoRA adapters in a temp store, then for each mode
submits --per-adapter greedy requests per specialist at once and times until all finish (median of --rounds,
modes alternated after a discarded warm-up). Writes JSON (--out). Everything stays in a temp directory.
Usage: python benchmarks/bench_sched_adapters.py [--preset small] [--adapters 2] [--per-adapter 4] [--tokens 64]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

from tinygpt.runtime.catalog import Catalog  # noqa: E402
from tinygpt.runtime.jobs import Failed, Finished, Job  # noqa: E402
from tinygpt.runtime.presets import InitSpec, init_adapter, init_model  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig  # noqa: E402
from tinygpt.runtime.store import ModelStore  # noqa: E402


def run(s: Scheduler, names: list[str], per: int, tokens: int) -> float:
    """Seconds until every request finished; returns generated tokens per second."""
    done: list = []
    jobs = []
    for i in range(per):
        for n in names:
            params = SamplingParams(max_tokens=tokens, stop_token_ids=())
            job = Job(prompt_ids=[5 + i, 6, 7, 8, 9, 10 + i], params=params,
                      model=n, post=lambda ev: done.append(ev) if isinstance(ev, (Finished, Failed)) else None)
            jobs.append(job)
    t0 = time.perf_counter()
    for job in jobs:
        s.submit(job)
    while len(done) < len(jobs):
        time.sleep(0.002)
    if any(isinstance(e, Failed) for e in done):
        raise RuntimeError([e.message for e in done if isinstance(e, Failed)][0])
    return len(jobs) * tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--adapters", type=int, default=2)
    ap.add_argument("--per-adapter", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/sched_adapters.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = init_model(root / "base", InitSpec(preset=a.preset))
        store = ModelStore(root / "models")
        names = []
        for i in range(a.adapters):
            init_adapter(base, root / f"a{i}", rank=8, seed=i)
            store.add(f"spec{i}", root / f"a{i}", base=str(base))
            names.append(f"spec{i}")
        modes = {}
        for shared in (True, False):
            s = Scheduler(Catalog(str(base), "base", store=store),
                          SchedulerConfig(max_batch=a.adapters * a.per_adapter, share_adapters=shared))
            s.start(preload=names)
            modes["shared" if shared else "in_turn"] = s
        samples: dict[str, list[float]] = {k: [] for k in modes}
        try:
            for k, s in modes.items():
                run(s, names, a.per_adapter, 8)  # warm-up
            for _ in range(a.rounds):
                for k, s in modes.items():
                    samples[k].append(run(s, names, a.per_adapter, a.tokens))
        finally:
            for s in modes.values():
                s.stop()
    result = {"preset": a.preset, "adapters": a.adapters, "per_adapter": a.per_adapter, "tokens": a.tokens,
              "tok_per_s": {k: statistics.median(v) for k, v in samples.items()}, "samples": samples,
              "machine": machine_info()}
    result["shared_vs_in_turn"] = round(result["tok_per_s"]["shared"] / result["tok_per_s"]["in_turn"], 3)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("tok_per_s", "shared_vs_in_turn")}))


if __name__ == "__main__":
    main()
