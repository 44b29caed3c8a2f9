"""Grammar benchmark P2 (issue 3): per-token cost of constrained decoding and grammar compile time, both
backends side by side in one run; writes JSON.

Compile: the 18 GorillaFileSystem tools (BFCL's multi-turn function docs, converted to OpenAI shape),
cold compiles (cache cleared) per tool_choice, median over reps; the tokenizer's one-off preparation is
reported apart. Decode: the same prompt and sampler (temperature 1, fixed seed) unconstrained and under each
grammar, EOS ignored so every run decodes exactly --tokens tokens; runs interleaved; per-token decode time
medians. Masks: time of each mask computation during those runs.
Usage: python benchmarks/bench_grammar.py [--model DIR] [--out benchmarks/results/grammar.json] [--quick]
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import random
import statistics
import sys
import time
from pathlib import Path

import tinygpt  # noqa: F401  (fast BLAS before mlx)
import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime import grammar as G  # noqa: E402
from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.presets import InitSpec, init_model  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402

DEFAULT_MODEL = Path("/tmp/tinygpt-bench/qwen3-0.6b-qwen")
BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array"}


def gorilla_tools() -> list[dict]:
    """BFCL's GorillaFileSystem function docs as OpenAI tools (BFCL type names mapped to JSON Schema)."""
    try:
        doc = importlib.resources.files("bfcl_eval") / "data/multi_turn_func_doc/gorilla_file_system.json"
        lines = doc.read_text().splitlines()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise SystemExit(f"bfcl-eval is not installed ({exc}); pip install bfcl-eval==2026.3.23 --no-deps") from exc
    return [{"type": "function", "function": {"name": f["name"], "description": f["description"],
                                              "parameters": _schema(f["parameters"])}}
            for f in map(json.loads, filter(None, lines))]


def _schema(s: dict) -> dict:
    out = {k: v for k, v in s.items() if k not in ("default",)}
    if out.get("type") in BFCL_TYPES:
        out["type"] = BFCL_TYPES[out["type"]]
    if "properties" in out:
        out["properties"] = {k: _schema(v) for k, v in out["properties"].items()}
        out.setdefault("required", [])
        out["additionalProperties"] = False
    if isinstance(out.get("items"), dict):
        out["items"] = _schema(out["items"])
    return out


def bench_compile(tok, tools, backend: str, modes: list[str], reps: int) -> tuple[dict, dict]:
    """Cold compile times per mode, and the compiled grammars (for the decode runs)."""
    t0 = time.perf_counter()
    G._vocab(backend, tok)  # the tokenizer's one-off preparation, cached per tokenizer
    res = {"tokenizer_prepare_ms": (time.perf_counter() - t0) * 1e3, "modes": {}}
    grammars = {}
    for mode in modes:
        times = []
        for _ in range(reps):
            G.clear_cache()
            t = time.perf_counter()
            grammars[f"{backend}-{mode}"] = G.compile_tools(tok, tools, tool_choice=mode, backend=backend)
            times.append((time.perf_counter() - t) * 1e3)
        res["modes"][mode] = {"ms": times, "median_ms": statistics.median(times)}
        print(f"compile {backend:10s} {mode:8s} median {statistics.median(times):9.2f} ms", flush=True)
    return res, grammars


class TimedProcessor:
    """A grammar processor whose mask computations are timed (and the first masks kept)."""

    def __init__(self, proc, keep: list):
        self.proc, self.fill_s = proc, []
        inner = proc._matcher.fill

        def fill(mask):
            t = time.perf_counter()
            inner(mask)
            self.fill_s.append(time.perf_counter() - t)
            if len(keep) < 64:
                keep.append(mask.copy())
        proc._matcher.fill = fill

    def __call__(self, tokens, logits):
        return self.proc(tokens, logits)


