"""P11: routing decision latency on the CPU, for 1 and for 50 registered specialists.

For each case a router is trained on synthetic labelled requests (3 domains for 1 specialist, 50 domains for
50), a model store in a temporary directory registers the specialists (fake model files: routing reads no
weights) as shipped with their domains, and the registry view is built once, as a server holds it. Then
`decide` runs on held-out requests of two sizes: a typical agent request (about 60 words and 18 tools offered)
and a long one (4000+ characters, the most the features read). Reported: p50 and p99 of single decisions in
ms, wall clock and this thread's CPU time (the machine is shared: waiting for a core shows in the wall clock
only, mostly in p99), plus how long rebuilding the registry view from the store takes. Target: p50 <= 2 ms.
Writes benchmarks/results/router.json. Usage: python benchmarks/bench_router.py [--decisions 2000]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TARGET_MS = 2.0
WORDS = [f"w{i}" for i in range(2000)]


def _tools(domain: int, rng: random.Random, n: int = 18) -> tuple[str, ...]:
    own = [f"d{domain}_tool_{k}" for k in range(8)]
    shared = [f"common_{k}" for k in range(30)]
    return tuple(rng.sample(own, 4) + rng.sample(shared, n - 4))


def _request(domain: int, rng: random.Random, words: int):
    from tinygpt.router.features import Request

    text = " ".join([f"d{domain}topic{rng.randrange(10)}"] * 2 + [rng.choice(WORDS) for _ in range(words)])
    return Request(text, _tools(domain, rng))


def _store(root: Path, domains: int, specialists: int):
    from tinygpt.runtime.store import ModelStore

    base = root / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen3"}')
    (base / "model.safetensors").write_bytes(b"x")
    store = ModelStore(root / "models")
    store.add("base", base)
    for k in range(specialists):
        adapter = root / "adapters" / f"s{k}"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text("{}")
        (adapter / "adapters.safetensors").write_bytes(b"x")
        store.add(f"s{k}", adapter, base="base")
        store.set_status(f"s{k}", "shipped" if k % 2 == 0 else "routed-ship")
        store.describe(f"s{k}", domain=f"d{k % domains}")
    return store


def case(specialists: int, decisions: int, seed: int = 0) -> dict:
    from tinygpt.router.data import Example
    from tinygpt.router.policy import decide
    from tinygpt.router.registry import load_registry
    from tinygpt.router.train import TrainOptions, train

    domains = max(3, specialists)
    rng = random.Random(seed)
    examples = [Example(_request(d, rng, 60), f"d{d}", f"{d}-{i}") for d in range(domains) for i in range(40)]
    start = time.perf_counter()
    model = train(examples, TrainOptions(steps=200))
    train_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp), domains, specialists)
        refresh = []
        for _ in range(20):
            t = time.perf_counter()
            registry = load_registry(store, generalist="base")
            refresh.append(time.perf_counter() - t)
    out = {"specialists": specialists, "domains": domains, "train_examples": len(examples),
           "train_s": round(train_s, 3), "accuracy": model.meta.metrics.accuracy, "ece": model.meta.metrics.ece,
           "registry_refresh_ms_p50": round(float(np.median(refresh)) * 1e3, 3), "requests": {}}
    for name, words in (("typical", 60), ("long", 700)):
        requests = [_request(rng.randrange(domains), rng, words) for _ in range(decisions)]
        for r in requests[:50]:  # warm-up
            decide(r, model, registry)
        wall, cpu, routed = [], [], 0
        for r in requests:
            t, c = time.perf_counter(), time.thread_time()
            d = decide(r, model, registry)
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
            routed += d.kind == "specialist"
        ms, cpu_ms = np.array(wall) * 1e3, np.array(cpu) * 1e3
        out["requests"][name] = {"chars": int(np.mean([len(r.text) for r in requests])), "tools": 18,
                                 "p50_ms": round(float(np.percentile(ms, 50)), 4),
                                 "p99_ms": round(float(np.percentile(ms, 99)), 4),
                                 "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 4),
                                 "cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 4),
                                 "mean_ms": round(float(ms.mean()), 4), "routed_to_specialist": routed / len(ms)}
        print(f"{specialists:>2} specialists, {name:<7}: p50 {out['requests'][name]['p50_ms']:.3f} ms, "
              f"p99 {out['requests'][name]['p99_ms']:.3f} ms (thread CPU time p50 "
              f"{out['requests'][name]['cpu_p50_ms']:.3f}, p99 {out['requests'][name]['cpu_p99_ms']:.3f})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decisions", type=int, default=2000)
    p.add_argument("--out", default=str(HERE / "results" / "router.json"))
    a = p.parse_args()
    from machine import machine_info, write_result

    cases = [case(n, a.decisions) for n in (1, 50)]
    p50 = max(c["requests"]["typical"]["p50_ms"] for c in cases)
    load = os.getloadavg()[0]
    write_result(a.out, {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "decisions": a.decisions,
                         "load_average_1m": round(load, 2),
                         "target_p50_ms": TARGET_MS, "cases": cases, "passed": p50 <= TARGET_MS})


if __name__ == "__main__":
    main()
