"""P4: bringing a saved session back (reload + first token) against a full re-prefill, side by side in one run.

For each history length: a saved session of that many ids (built through the engine, so this process has
measured its prefill rate, as a chat that built its history would have); then, interleaved per rep:
  - full re-prefill: history + a 24-token turn through a fresh session (a true prefill: no prefix-cache hit);
  - reload + first token, three ways: `Engine.load_session(how=...)` with "file" (read the KV), "prefill"
    (recompute it from the saved ids) and "auto" (the runtime's choice), then the 24-token turn on top;
and the file path's parts and alternatives once: reading the bytes, `mx.load` of every tensor, numpy's read
plus `mx.array` and a first device op, and 8-bit KV (mx.quantize, group 64: file size, load + dequantize time,
and whether 16 greedy tokens after it equal those after the exact KV). Writes JSON (medians and raw runs).
With --cold, each measurement runs in a fresh process instead (a restarted chat: nothing measured, no kernel built
yet, so `auto` goes by the rate recorded in the file): re-prefill, file and auto, each + the turn, per length.
Usage: python benchmarks/bench_reload.py --model DIR [--lengths 1024,4096,16384] [--reps 3] [--cold] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)
import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime import prefill_meter  # noqa: E402
from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.kv_cache import Session  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.prefill import bucketed  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402

ONE = SamplingParams(max_tokens=1, stop_token_ids=())
SIXTEEN = SamplingParams(max_tokens=16, stop_token_ids=())


def clock(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def file_parts(path: Path) -> dict:
    """The file path's pieces, each timed once: bytes off the disk (or page cache), mx.load of every tensor,
    and numpy's read + mx.array + one device op touching every array (the unified-memory route)."""
    out = {"read_bytes_s": clock(path.read_bytes)[0]}
    out["mx_load_s"] = clock(lambda: mx.eval(list(mx.load(str(path)).values())))[0]

    def via_numpy():
        raw = np.fromfile(path, dtype=np.uint8)
        head = int(raw[:8].view(np.uint64)[0])
        header = json.loads(bytes(raw[8:8 + head]))
        base = 8 + head
        arrays = []
        for name, info in header.items():
            if name == "__metadata__" or info["dtype"] not in ("BF16", "F16", "F32"):
                continue
            lo, hi = info["data_offsets"]
            dt = {"BF16": (np.uint16, mx.bfloat16), "F16": (np.float16, mx.float16), "F32": (np.float32, mx.float32)}
            npt, mxt = dt[info["dtype"]]
            a = mx.array(raw[base + lo: base + hi].view(npt).reshape(info["shape"]))
            arrays.append(a.view(mxt) if npt is np.uint16 else a)
        mx.eval([mx.sum(a) for a in arrays])  # a device op over every array: pays any migration to the device
    out["numpy_read_mx_array_s"] = clock(via_numpy)[0]
    return out


def quantized(engine: Engine, session: Session, turn: list[int], tmp: Path) -> dict:
    """8-bit KV: size, save, load + dequantize into a session, and greedy equality with the exact KV."""
    states = [(c.keys[..., :c.offset, :], c.values[..., :c.offset, :]) for c in session.cache]
    q = {}
    for i, (k, v) in enumerate(states):
        for tag, a in (("k", k), ("v", v)):
            w, s, b = mx.quantize(a, group_size=64, bits=8)
            q[f"{i}.{tag}.w"], q[f"{i}.{tag}.s"], q[f"{i}.{tag}.b"] = w, s, b
    mx.eval(list(q.values()))
    path = tmp / "kv8.safetensors"
    mx.save_safetensors(str(path), q)

    def reload():
        got = mx.load(str(path))
        cache = engine.new_session().cache  # right layer types, then filled with the dequantized KV
        for i, c in enumerate(cache):
            keys, values = (mx.dequantize(got[f"{i}.{t}.w"], got[f"{i}.{t}.s"], got[f"{i}.{t}.b"], group_size=64,
                                          bits=8).astype(states[i][0].dtype) for t in ("k", "v"))
            c.keys, c.values, c.offset = keys, values, keys.shape[2]
        mx.eval([c.state for c in cache])
        return Session(cache=bucketed(cache), ids=list(session.ids))
    t, s8 = clock(reload)
    exact = engine.load_session(tmp / "kv.safetensors", how="file")
    a = engine.generate(session.ids + turn, SIXTEEN, session=s8).output_ids
    b = engine.generate(session.ids + turn, SIXTEEN, session=exact).output_ids
    return {"file_bytes": path.stat().st_size, "load_dequantize_s": t, "greedy16_equal": a == b,
            "greedy16_same_prefix": next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))}


