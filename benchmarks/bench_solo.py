"""Solo vs batch-only: `tinygpt serve` (a lone request decodes outside the batch), `tinygpt serve --no-solo`
and `mlx_lm.server`, all up at once on the same model, at 1 and 8 concurrent greedy streams, medians of 4
alternating rounds after a discarded warm-up. Prints the table and writes JSON (default
benchmarks/results/solo.json). Usage: python benchmarks/bench_solo.py MODEL_DIR [TOKENS_PER_STREAM] [OUT]
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_serve as B  # noqa: E402
import httpx  # noqa: E402
import httpx

model = sys.argv[1]
TOK = int(sys.argv[2]) if len(sys.argv) > 2 else 256
VARIANTS = {"default": [], "nosolo": ["--no-solo"], "mlx_lm": None}
procs, urls = {}, {}
for name, pre in VARIANTS.items():
    port = B.free_port()
    if pre is None:
        procs[name] = B.start("mlx_lm", B.Path(model), port)
    else:
        code = "import sys, tinygpt; from tinygpt.cli_serve import main; sys.exit(main())"
        cmd = [sys.executable, "-c", code, "--model", model, "--port", str(port), "--max-batch", "8",
               "--log-level", "warning"] + pre
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    urls[name] = url
names = {k: ("default_model" if k == "mlx_lm" else httpx.get(u + "/v1/models").json()["data"][0]["id"])
         for k, u in urls.items()}
for k in VARIANTS:
    for c in (1, 8):
        B.aggregate(urls[k], names[k], c, 32)
res = {(k, c): [] for k in VARIANTS for c in (1, 8)}
for _ in range(4):
    for c in (1, 8):
        for k in VARIANTS:
            res[(k, c)].append(B.aggregate(urls[k], names[k], c, TOK)["tok_per_s"])
for (k, c), v in res.items():
    print(f"{k:10s} {c} streams: median {statistics.median(v):7.1f}  {v}", flush=True)
for p in procs.values():
    p.terminate()
out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                          "solo.json")
with open(out, "w") as f:
    json.dump({"machine": B.machine(), "model": model, "tokens_per_stream": TOK, "date":
               time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "tok_per_s": {f"{k} {c}": {"median": statistics.median(v), "samples": v}
                             for (k, c), v in res.items()}}, f, indent=2)
