"""Render BENCHMARKS.md from benchmarks/results/*.json (each written by its bench_*.py script).

Every number in BENCHMARKS.md comes from a results file, with the machine it ran on. Run after any benchmark:
    python benchmarks/report.py
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _machine(m: dict) -> str:
    cores = m.get("cpus") or m.get("cores")
    where = m.get("gpu") or f"{cores} CPU cores" + (f", {m['mem_gib']} GiB" if m.get("mem_gib") else "")
    return f"{where}; {m.get('platform')}, Python {m.get('python')}, MLX {m.get('mlx')}, {m.get('device')}"


def engine(r: dict, title: str) -> list[str]:
    cfg = r.get("model_config", {})
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, vocab {cfg.get('vocab_size')}, "
           f"{cfg.get('torch_dtype')}. Script: `benchmarks/bench_engine.py`.", ""]
    p1 = r["p1"]
    out += ["| | median decode tok/s | runs |", "|---|---|---|",
            f"| raw mlx-lm `generate_step` | {p1['raw_median']:.2f} | {', '.join(f'{x:.1f}' for x in p1['raw_tps'])} |",
            f"| tinygpt engine | {p1['engine_median']:.2f} | "
            f"{', '.join(f'{x:.1f}' for x in p1['engine_tps'])} |",
            "", f"**P1** engine ÷ raw = **{p1['ratio']:.3f}** (target ≥ 0.97; {p1['tokens']} tokens per run, runs "
            "interleaved, greedy).", ""]
    if "p3" in r:
        out += ["| history tokens | full re-prefill TTFT s | persistent KV TTFT s | **P3** ratio | reload-from-disk "
                "+ first token s | **P4** ratio |", "|---|---|---|---|---|---|"]
        for n, v in r["p3"].items():
            p4 = r["p4"][n]
            out.append(f"| {n} | {statistics.median(v['full_reprefill_s']):.2f} | "
                       f"{statistics.median(v['persistent_s']):.3f} | **{v['ratio']:.1f}x** | "
                       f"{statistics.median(p4['reload_then_first_token_s']):.3f} | **{p4['ratio']:.1f}x** |")
        out += ["", "Targets: P3 ≥ 10x at 4k; P4 ≥ 5x. Turn N appends 24 new tokens to the history. Medians of "
                f"{len(next(iter(r['p3'].values()))['full_reprefill_s'])} runs per length.", ""]
    return out


def grammar(r: dict, title: str) -> list[str]:
    c, d, p2 = r["compile"], r["decode"], r["p2"]
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model `qwen3-0.6b` shape, real Qwen vocabulary; "
           f"grammar for BFCL's {r['tools']} GorillaFileSystem tools. Script: `benchmarks/bench_grammar.py`.", "",
           "| backend | mode | compile ms (median) |", "|---|---|---|"]
    for backend, v in c.items():
        for mode, m in v["modes"].items():
            out.append(f"| {backend} | {mode} | {m['median_ms']:.1f} |")
    out += ["", "| decode | median ms/token | overhead vs unconstrained | direct mask+apply overhead |",
            "|---|---|---|---|"]
    for name, ms in d["median_ms_per_token"].items():
        over = p2["overhead"].get(name)
        direct = p2.get("direct_overhead", {}).get(name)
        out.append(f"| {name} | {ms:.1f} | {'' if over is None else f'{over:+.1%}'} | "
                   f"{'' if direct is None else f'{direct:+.2%}'} |")
    out += ["", f"**P2**: llguidance compile {p2['compile_ms_llguidance_auto']:.1f} ms (target ≤ 10 ms); per-token "
            f"overhead llguidance auto {p2['overhead']['llguidance-auto']:+.1%} (target ≤ 5%). Decode runs are "
            f"paired side by side, {d.get('tokens')} tokens x {d.get('reps')} reps.", ""]
    return out


def serve(r: dict, title: str) -> list[str]:
    m = r["model"]
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model preset `{m.get('preset')}` (random init). "
           f"{r['max_tokens_per_stream']} tokens per stream. Script: `benchmarks/bench_serve.py`.", "",
           "| server | 1 stream tok/s | 4 streams tok/s | 8 streams tok/s | TTFT miss s | TTFT prefix hit s |",
           "|---|---|---|---|---|---|"]
    for name, v in r["servers"].items():
        out.append(f"| {name} | {v['aggregate_1']['tok_per_s']} | {v['aggregate_4']['tok_per_s']} | "
                   f"{v['aggregate_8']['tok_per_s']} | {v['ttft']['miss_s']} | {v['ttft']['hit_s']} |")
    ch = r["checks"]
    out += ["", f"**P5**: tinygpt 8-stream aggregate ÷ 1 stream = **{ch['tinygpt_8_vs_1_stream_scaling']}x** "
            "(target ≥ 4x); tinygpt ÷ mlx_lm.server tok/s at 1/4/8 streams = "
            f"{', '.join(str(v) for v in ch['tinygpt_vs_mlx_lm_tok_per_s'].values())} (target ≥ 1). TTFT prefix: "
            f"{r['ttft_prompt_prefix_tokens']} shared tokens.", ""]
    return out


def generic(r: dict, title: str) -> list[str]:
    out = [f"## {title}", ""]
    if "machine" in r:
        out += [f"Machine: {_machine(r['machine'])}.", ""]
    if "summary" in r:
        out += ["| metric | value | target | met |", "|---|---|---|---|"]
        for row in r["summary"]:
            out.append(f"| {row['metric']} | {row['value']} | {row.get('target', '')} | "
                       f"{'yes' if row.get('met') else 'no' if 'met' in row else ''} |")
    else:
        out += ["```json", json.dumps({k: v for k, v in r.items() if k != "machine"}, indent=1)[:3000], "```"]
    return out + [""]


SECTIONS = [
    ("engine.json", "Engine on CPU (issue 2: P1, P3, P4)", engine),
    ("engine_gpu.json", "Engine on an NVIDIA GPU (issue 2: P1, qwen3-4b bf16)", engine),
    ("grammar.json", "Constrained decoding (issue 3: P2)", grammar),
    ("traces.json", "traces-to-data throughput (issue 4: P9)", generic),
    ("serve.json", "Server concurrency and prefix cache (issue 5: P5)", serve),
]


def main() -> None:
    lines = ["# Benchmarks", "", "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`. CPU numbers "
             "come from a shared 2-core machine: quote them as ratios measured side by side in one run; absolute "
             "times are quoted only from the GPU.", ""]
    for name, title, render in SECTIONS:
        path = RESULTS / name
        if path.exists():
            lines += render(json.loads(path.read_text()), title)
        else:
            lines += [f"## {title}", "", f"Not measured yet (`{name}` missing).", ""]
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