def bench_length(engine: Engine, n: int, reps: int, turn_len: int, rng, vocab: int) -> dict:
    ids = lambda k: rng.integers(0, vocab, size=k).tolist()  # noqa: E731
    session = engine.new_session()
    engine.generate(ids(n), ONE, session=session)
    r: dict = {"history": len(session.ids), "full_reprefill_s": [], "file_s": [], "prefill_s": [], "auto_s": [],
               "auto_how": [], "auto_reason": ""}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = engine.save_session(session, tmp / "kv")
        r["kv_file_bytes"] = path.stat().st_size
        for _ in range(reps):
            hist, turn = ids(len(session.ids)), ids(turn_len)
            r["full_reprefill_s"].append(engine.generate(hist + turn, ONE, session=engine.new_session()).ttft_s)
            for how in ("file", "prefill", "auto"):
                turn = ids(turn_len)

                def reload_and_token():
                    s = engine.load_session(path, how=how)
                    g = engine.generate(s.ids + turn, ONE, session=s)
                    assert g.cached_tokens == len(session.ids), (g.cached_tokens, len(session.ids))
                    return s
                t, s = clock(reload_and_token)
                r[f"{how}_s"].append(t)
                if how == "auto":
                    r["auto_how"].append(s.reload.how)
                    r["auto_reason"] = s.reload.reason
        r["file_parts"] = file_parts(path)
        r["int8"] = quantized(engine, session, ids(turn_len), tmp)
    r["prefill_rate_tok_s"] = prefill_meter.rate(engine.model)
    return r


def cold_one(a) -> int:
    """One measurement in this fresh process: `--one` way (reprefill, file, auto) on `--file`, + the turn."""
    engine = Engine(load(a.model))
    vocab = min(engine.loaded.vocab_size, len(engine.tokenizer._tokenizer)) - 300
    rng = np.random.default_rng(1)
    turn = rng.integers(0, vocab, size=a.turn).tolist()
    t0 = time.perf_counter()
    if a.one == "reprefill":
        hist = rng.integers(0, vocab, size=a.history).tolist()
        engine.generate(hist + turn, ONE, session=engine.new_session())
        how = "reprefill"
    else:
        s = engine.load_session(a.file, how=a.one)
        engine.generate(s.ids + turn, ONE, session=s)
        how = s.reload.how
    print(json.dumps({"s": time.perf_counter() - t0, "how": how}))
    return 0


def cold(a, engine: Engine, res: dict, rng, vocab: int) -> None:
    """Per length: save a session here, then time each way in fresh processes (--reps each, interleaved)."""
    res["cold"] = {}
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in a.lengths.split(",")):
            session = engine.new_session()
            engine.generate(rng.integers(0, vocab, size=n).tolist(), ONE, session=session)
            path = engine.save_session(session, Path(d) / f"kv{n}")  # records this process's prefill rate
            r: dict = {"history": len(session.ids), "reprefill_s": [], "file_s": [], "auto_s": [], "auto_how": []}
            for _ in range(a.reps):
                for way in ("reprefill", "file", "auto"):
                    out = subprocess.run([sys.executable, __file__, "--model", a.model, "--one", way, "--file",
                                          str(path), "--history", str(len(session.ids)), "--turn", str(a.turn)],
                                         capture_output=True, text=True, timeout=600, check=True)
                    got = json.loads(out.stdout.strip().splitlines()[-1])
                    r[f"{way}_s"].append(got["s"])
                    if way == "auto":
                        r["auto_how"].append(got["how"])
            res["cold"][str(n)] = r
            print(f"cold, history {n}: " + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in r.items()
                                                      if k.endswith("_s")) + f", auto {r['auto_how']}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lengths", default="1024,4096,16384")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--turn", type=int, default=24)
    ap.add_argument("--cold", action="store_true", help="each measurement in a fresh process")
    ap.add_argument("--one", choices=("reprefill", "file", "auto"), help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--history", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/reload.json")
    a = ap.parse_args()
    if a.one:
        return cold_one(a)
    engine = Engine(load(a.model))
    cfg = engine.loaded.config
    vocab = min(engine.loaded.vocab_size, len(engine.tokenizer._tokenizer)) - 300
    rng = np.random.default_rng(0)
    engine.generate(rng.integers(0, vocab, size=64).tolist(), ONE)  # warm-up
    res = {"machine": machine_info(), "model": a.model, "turn_tokens": a.turn, "reps": a.reps, "model_config": {
        k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")}, "lengths": {}}
    for n in (int(x) for x in a.lengths.split(",")) if not a.cold else ():
        r = bench_length(engine, n, a.reps, a.turn, rng, vocab)
        res["lengths"][str(n)] = r
        med = {k: round(statistics.median(v) * 1e3, 1) for k, v in r.items()
               if isinstance(v, list) and v and isinstance(v[0], float)}
        print(f"history {n}: ms {med} auto={r['auto_how']} ({r['auto_reason']}); parts "
              f"{ {k: round(v * 1e3, 1) for k, v in r['file_parts'].items()} }; int8 {r['int8']}", flush=True)
    if a.cold:
        cold(a, engine, res, rng, vocab)
    res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
