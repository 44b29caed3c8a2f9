"""Engine benchmarks P1, P3, P4 (issue 2), measured side by side in one run; writes JSON.

P1: engine decode tok/s / raw mlx_lm generate_step decode tok/s (same model, prompt, greedy, interleaved runs).
P3: turn-N time-to-first-token with persistent KV vs full re-prefill, at 1k/2k/4k tokens of history.
P4: first token after reloading the KV from disk vs re-prefill, at the largest history.
Usage: python benchmarks/bench_engine.py --model DIR [--out benchmarks/results/engine.json] [--quick]
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
import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402


def raw_decode_tps(model, prompt, n):
    cache = make_prompt_cache(model)
    t_first = None
    count = 0
    for token, _ in generate_step(mx.array(prompt), model, max_tokens=n, prompt_cache=cache):
        count += 1
        if t_first is None:
            t_first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - t_first)


def engine_decode_tps(engine, prompt, n):
    r = engine.generate(prompt, SamplingParams(max_tokens=n, stop_token_ids=()), session=engine.new_session())
    return r.decode_tps


def bench_p1(engine, prompt, n, reps):
    raw, eng = [], []
    raw_decode_tps(engine.model, prompt, n)  # warm-up of both paths: first-use costs, clocks
    engine_decode_tps(engine, prompt, n)
    for _ in range(reps):
        raw.append(raw_decode_tps(engine.model, prompt, n))
        eng.append(engine_decode_tps(engine, prompt, n))
    return {"tokens": n, "reps": reps, "raw_tps": raw, "engine_tps": eng,
            "raw_median": statistics.median(raw), "engine_median": statistics.median(eng),
            "ratio": statistics.median(eng) / statistics.median(raw),
            # each engine run over the raw run just before it: robust to the machine's drift between runs
            "pair_ratio_median": statistics.median(e / r for e, r in zip(eng, raw))}


def ttft(engine, ids, session):
    r = engine.generate(ids, SamplingParams(max_tokens=1, stop_token_ids=()), session=session)
    return r.ttft_s, r


def bench_p3_p4(engine, lengths, reps, turn_tokens=24):
    rng = __import__("numpy").random.default_rng(0)
    vocab = min(engine.loaded.vocab_size, len(engine.tokenizer._tokenizer)) - 300
    out, p4 = {}, {}
    for length in lengths:
        full, inc, load_t = [], [], []
        for rep in range(reps):
            history = rng.integers(0, vocab, size=length).tolist()
            turn = rng.integers(0, vocab, size=turn_tokens).tolist()
            session = engine.new_session()
            t_full, _ = ttft(engine, history + turn, session)  # baseline: everything prefilled
            full.append(t_full)
            nxt = session.ids + rng.integers(0, vocab, size=turn_tokens).tolist()
            with tempfile.TemporaryDirectory() as tmp:
                path = engine.save_session(session, Path(tmp) / "kv")
                t0 = time.perf_counter()
                loaded = engine.load_session(path)
                mx.eval([c.state for c in loaded.cache])
                t_load = time.perf_counter() - t0
                t_after_load, r = ttft(engine, nxt, loaded)
                assert r.cached_tokens == len(session.ids)
                load_t.append(t_load + t_after_load)
            t_inc, r = ttft(engine, nxt, session)
            assert r.cached_tokens == len(session.ids) - 1 or r.prefill_tokens <= turn_tokens + 1
            inc.append(t_inc)
        out[str(length)] = {"full_reprefill_s": full, "persistent_s": inc,
                            "ratio": statistics.median(full) / statistics.median(inc)}
        p4[str(length)] = {"reload_then_first_token_s": load_t, "full_reprefill_s": full,
                           "ratio": statistics.median(full) / statistics.median(load_t)}
        print(f"history {length}: full {statistics.median(full):.2f}s, persistent {statistics.median(inc):.3f}s, "
              f"reload {statistics.median(load_t):.3f}s", flush=True)
    return out, p4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="benchmarks/results/engine.json")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--lengths", default="1024,2048,4096")
    ap.add_argument("--skip-p3", action="store_true", help="P1 only (e.g. the GPU run)")
    ap.add_argument("--keep-p3", action="store_true",
                    help="with --skip-p3: carry P3/P4 over from the existing --out file (same model), marked as such")
    a = ap.parse_args()
    engine = Engine(load(a.model))
    prompt = engine.encode_chat([{"role": "user", "content": "Benchmark prompt: say something long."}])
    res = {"machine": machine_info(), "model": a.model, "model_config": {k: engine.loaded.config.get(k) for k in (
        "hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")}}
    res["p1"] = bench_p1(engine, prompt, a.decode_tokens, a.reps)
    print(f"P1 engine/raw decode = {res['p1']['ratio']:.3f}, median of paired runs {res['p1']['pair_ratio_median']:.3f} "
          f"({res['p1']['engine_median']:.2f} vs {res['p1']['raw_median']:.2f} tok/s)", flush=True)
    res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not a.skip_p3:
        res["p3"], res["p4"] = bench_p3_p4(engine, [int(x) for x in a.lengths.split(",")], max(1, a.reps // 2))
        res["p3_date"] = res["date"]
    elif a.keep_p3 and Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        if old.get("model") == a.model and "p3" in old:
            res.update(p3=old["p3"], p4=old["p4"], p3_date=old.get("p3_date", "an earlier run"))
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
