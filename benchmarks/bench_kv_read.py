"""What bounds reading a saved KV file into the device (P4's file path): each route timed on one file, interleaved.

Builds a session of --tokens ids through the engine and saves it, then times, --reps times each:
  read_fresh      the file's bytes into new host memory (Path.read_bytes: every page faulted in afresh);
  read_reused     the same bytes into one host buffer faulted in beforehand (page cache -> memory copy only);
  arrays_reused   mx.array over each tensor of that buffer plus a device op on each (host -> device);
  mx_load         mx.load, as kv_cache.load_session reads (MLX mallocs a host buffer per tensor, then copies);
  mx_load_cpu     mx.load on the CPU stream, then a device op on each array (unified memory -> device);
and last, with glibc told to keep freed memory for reuse (mallopt: no mmap, no trim), mx_load again, to see
whether faulting fresh host pages is what costs. Writes JSON with the GiB/s of each.
Usage: python benchmarks/bench_kv_read.py --model DIR [--tokens 16384] [--reps 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)
import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402

PIECE = 64 << 20
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters


def tensors(buf: np.ndarray) -> list[tuple[np.ndarray, object]]:
    """(bytes view, MLX dtype) of each float tensor in a safetensors file held in `buf`."""
    head = int(buf[:8].view(np.uint64)[0])
    header = json.loads(bytes(buf[8:8 + head]))
    kinds = {"BF16": (np.uint16, mx.bfloat16), "F16": (np.float16, mx.float16), "F32": (np.float32, mx.float32)}
    out = []
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] in kinds:
            lo, hi = info["data_offsets"]
            npt, mxt = kinds[info["dtype"]]
            out.append((buf[8 + head + lo: 8 + head + hi].view(npt).reshape(info["shape"]), mxt))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/kv_read.json")
    a = ap.parse_args()
    engine = Engine(load(a.model))
    rng = np.random.default_rng(0)
    s = engine.new_session()
    vocab = min(engine.loaded.vocab_size, len(engine.tokenizer._tokenizer)) - 300
    engine.generate(rng.integers(0, vocab, size=a.tokens).tolist(), SamplingParams(max_tokens=1, stop_token_ids=()),
                    session=s)
    with tempfile.TemporaryDirectory() as d:
        path = engine.save_session(s, Path(d) / "kv")
        size = path.stat().st_size
        buf = np.zeros(size, np.uint8)  # faulted in once, here

        def read_reused():
            with open(path, "rb", buffering=0) as f:
                for i in range(0, size, PIECE):
                    f.readinto(memoryview(buf)[i: i + PIECE])

        def arrays_reused():
            mx.eval([mx.sum(mx.array(t).view(k) if t.dtype == np.uint16 else mx.array(t)) for t, k in tensors(buf)])

        def mx_load_cpu():
            arrays = mx.load(str(path), stream=mx.cpu)
            mx.eval(list(arrays.values()))
            mx.eval([mx.sum(x) for x in arrays.values()])

        routes = {"read_fresh": path.read_bytes, "read_reused": read_reused, "arrays_reused": arrays_reused,
                  "mx_load": lambda: mx.eval(list(mx.load(str(path)).values())), "mx_load_cpu": mx_load_cpu}
        runs: dict[str, list[float]] = {k: [] for k in routes}
        for _ in range(a.reps):
            for k, fn in routes.items():
                t0 = time.perf_counter()
                fn()
                runs[k].append(time.perf_counter() - t0)
        libc = ctypes.CDLL("libc.so.6")
        kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
        runs["mx_load_malloc_kept"] = []
        for _ in range(a.reps + 1):  # the first run faults the reused heap in
            t0 = time.perf_counter()
            routes["mx_load"]()
            runs["mx_load_malloc_kept"].append(time.perf_counter() - t0)
        runs["mx_load_malloc_kept"] = runs["mx_load_malloc_kept"][1:]
    med = {k: statistics.median(v) for k, v in runs.items()}
    res = {"machine": machine_info(), "model": a.model, "tokens": a.tokens, "file_bytes": size, "reps": a.reps,
           "mallopt_applied": kept, "runs_s": runs, "median_s": med,
           "gib_per_s": {k: size / v / 2**30 for k, v in med.items()},
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({k: [round(v * 1e3, 1), round(res["gib_per_s"][k], 2)] for k, v in med.items()}))
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