def mask_apply_us(masks: list, vocab: int, n_tokens: int) -> float:
    """Median time to turn a fresh bitmask (masks seen while decoding) into a [vocab] mask and mask the
    logits with it: the device work a processor adds per token when its mask changes."""
    proc_like = G.GrammarProcessor.__new__(G.GrammarProcessor)
    proc_like.grammar = type("grammar", (), {"n_tokens": n_tokens})
    logits = mx.random.normal((1, vocab))
    mx.eval(logits)
    times = []
    for mask in masks:
        proc_like._last = None
        t = time.perf_counter()
        mx.eval(proc_like._apply(logits, mask))
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def bench_decode(engine, prompt, grammars: dict, tokens: int, reps: int) -> dict:
    params = SamplingParams(temperature=1.0, max_tokens=tokens, seed=1, stop_token_ids=())
    names = ["unconstrained", *grammars]
    per_token = {name: [] for name in names}
    masks = {name: [] for name in grammars}
    seen: list = []
    for name in names * 2:  # warm-up; the prompt then comes from the prefix cache in every run
        engine.generate(prompt, params, logits_processors=[grammars[name].processor()] if name in grammars else None)
    order = random.Random(0)
    for rep in range(reps):
        for name in order.sample(names, len(names)):  # interleaved, in a fresh order each rep
            timed = TimedProcessor(grammars[name].processor(), seen) if name in grammars else None
            r = engine.generate(prompt, params, logits_processors=[timed] if timed else None)
            assert len(r.output_ids) == tokens
            per_token[name].append(r.decode_s / (tokens - 1) * 1e3)
            if timed:
                masks[name] += [s * 1e6 for s in timed.fill_s]
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in per_token.items()) + " ms/token",
              flush=True)
    base = statistics.median(per_token["unconstrained"])
    apply_ms = mask_apply_us(seen, engine.loaded.vocab_size, next(iter(grammars.values())).n_tokens) / 1e3
    out = {"tokens": tokens, "reps": reps, "ms_per_token": per_token,
           "median_ms_per_token": {k: statistics.median(v) for k, v in per_token.items()},
           # per rep, each grammar's time over the unconstrained run of that rep (cancels the machine's drift)
           "overhead": {k: statistics.median(c / u - 1 for c, u in zip(v, per_token["unconstrained"]))
                        for k, v in per_token.items() if k != "unconstrained"},
           "overhead_of_medians": {k: statistics.median(v) / base - 1 for k, v in per_token.items()
                                   if k != "unconstrained"},
           "mask_us": {k: {"median": statistics.median(v), "p90": sorted(v)[int(0.9 * len(v))], "max": max(v)}
                       for k, v in masks.items() if v},
           "mask_apply_ms": apply_ms}
    # what a processor adds per token, from its parts: computing the mask (overlapping the forward pass
    # here) plus unpacking a fresh mask and masking the logits
    out["direct_overhead"] = {k: (v["median"] / 1e3 + apply_ms) / base for k, v in out["mask_us"].items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="created (qwen3-0.6b shape, Qwen vocab) if absent")
    ap.add_argument("--out", default="benchmarks/results/grammar.json")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--compile-reps", type=int, default=20)
    ap.add_argument("--outlines-modes", default="required,auto", help="outlines compiles take seconds each")
    ap.add_argument("--outlines-decode", default="required", help="outlines grammars also timed in decoding")
    ap.add_argument("--quick", action="store_true", help="fewer tokens and reps (smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.tokens, a.reps, a.compile_reps = 8, 2, 3
    model = Path(a.model)
    if not (model / "config.json").exists():
        print(f"creating {model} (qwen3-0.6b shape, Qwen vocabulary; about a minute)", flush=True)
        init_model(model, InitSpec(preset="qwen3-0.6b", vocab="qwen"))
    engine = Engine(load(str(model)))
    tools = gorilla_tools()
    tok = engine.tokenizer
    res = {"machine": machine_info(), "model": str(model), "tools": len(tools),
           "model_config": {k: engine.loaded.config.get(k) for k in ("hidden_size", "num_hidden_layers",
                                                                      "vocab_size", "torch_dtype")}}
    outlines_modes = [m for m in a.outlines_modes.split(",") if m]
    llg, grammars = bench_compile(tok, tools, "llguidance", ["auto", "required", "none"], a.compile_reps)
    out, more = bench_compile(tok, tools, "outlines", outlines_modes, 1)
    res["compile"] = {"llguidance": llg, "outlines": out}
    grammars.pop("llguidance-none")  # no tools to call: same masks as free text
    grammars.update({k: v for k, v in more.items() if k.split("-", 1)[1] in a.outlines_decode.split(",")})
    prompt = engine.encode_chat([{"role": "user", "content": "Copy notes.txt into the backup folder."}],
                                tools=tools)
    res["decode"] = bench_decode(engine, prompt, grammars, a.tokens, a.reps)
    llg = res["compile"]["llguidance"]["modes"]
    res["p2"] = {"compile_ms_llguidance_auto": llg["auto"]["median_ms"],
                 "compile_ok": all(m["median_ms"] <= 10 for m in llg.values()),
                 "overhead": res["decode"]["overhead"],
                 "direct_overhead": res["decode"]["direct_overhead"],
                 "overhead_ok": all(v <= 0.05 for k, v in res["decode"]["overhead"].items()
                                    if k.startswith("llguidance")),
                 "direct_overhead_ok": all(v <= 0.05 for k, v in res["decode"]["direct_overhead"].items()
                                           if k.startswith("llguidance"))}
    print(json.dumps(res["p2"], indent=2))
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
