"""P5: `tinygpt serve` against `mlx_lm.server` on the same model, in one run.

Starts each server as a subprocess on 127.0.0.1 (both with OpenBLAS loaded the way tinygpt loads it, float32
weights, 8-way decode batching), then measures over streaming chat completions:
  - aggregate generated tokens per second at 1, 4 and 8 concurrent streams (greedy, fixed max_tokens);
  - time to first token for a long prompt never seen before (prefix-cache miss) and for a new question after
    the same long prefix (prefix-cache hit), median of a few.
Writes benchmarks/results/serve.json with machine info. Traffic goes only to 127.0.0.1; every loop is bounded.
Usage: python benchmarks/bench_serve.py [--model DIR] [--preset small] [--tokens 128] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import tinygpt  # noqa: F401  (OpenBLAS before mlx)
import httpx

ROOT = Path(__file__).resolve().parents[1]
MLX_LM = ("import tinygpt, sys; from mlx_lm.server import main; sys.argv = ['mlx_lm.server'] + sys.argv[1:]; "
          "main()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, model: Path, port: int) -> subprocess.Popen:
    if kind == "tinygpt":
        cmd = [sys.executable, "-m", "tinygpt.cli_serve", "--model", str(model), "--port", str(port),
               "--max-batch", "8", "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-c", MLX_LM, "--model", str(model), "--port", str(port), "--host", "127.0.0.1",
               "--decode-concurrency", "8", "--prompt-concurrency", "8", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TINYGPT_API_KEY": ""})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{kind} server did not come up in 120 s")


def stream_chat(url: str, model: str, messages: list[dict], max_tokens: int) -> dict:
    """One streaming request: time to first generated text, total time, tokens generated."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, chunks, usage = None, 0, None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunks += 1
            # parse only what is needed (the client shares these 2 cores with the server it measures)
            if ttft is None or '"usage":{' in line or '"usage": {' in line:
                obj = json.loads(line[6:])
                usage = obj.get("usage") or usage
                if ttft is None and any(ch.get("delta", {}).get("content") or ch.get("finish_reason")
                                        for ch in obj.get("choices", [])):
                    ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    tokens = usage["completion_tokens"] if usage else chunks
    return {"ttft_s": ttft, "total_s": total, "tokens": tokens}


def aggregate(url: str, model: str, streams: int, max_tokens: int) -> dict:
    results: list[dict] = [None] * streams  # type: ignore[list-item]

    def one(i: int) -> None:
        msgs = [{"role": "user", "content": f"Stream {i}: tell me a long story about the number {i * 7919}."}]
        results[i] = stream_chat(url, model, msgs, max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    return {"streams": streams, "tokens": tokens, "wall_s": round(wall, 3), "tok_per_s": round(tokens / wall, 1),
            "mean_ttft_s": round(statistics.mean(r["ttft_s"] for r in results), 4)}


def ttft(url: str, model: str, repeats: int, prefix_words: int, tag: str = "") -> dict:
    """Median TTFT: a long unseen prompt (miss), then a new question after that same prefix (hit)."""
    miss, hit = [], []
    for k in range(repeats):
        system = {"role": "system", "content": " ".join(f"fact{tag}{k}-{i}" for i in range(prefix_words))}
        miss.append(stream_chat(url, model, [system, {"role": "user", "content": "first?"}], 1)["ttft_s"])
        hit.append(stream_chat(url, model, [system, {"role": "user", "content": "second?"}], 1)["ttft_s"])
    return {"miss_s": round(statistics.median(miss), 4), "hit_s": round(statistics.median(hit), 4),
            "speedup": round(statistics.median(miss) / statistics.median(hit), 2)}


def prompt_tokens(model: Path, prefix_words: int) -> int:
    from transformers import AutoTokenizer  # only to report the prompt length

    tok = AutoTokenizer.from_pretrained(str(model))
    return len(tok(" ".join(f"fact0-{i}" for i in range(prefix_words)))["input_ids"])


def machine() -> dict:
    import mlx.core as mx
    import mlx_lm

    from tinygpt import blas

    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    gpu = ""
    if "gpu" in str(mx.default_device()):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10).stdout.strip().splitlines()[0] + f" ({os.cpu_count()} CPU cores)"
        except (OSError, IndexError, subprocess.SubprocessError):
            gpu = "GPU"
    return {"gpu": gpu, "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu or platform.processor(),
            "cores": os.cpu_count(), "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
            "device": str(mx.default_device()), "blas": str(blas.activate())}


