"""P12 and mixed-adapter batching (issue 9), measured side by side in one run; writes JSON with the machine.

(i)   decode tok/s for R rows spread over K adapters of one base: one mixed batch (runtime/multi_adapter.py, one
      base forward per step) vs each adapter's rows as its own batch in turn; with a base-only batch and
      mlx-lm's own LoRALinear batch as references. Greedy, runs interleaved, median.
(ii)  memory (mx.get_active_memory deltas): base alone, base + two adapters attached, vs base + adapter bytes
      (+10% allowed); also runtime/models.py's specialists (base arrays shared) and two separate models.
(iii) TTFT of a request for the base, for specialist A, then for specialist B right after A (the switch) and
      right after B (no switch), on the same resident base; mlx-lm's own one-adapter model of B; and, for
      contrast, what a switch costs when it reloads the model (what mlx-lm's server does).
Usage: python benchmarks/bench_adapters.py [--model DIR | --preset small] [--dtype float32] [--rows 8]
       [--adapters 2,4] [--tokens 32] [--reps 5] [--out benchmarks/results/adapters.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tinygpt  # noqa: F401  (OpenBLAS before mlx)
import mlx.core as mx
from mlx_lm.models.cache import BatchKVCache, make_prompt_cache
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

from tinygpt.runtime.models import attach_adapter, load_base  # noqa: E402
from tinygpt.runtime.multi_adapter import MultiAdapter  # noqa: E402
from tinygpt.runtime.presets import InitSpec, init_adapter, init_model  # noqa: E402


def decode(model, prompts, tokens, rows=None, multi=None):
    """Prefill a batch, then greedy-decode `tokens` steps; returns decode seconds (prefill excluded)."""
    cache = [BatchKVCache([0] * len(prompts)) for _ in model.layers]

    def call(x):
        if multi is None:
            return model(x, cache=cache)[:, -1]
        with multi.rows(rows):
            return model(x, cache=cache)[:, -1]

    nxt = mx.argmax(call(mx.array(prompts)), axis=-1)
    mx.eval(nxt)
    t0 = time.perf_counter()
    for _ in range(tokens):
        nxt = mx.argmax(call(nxt[:, None]), axis=-1)
        mx.eval(nxt)
    return time.perf_counter() - t0


def bench_throughput(base, multi, lora_model, prompts, names, ks, tokens, reps):
    n = len(prompts)
    cases = {"base only (no adapter)": lambda: decode(base, prompts, tokens),
             "mlx-lm LoRALinear, one adapter": lambda: decode(lora_model, prompts, tokens),
             "one adapter via multi_adapter": lambda: decode(base, prompts, tokens, [names[0]] * n, multi)}
    for k in ks:
        rows = [names[i % k] for i in range(n)]
        groups = [[i for i in range(n) if rows[i] == a] for a in names[:k]]
        cases[f"{k} adapters, one mixed batch"] = lambda rows=rows: decode(base, prompts, tokens, rows, multi)
        cases[f"{k} adapters, per-adapter batches in turn"] = lambda groups=groups: sum(
            decode(base, [prompts[i] for i in g], tokens, [names[j]] * len(g), multi) for j, g in enumerate(groups))
    for run in cases.values():
        run()  # warm-up
    times = {name: [] for name in cases}
    for _ in range(reps):
        for name, run in cases.items():  # interleaved: every case sees the same machine load
            times[name].append(run())
    out = {name: {"tps": [n * tokens / t for t in ts], "median_tps": statistics.median(n * tokens / t for t in ts)}
           for name, ts in times.items()}
    for k in ks:
        out[f"{k} adapters, speedup"] = (out[f"{k} adapters, one mixed batch"]["median_tps"]
                                         / out[f"{k} adapters, per-adapter batches in turn"]["median_tps"])
    return out


def _resident(fn):
    """Active-memory delta (bytes) of what `fn()` returns, kept alive while measured."""
    gc.collect()  # a model held in a reference cycle (MultiAdapter <-> RoutedModel) is freed now, not mid-measure
    mx.clear_cache()
    before = mx.get_active_memory()
    kept = fn()
    mx.eval(kept if isinstance(kept, list) else [kept.parameters()])
    return mx.get_active_memory() - before, kept


def bench_memory(model_dir, adapter_dirs):
    base_bytes, base = _resident(lambda: load_model(model_dir)[0])
    adapter_bytes = sum(sum(w.nbytes for w in mx.load(str(Path(d) / "adapters.safetensors")).values())
                        for d in adapter_dirs)
    mx.clear_cache()
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    multi = MultiAdapter.attach(base, {f"s{i}": d for i, d in enumerate(adapter_dirs)})
    attach_peak = mx.get_peak_memory() - before  # transient: file tensors and the old stacks while restacking
    mx.clear_cache()
    attached = mx.get_active_memory() - before
    served = base_bytes + attached
    del multi, base
    gc.collect()

    def separate():
        models = []
        for d in adapter_dirs:
            m = load_model(model_dir)[0]
            load_adapters(m, str(d))
            models.append(m)
        mx.eval([m.parameters() for m in models])
        return models
    separate_bytes, kept = _resident(separate)
    del kept

    def provider():  # runtime/models.py's specialists: one module tree each, the base's arrays shared
        loaded = load_base(model_dir)
        return [loaded.model] + [attach_adapter(loaded, d).model for d in adapter_dirs]
    provider_bytes, kept = _resident(provider)
    del kept
    limit = 1.1 * (base_bytes + adapter_bytes)
    return {"adapters": len(adapter_dirs), "base_bytes": base_bytes, "adapter_file_tensor_bytes": adapter_bytes,
            "attach_bytes": attached, "attach_peak_bytes": attach_peak, "served_bytes": served, "limit_bytes": limit, "passed": served <= limit,
            "ratio_to_base_plus_adapters": served / (base_bytes + adapter_bytes),
            "separate_models_bytes": separate_bytes, "provider_specialists_bytes": provider_bytes,
            "provider_passed": provider_bytes <= limit}


def first_token_s(model, prompt, rows=None, multi=None):
    cache = make_prompt_cache(model)
    t0 = time.perf_counter()
    if multi is None:
        tok = mx.argmax(model(mx.array([prompt]), cache=cache)[:, -1], axis=-1)
    else:
        with multi.rows(rows):
            tok = mx.argmax(model(mx.array([prompt]), cache=cache)[:, -1], axis=-1)
    mx.eval(tok)
    return time.perf_counter() - t0


def bench_switch(base, multi, model_dir, adapter_b, prompt, reps):
    """TTFT on one resident base: base, A right after base, B right after A (a switch), B right after B (none);
    mlx-lm's own model with B loaded alone says what B's adapter costs by itself."""
    lora_b = load_model(model_dir)[0]
    load_adapters(lora_b, str(adapter_b))
    seq = [("base", base, None), ("A right after base", base, ["s0"]), ("B right after A", base, ["s1"]),
           ("B right after B", base, ["s1"]), ("mlx-lm LoRALinear model of B", lora_b, None)]
    times = {name: [] for name, _, _ in seq}
    for rep in range(reps + 2):  # the first two rounds warm up
        for name, model, rows in seq:
            t = first_token_s(model, prompt, rows, multi if rows else None)
            if rep >= 2:
                times[name].append(t)
    reload = []
    for _ in range(max(2, reps // 2)):  # mlx-lm server's way: a new adapter means loading the model again
        t0 = time.perf_counter()
        m = load_model(model_dir)[0]
        load_adapters(m, str(adapter_b))
        mx.eval(m.parameters())
        reload.append(time.perf_counter() - t0 + first_token_s(m, prompt))
        del m
    med = {name: statistics.median(ts) for name, ts in times.items()}
    added = med["B right after A"] - med["base"]
    return {"prompt_tokens": len(prompt), "ttft_s": times, "median_s": med, "switch_added_ms": 1000 * added,
            "switch_vs_no_switch_ms": 1000 * (med["B right after A"] - med["B right after B"]),
            "passed": added <= 0.005, "reload_then_first_token_s": reload}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="an existing model directory (default: a random-init --preset in a temp dir)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--adapters", default="2,4", help="adapter counts K to spread the rows over")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    ap.add_argument("--tokens", type=int, default=32, help="decode steps per run")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "adapters.json"))
    args = ap.parse_args()
    ks = [int(k) for k in args.adapters.split(",")]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else init_model(
            Path(tmp) / "base", InitSpec(preset=args.preset, dtype=args.dtype))
        adapter_dirs = [init_adapter(model_dir, Path(tmp) / f"a{i}", rank=args.rank, seed=i + 1)
                        for i in range(max(ks + [2]))]
        config = json.loads((model_dir / "config.json").read_text())
        print(f"model {model_dir} ({args.preset if not args.model else 'given'}), {len(adapter_dirs)} adapters "
              f"rank {args.rank}; rows {args.rows}, prompt {args.prompt}, decode {args.tokens}, reps {args.reps}",
              file=sys.stderr)
        memory = bench_memory(model_dir, adapter_dirs[:2])
        print(f"memory: {json.dumps(memory)}", file=sys.stderr)
        base = load_model(model_dir)[0]
        lora_model = load_model(model_dir)[0]
        load_adapters(lora_model, str(adapter_dirs[0]))
        names = [f"s{i}" for i in range(len(adapter_dirs))]
        multi = MultiAdapter.attach(base, dict(zip(names, adapter_dirs)))
        vocab = int(config["vocab_size"])
        prompts = [[(7 * r + 13 * i) % (vocab - 1) + 1 for i in range(args.prompt)] for r in range(args.rows)]
        switch = bench_switch(base, multi, model_dir, adapter_dirs[1], prompts[0] * 2, args.reps * 2)
        print(f"switch: {switch['median_s']} added {switch['switch_added_ms']:.2f} ms", file=sys.stderr)
        throughput = bench_throughput(base, multi, lora_model, prompts, names, ks, args.tokens, args.reps)
        for name, v in throughput.items():
            print(f"{name}: {v if isinstance(v, float) else round(v['median_tps'], 1)}", file=sys.stderr)
    result = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model_config": {k: config.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size",
                                                          "torch_dtype")},
              "preset": None if args.model else args.preset, "rank": args.rank, "rows": args.rows,
              "prompt_tokens": args.prompt, "decode_tokens": args.tokens, "reps": args.reps,
              "throughput": throughput, "memory": memory, "switch": switch,
              "wall_s": round(time.time() - started, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['wall_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
