"""Where warm time-to-first-token goes as a session's history grows (issue 9), measured side by side in one run.

For each history length: a full re-prefill through the engine (a fresh session each time, so no prefix-cache
hit); a persistent-KV turn through the engine (24 new tokens appended to the session); the same 24-token forward
pass straight through mlx-lm's model on a prefilled plain cache (no engine), and through runtime/prefill.py's
shape-bucketed prefill; and the attention alone for 24 queries over the history, fused
(`mx.fast.scaled_dot_product_attention`) vs plain matmuls. Prints a profile of one engine turn at the longest
history. Writes JSON (median of runs). It changes nothing; it only measures. Reloading a saved session is
bench_reload.py's.
Usage: python benchmarks/bench_kv_ttft.py --model DIR [--lengths 1024,4096,16384] [--out FILE]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)
import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.prefill import make_cache, prefill  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402

ONE = SamplingParams(max_tokens=1, stop_token_ids=())


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def raw_prefill(model, cache, ids, step=2048):
    for i in range(0, len(ids), step):
        model(mx.array(ids[i:i + step])[None], cache=cache)
        mx.eval([c.state for c in cache])


def attention_only(cfg, length, q_len, reps, dtype):
    """Fused SDPA vs matmul attention for q_len queries over `length` keys (one layer's shapes)."""
    h, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = mx.random.normal((1, h, q_len, d)).astype(dtype)
    k = mx.random.normal((1, kv, length + q_len, d)).astype(dtype)
    v = mx.random.normal((1, kv, length + q_len, d)).astype(dtype)
    scale = d ** -0.5
    mx.eval(q, k, v)

    def fused():
        mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal" if q_len > 1 else None))

    def plain():
        qq = q.reshape(1, kv, h // kv, q_len, d)
        s = (qq * scale) @ mx.expand_dims(k, 2).swapaxes(-1, -2)
        if q_len > 1:
            pos_q = mx.arange(length, length + q_len)[:, None]
            s = mx.where(pos_q >= mx.arange(length + q_len)[None], s, mx.array(-mx.inf, s.dtype))
        p = mx.softmax(s.astype(mx.float32), axis=-1).astype(dtype)
        mx.eval((p @ mx.expand_dims(v, 2)).reshape(1, h, q_len, d))

    fused(), plain()  # warm-up (kernels are built per shape on first use)
    return {"fused_s": timed(fused, reps), "matmul_s": timed(plain, reps)}


def shape_costs(model, history, turn_ids, reps, bucket=256):
    """A 24-token forward at a cache length never seen before vs the same shapes again, and with the chunk
    padded so that the cache ends on a multiple of `bucket` (pad written, then trimmed: causal attention keeps
    the real tokens' outputs exact)."""
    cache = make_prompt_cache(model)
    raw_prefill(model, cache, history)
    unseen, seen, padded = [], [], []
    for i in range(reps):
        toks = mx.array(turn_ids[i])[None]
        t0 = time.perf_counter()
        mx.eval(model(toks, cache=cache))
        unseen.append(time.perf_counter() - t0)
        for c in cache:
            c.trim(toks.shape[1])
        t0 = time.perf_counter()
        mx.eval(model(toks, cache=cache))
        seen.append(time.perf_counter() - t0)
    for i in range(reps * 3):
        real = turn_ids[i % len(turn_ids)]
        end = cache[0].offset + len(real)
        pad = (-end) % bucket
        toks = mx.array(real + [0] * pad)[None]
        t0 = time.perf_counter()
        logits = model(toks, cache=cache)[:, len(real) - 1]
        mx.eval(logits)
        padded.append(time.perf_counter() - t0)
        for c in cache:
            c.trim(pad)
    return {"unseen_shape_s": unseen, "seen_shape_s": seen, "bucketed_s": padded}


def sdpa_first_use(cfg, base_len, q_len, n, dtype):
    """Each call at a key length never used before: fused SDPA with the "causal" string mask, with an array
    mask, and plain matmuls; then a fixed bucketed key length (array mask hiding the unused tail)."""
    h, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    scale = d ** -0.5
    q = mx.random.normal((1, h, q_len, d)).astype(dtype)
    kbuf = mx.random.normal((1, kv, base_len + 4096, d)).astype(dtype)
    vbuf = mx.random.normal((1, kv, base_len + 4096, d)).astype(dtype)
    mx.eval(q, kbuf, vbuf)
    out: dict[str, list[float]] = {}

    def mask_for(length, total):
        pos_q = mx.arange(length - q_len, length)[:, None]
        return pos_q >= mx.arange(total)[None]  # causal, and hides keys at or past `length`

    def run(name, step, fn):
        times = []
        for i in range(n):
            length = base_len + step * (i + 1)
            t0 = time.perf_counter()
            mx.eval(fn(length))
            times.append(time.perf_counter() - t0)
        out[name] = times

    run("fused_causal_new_len_s", 37, lambda L: mx.fast.scaled_dot_product_attention(
        q, kbuf[:, :, :L], vbuf[:, :, :L], scale=scale, mask="causal"))
    run("fused_array_mask_new_len_s", 41, lambda L: mx.fast.scaled_dot_product_attention(
        q, kbuf[:, :, :L], vbuf[:, :, :L], scale=scale, mask=mask_for(L, L)))
    bucket = base_len + 2048
    run("fused_bucketed_len_s", 43, lambda L: mx.fast.scaled_dot_product_attention(
        q, kbuf[:, :, :bucket], vbuf[:, :, :bucket], scale=scale, mask=mask_for(L, bucket)))

    def plain(L):
        qq = q.reshape(1, kv, h // kv, q_len, d)
        s = (qq * scale) @ mx.expand_dims(kbuf[:, :, :L], 2).swapaxes(-1, -2)
        s = mx.where(mask_for(L, L), s, mx.array(-mx.inf, s.dtype))
        p = mx.softmax(s.astype(mx.float32), axis=-1).astype(dtype)
        return (p @ mx.expand_dims(vbuf[:, :, :L], 2)).reshape(1, h, q_len, d)
    run("matmul_new_len_s", 47, plain)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lengths", default="1024,4096,16384")
    ap.add_argument("--turn", type=int, default=24)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/kv_ttft.json")
    ap.add_argument("--sdpa-only", action="store_true", help="only the attention first-use costs")
    a = ap.parse_args()
    engine = Engine(load(a.model))
    model, cfg = engine.model, engine.loaded.config
    dtype = next(v for _, v in __import__("mlx.utils").utils.tree_flatten(model.parameters())).dtype
    vocab = min(engine.loaded.vocab_size, len(engine.tokenizer._tokenizer)) - 300
    rng = __import__("numpy").random.default_rng(0)
    ids = lambda n: rng.integers(0, vocab, size=n).tolist()  # noqa: E731
    res = {"machine": machine_info(), "model": a.model, "turn_tokens": a.turn, "model_config": {
        k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")}, "lengths": {}}
    if a.sdpa_only:
        res["sdpa_first_use"] = {str(n): sdpa_first_use(cfg, n, a.turn, a.reps, dtype)
                                 for n in (int(x) for x in a.lengths.split(","))}
        print(json.dumps({n: {k: [round(x * 1000, 1) for x in v] for k, v in r.items()}
                          for n, r in res["sdpa_first_use"].items()}, indent=1))
        Path(a.out).write_text(json.dumps(res, indent=2))
        return 0
    engine.generate(ids(64), ONE)  # warm-up
    for length in [int(x) for x in a.lengths.split(",")]:
        r: dict = {}
        history = ids(length)
        r["full_reprefill_s"] = [engine.generate(history + ids(a.turn), ONE, session=engine.new_session()).ttft_s
                                 for _ in range(a.reps)]  # a fresh session: a true prefill, never a prefix-cache hit
        session = engine.new_session()
        engine.generate(history, ONE, session=session)
        warm = []
        for _ in range(a.reps + 1):
            g = engine.generate(session.ids + ids(a.turn), ONE, session=session)
            assert g.prefill_tokens == a.turn
            warm.append(g.ttft_s)
        r["persistent_s"] = warm[1:]  # the first turn after a long prefill also pays the cache's growth
        cache = make_prompt_cache(model)
        raw_prefill(model, cache, history)
        raw = []
        for _ in range(a.reps + 1):
            toks = mx.array(ids(a.turn))[None]
            t0 = time.perf_counter()
            mx.eval(model(toks, cache=cache))
            raw.append(time.perf_counter() - t0)
        r["raw_forward_s"] = raw[1:]
        bcache = make_cache(model)
        prefill(model, bcache, history)
        bucketed_t = []
        for _ in range(a.reps + 1):
            new = ids(a.turn)
            t0 = time.perf_counter()
            prefill(model, bcache, new)
            bucketed_t.append(time.perf_counter() - t0)
        r["bucketed_forward_s"] = bucketed_t[1:]
        del bcache
        r["decode_step_s"] = timed(lambda: mx.eval(model(mx.array(ids(1))[None], cache=cache)), a.reps)
        del cache
        r["shape_costs"] = shape_costs(model, history, [ids(a.turn) for _ in range(a.reps)], a.reps)
        print({k: [round(x * 1000, 1) for x in v] for k, v in r["shape_costs"].items()}, flush=True)
        r["attention_q_turn"] = attention_only(cfg, length, a.turn, a.reps, dtype)
        r["attention_q1"] = attention_only(cfg, length, 1, a.reps, dtype)
        res["lengths"][str(length)] = r
        med = {k: statistics.median(v) for k, v in r.items() if isinstance(v, list)}
        print(f"history {length}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in med.items()) +
              f" | attention {a.turn}q fused {statistics.median(r['attention_q_turn']['fused_s']) * 1000:.2f} ms "
              f"matmul {statistics.median(r['attention_q_turn']['matmul_s']) * 1000:.2f} ms; 1q fused "
              f"{statistics.median(r['attention_q1']['fused_s']) * 1000:.2f} ms", flush=True)
        if length == max(int(x) for x in a.lengths.split(",")):
            prof = cProfile.Profile()
            prof.enable()
            engine.generate(session.ids + ids(a.turn), ONE, session=session)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
            res["profile_longest"] = buf.getvalue()
            print(buf.getvalue())
    res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