def run(args: argparse.Namespace) -> dict:
    model = Path(args.model) if args.model else None
    tmp = None
    if model is None:
        from tinygpt.runtime.presets import InitSpec, init_model

        tmp = tempfile.TemporaryDirectory()
        model = init_model(Path(tmp.name) / args.preset, InitSpec(preset=args.preset), force=True)
    out = {"model": {"path": str(model), "preset": args.preset if tmp else None,
                     "config": json.loads((model / "config.json").read_text())},
           "machine": machine(), "max_tokens_per_stream": args.tokens, "rounds": args.rounds,
           "ttft_prompt_prefix_tokens": prompt_tokens(model, args.prefix_words), "servers": {}}
    kinds = ("tinygpt", "mlx_lm")
    procs, urls = {}, {}
    try:
        for kind in kinds:  # both up at once, measured in alternation: load from elsewhere hits both alike
            port = free_port()
            procs[kind] = start(kind, model, port)
            urls[kind] = (f"http://127.0.0.1:{port}",)
        names = {k: (httpx.get(urls[k][0] + "/v1/models").json()["data"][0]["id"] if k == "tinygpt"
                     else "default_model") for k in kinds}
        for k in kinds:  # warm-up, discarded: first-use costs (e.g. GPU kernels built per shape) of every case
            stream_chat(urls[k][0], names[k], [{"role": "user", "content": "warm up"}], 8)
            for c in args.concurrency:
                aggregate(urls[k][0], names[k], c, min(args.tokens, 32))
            ttft(urls[k][0], names[k], 1, args.prefix_words, tag="warm")
        samples: dict[str, dict[int, list[dict]]] = {k: {c: [] for c in args.concurrency} for k in kinds}
        for _ in range(args.rounds):
            for c in args.concurrency:
                for k in kinds:
                    samples[k][c].append(aggregate(urls[k][0], names[k], c, args.tokens))
        for k in kinds:
            res = {}
            for c in args.concurrency:
                rates = [x["tok_per_s"] for x in samples[k][c]]
                med = statistics.median(rates)
                res[f"aggregate_{c}"] = {"tok_per_s": med, "tok_per_s_median": med, "tok_per_s_samples": rates,
                                         "mean_ttft_s": round(statistics.mean(x["mean_ttft_s"]
                                                                              for x in samples[k][c]), 4)}
            res["ttft"] = ttft(urls[k][0], names[k], args.repeats, args.prefix_words)
            out["servers"][k] = res
            print(k, json.dumps(res), flush=True)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    t, m = out["servers"]["tinygpt"], out["servers"]["mlx_lm"]
    top, low = max(args.concurrency), min(args.concurrency)
    rate = lambda r, c: r[f"aggregate_{c}"]["tok_per_s_median"]  # noqa: E731
    out["checks"] = {
        f"tinygpt_{top}_vs_{low}_stream_scaling": round(rate(t, top) / rate(t, low), 2),
        "tinygpt_vs_mlx_lm_tok_per_s": {str(c): round(rate(t, c) / rate(m, c), 2) for c in args.concurrency},
        "tinygpt_vs_mlx_lm_ttft": {"miss": round(m["ttft"]["miss_s"] / t["ttft"]["miss_s"], 2),
                                   "hit": round(m["ttft"]["hit_s"] / t["ttft"]["hit_s"], 2)},
    }
    if tmp:
        tmp.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: a fresh random-init --preset model)")
    p.add_argument("--preset", default="small", help="preset when no --model (default small)")
    p.add_argument("--tokens", type=int, default=256, help="new tokens per stream (default 256)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=3, help="TTFT samples per case (median; default 3)")
    p.add_argument("--rounds", type=int, default=5, help="throughput samples per case (median; default 5)")
    p.add_argument("--prefix-words", type=int, default=300, help="words in the long TTFT prefix (default 300)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = p.parse_args(argv)
    result = run(args)
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["checks"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
