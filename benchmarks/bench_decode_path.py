"""Where P1's gap goes: decode tok/s of each layer between raw mlx-lm `generate_step` and the engine, one run.

Variants, run interleaved on the same model and prompt, greedy, tok/s from the first to the last token:
  raw          `generate_step` on mlx-lm's plain prompt cache (bench_engine.py's baseline);
  session      the same on a session's shape-bucketed cache, the prompt prefilled by runtime/prefill.py;
  gather       that, with solo.py's sampler (the sampled token's logprob gathered on the device);
  solo         runtime/solo.py's `SoloRun.advance` loop, no scheduler;
  engine       `Engine.generate` (scheduler, lane, events: what P1 measures).
Then a cProfile of one engine call (top functions by own time). Writes JSON.
Usage: python benchmarks/bench_decode_path.py --model DIR [--tokens 128] [--reps 7] [--out FILE]
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
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import greedy_sampler

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, write_result  # noqa: E402

from tinygpt.runtime.engine import Engine  # noqa: E402
from tinygpt.runtime.models import load  # noqa: E402
from tinygpt.runtime.prefill import make_cache, prefill  # noqa: E402
from tinygpt.runtime.sampling import SamplingParams  # noqa: E402
from tinygpt.runtime.solo import SoloRun  # noqa: E402


def rate(stream) -> float:
    """tok/s over an iterator of tokens, from the first token to the last."""
    first, count = None, 0
    for _ in stream:
        count += 1
        if first is None:
            first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - first)


def raw(model, prompt, n):
    return rate(generate_step(mx.array(prompt), model, max_tokens=n, prompt_cache=make_prompt_cache(model)))


def session_cache(model, prompt, n, sampler=greedy_sampler):
    cache = make_cache(model)
    prefill(model, cache, prompt[:-1])
    return rate(generate_step(mx.array(prompt[-1:]), model, max_tokens=n, sampler=sampler, prompt_cache=cache))


def gather(model, prompt, n):
    chosen = []

    def sample(logprobs):
        token = greedy_sampler(logprobs)
        c = mx.take_along_axis(logprobs, token.reshape(-1, 1), axis=-1)
        chosen.append(c)
        return mx.depends(token, [c])

    def tokens():
        for tok, _ in generate_step_on_session(model, prompt, n, sample):
            chosen.pop(0).item()
            yield tok
    return rate(tokens())


def generate_step_on_session(model, prompt, n, sampler):
    cache = make_cache(model)
    prefill(model, cache, prompt[:-1])
    return generate_step(mx.array(prompt[-1:]), model, max_tokens=n, sampler=sampler, prompt_cache=cache)


def solo(model, prompt, n):
    run = SoloRun(model, make_cache(model), list(prompt), [], n, greedy_sampler, 2048)

    def tokens():
        while len(run.out) < n:
            got = run.advance()
            if got is not None:
                yield got[0]
        run.close()
    return rate(tokens())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/decode_path.json")
    a = ap.parse_args()
    engine = Engine(load(a.model))
    model, n = engine.model, a.tokens
    prompt = engine.encode_chat([{"role": "user", "content": "Benchmark prompt: say something long."}])
    params = SamplingParams(max_tokens=n, stop_token_ids=())
    variants = {"raw": lambda: raw(model, prompt, n), "session": lambda: session_cache(model, prompt, n),
                "gather": lambda: gather(model, prompt, n), "solo": lambda: solo(model, prompt, n),
                "engine": lambda: engine.generate(prompt, params, session=engine.new_session()).decode_tps}
    for fn in variants.values():  # warm-up: first-use costs of every path
        fn()
    runs: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.reps):
        for k, fn in variants.items():
            runs[k].append(fn())
    med = {k: statistics.median(v) for k, v in runs.items()}
    prof = cProfile.Profile()
    prof.enable()
    engine.generate(prompt, params, session=engine.new_session())
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
    cfg = engine.loaded.config
    res = {"machine": machine_info(), "model": a.model, "tokens": n, "reps": a.reps, "model_config": {
        k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")},
        "tok_s": runs, "median_tok_s": med, "ratio_to_raw": {k: v / med["raw"] for k, v in med.items()},
        "profile_engine": buf.getvalue(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({k: round(v, 3) for k, v in res["ratio_to_raw"].items()}),
          {k: round(v, 1) for k, v in med.items()})
    print(buf.getvalue())
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
