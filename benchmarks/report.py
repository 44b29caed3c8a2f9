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
    parts = [m.get("gpu") or f"{cores} CPU cores" + (f", {m['mem_gib']} GiB" if m.get("mem_gib") else "")]
    parts += [m.get("platform"), f"Python {m.get('python')}"]
    parts += [f"MLX {m['mlx']}"] if m.get("mlx") else []
    parts += [m["device"]] if m.get("device") else []
    return "; ".join(p for p in parts if p)


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
            "interleaved, greedy" + (f", {r['date']}" if r.get("date") else "") + ")."
            + (f" Median of each engine run ÷ the raw run just before it: **{p1['pair_ratio_median']:.3f}**."
               if "pair_ratio_median" in p1 else "") + (f" {r['note']}" if r.get("note") else ""), ""]
    if "p3" in r:
        out += ["| history tokens | full re-prefill TTFT s | persistent KV TTFT s | **P3** ratio | reload-from-disk "
                "+ first token s | **P4** ratio |", "|---|---|---|---|---|---|"]
        for n, v in r["p3"].items():
            p4 = r["p4"][n]
            out.append(f"| {n} | {statistics.median(v['full_reprefill_s']):.2f} | "
                       f"{statistics.median(v['persistent_s']):.3f} | **{v['ratio']:.1f}x** | "
                       f"{statistics.median(p4['reload_then_first_token_s']):.3f} | **{p4['ratio']:.1f}x** |")
        out += ["", "Targets: P3 ≥ 10x at 4k; P4 ≥ 5x. Turn N appends 24 new tokens to the history. Medians of "
                f"{len(next(iter(r['p3'].values()))['full_reprefill_s'])} runs per length"
                + (f"; P3/P4 measured {r['p3_date']}, P1 {r['date']}." if r.get("p3_date") != r.get("date") else "."),
                ""]
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
    c = m.get("config", {})
    shape = ((f"preset `{m['preset']}`, " if m.get("preset") else "") +
             f"hidden {c.get('hidden_size')}, {c.get('num_hidden_layers')} layers, vocab {c.get('vocab_size')}, "
             f"{c.get('torch_dtype')}")
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model {shape} (random init). "
           f"{r['max_tokens_per_stream']} tokens per stream" + (f", medians of {r['rounds']} alternating rounds"
           if r.get("rounds") else "") + ". Script: `benchmarks/bench_serve.py`.", "",
           "| server | 1 stream tok/s | 4 streams tok/s | 8 streams tok/s | TTFT miss s | TTFT prefix hit s |",
           "|---|---|---|---|---|---|"]
    for name, v in r["servers"].items():
        tps = [v[f"aggregate_{n}"].get("tok_per_s_median", v[f"aggregate_{n}"].get("tok_per_s")) for n in (1, 4, 8)]
        out.append(f"| {name} | {tps[0]} | {tps[1]} | {tps[2]} | {v['ttft']['miss_s']} | {v['ttft']['hit_s']} |")
    ch = r["checks"]
    out += ["", f"**P5**: tinygpt 8-stream aggregate ÷ 1 stream = **{ch['tinygpt_8_vs_1_stream_scaling']}x** "
            "(target ≥ 4x); tinygpt ÷ mlx_lm.server tok/s at 1/4/8 streams = "
            f"{', '.join(str(v) for v in ch['tinygpt_vs_mlx_lm_tok_per_s'].values())} (target ≥ 1). TTFT prefix: "
            f"{r['ttft_prompt_prefix_tokens']} shared tokens.", ""]
    return out + [r["note"], ""] if r.get("note") else out


def traces(r: dict, title: str) -> list[str]:
    runs = r["runs"]
    d = runs[0]["dedupe"]
    return [f"## {title}", "", f"Machine: {_machine(r['machine'])}. {r['episodes']:,} synthetic tool-use episodes "
            "recorded with the real Recorder; default config (exact + MinHash LSH near dedupe, 128 perms, word "
            "5-grams, threshold 0.8; rows + chat outputs). Script: `benchmarks/bench_traces.py`; details in "
            "`benchmarks/results/traces.md`.", "",
            "| runs (episodes/s) | median | CPU µs/episode | dedupe precision / recall | main peak RSS MiB |",
            "|---|---|---|---|---|",
            f"| {', '.join(str(x['episodes_per_s']) for x in runs)} | **{r['median_episodes_per_s']}** | "
            f"{r['median_cpu_us_per_episode']} | {d['precision']} / {d['recall']} | {r['main_process_peak_rss_mib']} |",
            "", f"**P9** target ≥ {r['target_episodes_per_s']} episodes/s: {'met' if r['passed'] else 'not met'}. "
            "Measured with the machine quiet; with other jobs on the two cores it drops to ~2,100-3,100/s "
            "(CPU-bound, needs both cores).", ""]


def solo(text: str, title: str) -> list[str]:
    return [f"## {title}", "", "Script: `benchmarks/bench_solo.py` (`tinygpt serve`, `tinygpt serve --no-solo` and "
            "`mlx_lm.server` up at once). A lone request decodes outside the batch until a second arrives "
            "(`runtime/solo.py`); this is why tinygpt's single stream is faster than the batch path's, and why its "
            "8-stream ÷ 1-stream ratio on the GPU is lower than the batch path's own.", "", "```", text.strip(),
            "```", ""]


def adapters(r: dict, title: str) -> list[str]:
    cfg, t, m, s = r.get("model_config", {}), r["throughput"], r["memory"], r["switch"]
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, {cfg.get('torch_dtype')}; rank-"
           f"{r['rank']} adapters on every Linear; {r['rows']} rows, {r['prompt_tokens']}-token prompts, "
           f"{r['decode_tokens']} greedy steps, medians of {r['reps']} interleaved runs, {r['date']}. "
           "Script: `benchmarks/bench_adapters.py`.", "", "| decode | median tok/s |", "|---|---|"]
    out += [f"| {name} | {v['median_tps']:.1f} |" for name, v in t.items() if isinstance(v, dict)]
    out += ["", "Mixed batch ÷ per-adapter batches in turn: " + ", ".join(
        f"**{v:.2f}x** ({name.split(',')[0]})" for name, v in t.items() if not isinstance(v, dict)) + ".", ""]
    mb = 2 ** 20
    out += [f"**P12 memory**: base {m['base_bytes'] / mb:.2f} MiB; base + {m['adapters']} adapters attached "
            f"{m['served_bytes'] / mb:.2f} MiB = {m['ratio_to_base_plus_adapters']:.3f} × (base + adapter tensors "
            f"{m['adapter_file_tensor_bytes'] / mb:.2f} MiB); target ≤ 1.10: **{'met' if m['passed'] else 'not met'}**. "
            f"Provider specialists (shared base arrays) {m['provider_specialists_bytes'] / mb:.2f} MiB; "
            f"separately loaded specialists {m['separate_models_bytes'] / mb:.2f} MiB.", ""]
    med = s["median_s"]
    out += [f"**P12 switch** ({s['prompt_tokens']}-token prompt, TTFT ms): "
            + ", ".join(f"{k} {v * 1000:.1f}" for k, v in med.items())
            + f". B right after A − base = **{s['switch_added_ms']:.1f} ms** (target ≤ 5 on the CPU `small` preset; "
            f"this run, {r['preset']}: **{'within' if s['passed'] else 'over'}**); vs B right after B {s['switch_vs_no_switch_ms']:+.1f} ms. "
            f"Reloading the model for B (mlx-lm server's way) + first token: median "
            f"{statistics.median(s['reload_then_first_token_s']) * 1000:.0f} ms.", ""]
    return out


def kv_ttft(r: dict, title: str) -> list[str]:
    cfg, med = r.get("model_config", {}), statistics.median
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, {cfg.get('torch_dtype')}; "
           f"{r['turn_tokens']} new tokens per turn; medians, {r['date']}. Script: `benchmarks/bench_kv_ttft.py`.", "",
           "| history | full re-prefill ms | **warm turn TTFT ms** (engine) | target: bucketed prefill + 2 decode "
           "steps ms | forward, plain cache ms (before) | forward, bucketed ms | decode step ms |",
           "|---|---|---|---|---|---|---|"]
    for n, v in r["lengths"].items():
        target = med(v["bucketed_forward_s"]) + 2 * med(v["decode_step_s"])
        out.append(f"| {n} | {med(v['full_reprefill_s']) * 1e3:.1f} | **{med(v['persistent_s']) * 1e3:.1f}** | "
                   f"{target * 1e3:.1f} ({'met' if med(v['persistent_s']) <= target else 'not met'}) | "
                   f"{med(v['raw_forward_s']) * 1e3:.1f} | {med(v['bucketed_forward_s']) * 1e3:.1f} | "
                   f"{med(v['decode_step_s']) * 1e3:.1f} |")
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def reload(r: dict, title: str) -> list[str]:
    cfg, med = r.get("model_config", {}), statistics.median
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, {cfg.get('torch_dtype')}; a saved "
           f"session, then a {r['turn_tokens']}-token turn; medians of {r['reps']} interleaved runs, {r['date']}. "
           "Script: `benchmarks/bench_reload.py`.", "",
           "| history | KV file MiB | full re-prefill ms | reload from file + turn ms | recompute from ids + turn ms "
           "| **auto** + turn ms (its choice) | auto ÷ re-prefill |", "|---|---|---|---|---|---|---|"]
    parts = []
    for n, v in r["lengths"].items():
        full, auto = med(v["full_reprefill_s"]), med(v["auto_s"])
        choice = "/".join(sorted(set(v["auto_how"])))
        out.append(f"| {n} | {v['kv_file_bytes'] / 2**20:.0f} | {full * 1e3:.1f} | {med(v['file_s']) * 1e3:.1f} | "
                   f"{med(v['prefill_s']) * 1e3:.1f} | **{auto * 1e3:.1f}** ({choice}) | {auto / full:.2f} |")
        fp, q = v["file_parts"], v["int8"]
        parts.append(f"| {n} | {fp['read_bytes_s'] * 1e3:.0f} | {fp['mx_load_s'] * 1e3:.0f} | "
                     f"{fp['numpy_read_mx_array_s'] * 1e3:.0f} | {q['file_bytes'] / 2**20:.0f} | "
                     f"{q['load_dequantize_s'] * 1e3:.0f} | "
                     f"{'yes' if q['greedy16_equal'] else 'no, from token ' + str(q['greedy16_same_prefix'])} |")
    last = list(r["lengths"].values())[-1]
    out += ["", f"Auto's reasoning at the longest history: {last['auto_reason']}.", "",
            "The file path's parts (once each, ms) and 8-bit KV (mx.quantize, group 64; not built into the runtime):",
            "", "| history | read bytes | mx.load all tensors | numpy read + mx.array + device op | 8-bit file MiB | "
            "8-bit load + dequantize | 16 greedy tokens equal exact KV's |", "|---|---|---|---|---|---|---|", *parts]
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def kv_read(runs: list[dict], title: str) -> list[str]:
    r0 = runs[0]
    routes = list(r0["median_s"])
    out = [f"## {title}", "", f"Machine: {_machine(r0['machine'])}. One saved session's KV file per row (random-init "
           f"qwen3-4b shape, bf16), each route timed {r0['reps']} times interleaved, medians in ms (GiB/s), "
           f"{r0['date']}. Script: `benchmarks/bench_kv_read.py`.", "",
           "| history | file MiB | " + " | ".join(routes) + " |", "|---|---|" + "---|" * len(routes)]
    for r in sorted(runs, key=lambda x: x["tokens"]):
        out.append(f"| {r['tokens']} | {r['file_bytes'] / 2**20:.0f} | " + " | ".join(
            f"{r['median_s'][k] * 1e3:.0f} ({r['gib_per_s'][k]:.2f})" for k in routes) + " |")
    notes = [r["note"] for r in runs if r.get("note")]
    return out + ["", *notes, ""] if notes else out + [""]


def reload_cold(r: dict, title: str) -> list[str]:
    cfg, med = r.get("model_config", {}), statistics.median
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, {cfg.get('torch_dtype')}; each "
           f"measurement in a fresh process (as after a restart: nothing measured, no kernel built; auto goes by the "
           f"rate the saving process recorded), then a {r['turn_tokens']}-token turn; medians of {r['reps']}, "
           f"{r['date']}. Script: `benchmarks/bench_reload.py --cold`.", "",
           "| history | full re-prefill ms | reload from file + turn ms | **auto** + turn ms (its choice) |",
           "|---|---|---|---|"]
    for n, v in r["cold"].items():
        out.append(f"| {n} | {med(v['reprefill_s']) * 1e3:.0f} | {med(v['file_s']) * 1e3:.0f} | "
                   f"**{med(v['auto_s']) * 1e3:.0f}** ({'/'.join(sorted(set(v['auto_how'])))}) |")
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def decode_path(r: dict, title: str) -> list[str]:
    cfg = r.get("model_config", {})
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, {cfg.get('torch_dtype')}; "
           f"{r['tokens']} greedy tokens per run, {r['reps']} interleaved runs, {r['date']}. Script: "
           "`benchmarks/bench_decode_path.py`.", "", "| path | median decode tok/s | ÷ raw | runs |", "|---|---|---|---|"]
    for k, v in r["tok_s"].items():
        out.append(f"| {k} | {r['median_tok_s'][k]:.1f} | {r['ratio_to_raw'][k]:.3f} | {', '.join(f'{x:.1f}' for x in v)} |")
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def sdpa_first_use(r: dict, title: str) -> list[str]:
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. One layer's attention shapes of the model, "
           f"{r['turn_tokens']} queries; each call at a key length never used before (first call of each column "
           f"also builds the base shape). Script: `benchmarks/bench_kv_ttft.py --sdpa-only`.", "",
           "| keys from | fused, causal mask ms | fused, array mask ms | fused, bucketed length ms | matmuls ms |",
           "|---|---|---|---|---|"]
    for n, v in r["sdpa_first_use"].items():
        cells = [", ".join(f"{x * 1e3:.1f}" for x in v[k]) for k in (
            "fused_causal_new_len_s", "fused_array_mask_new_len_s", "fused_bucketed_len_s", "matmul_new_len_s")]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out + [""]


def cli(r: dict, title: str) -> list[str]:
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Whole processes, {r['runs']} runs each, "
           f"{r['date']}. Script: `benchmarks/bench_cli.py`.", "",
           "| command | median s | min s | max s | median CPU s |", "|---|---|---|---|---|"]
    for name, c in r["commands"].items():
        out.append(f"| `{name}` | {c['median_s']:.3f} | {c['min_s']:.3f} | {c['max_s']:.3f} | "
                   f"{c['median_cpu_s']:.3f} |")
    out += ["", f"Target: median ≤ {r['target_median_s']} s for `--help` and argument errors: "
            f"**{'met' if r['passed'] else 'not met'}** (issue 8, which measured about 2.5 s before MLX and friends were imported lazily).", ""]
    return out


def train(r: dict, title: str) -> list[str]:
    cfg, st = r.get("model_config", {}), r["settings"]
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init Qwen3 `{r['preset']}`, hidden "
           f"{cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, vocab {cfg.get('vocab_size')}, "
           f"{cfg.get('torch_dtype')}; LoRA rank {st['rank']} on every layer, batch {st['batch_size']}, max length "
           f"{st['max_seq_length']}, {r['optimizer']}; {st['rows']} rows, second epoch timed, medians of "
           f"{st['reps']} alternating runs per side, {r['date']}. Tokens: trained targets as each side's loss mask "
           "counts them (mlx-lm's count, 1-2 per row more than tinygpt's). Script: `benchmarks/bench_train.py`.", "",
           "| workload | side | tokens/s | tokens/CPU-s | peak MiB (mx) | steps' peak MiB | tokens/s of each run | "
           "padded tokens/epoch |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, w in r["workloads"].items():
        padded = w.get("padded_tokens_per_epoch", {})
        for side, m in w["median"].items():
            runs = ", ".join(f"{x['tokens_per_s']:.0f}" for x in w["runs"][side])
            steps_peak = f"{m['steps_peak_mb']:.1f}" if "steps_peak_mb" in m else "not recorded"
            out.append(f"| {name} | {side} | {m['tokens_per_s']:.0f} | {m['tokens_per_cpu_s']:.0f} | "
                       f"{m['peak_mb']:.1f} | {steps_peak} | {runs} | {padded.get(side, '')} |")
        speed, peak = w["tokens_per_s_ratio"], w["peak_memory_ratio"]
        steps = w.get("steps_peak_memory_ratio")
        pairs = w["tokens_per_s_ratio_of_pairs"]["mlx_lm"]["median"]
        met = speed >= 1.0 and peak <= 1.0 and (steps is None or steps <= 1.0)
        verdicts.append(f"{name} **{speed:.2f}x** tokens/s (median of each run ÷ the mlx-lm run beside it: "
                        f"{pairs:.2f}), peak memory **{peak:.3f}** × mlx-lm's"
                        + (f" (training steps alone: **{steps:.3f}**)" if steps is not None else "")
                        + f": **{'met' if met else 'not met'}**")
    out += ["", "**P8** tinygpt ÷ `mlx_lm.lora` (target ≥ 1.0 tokens/s at peak memory ≤ mlx-lm's): "
            + "; ".join(verdicts) + "."]
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def bfcl_inflight(r: dict, title: str) -> list[str]:
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}. Model: random-init `{r['preset']}` shape, "
           f"{r['dtype']}, the embedded BPE vocabulary; the first {r['tasks']} BFCL multi-turn `{r['category']}` "
           f"tasks under the tool grammar, greedy, {r['max_tokens']} tokens per model step, {r['time']}. "
           "Script: `benchmarks/bench_bfcl_inflight.py`.", "",
           "| episodes in flight | wall s (mean; runs) | episodes/min | model steps | output tokens | prompt tokens "
           "| peak batch |",
           "|---|---|---|---|---|---|---|"]
    for k in ("one", "many"):
        v = r[k]
        walls = f" ({', '.join(map(str, v['walls_s']))})" if len(v.get("walls_s", [])) > 1 else ""
        out.append(f"| {v['in_flight']} | {v['wall_s']}{walls} | {v['episodes_per_min']} | {v['steps']} | "
                   f"{v['output_tokens']} | {v['prompt_tokens']} | {v['peak_batch']} |")
    if all("work" in r[k] for k in ("one", "many")):
        out += _bfcl_work(r)
    gpu = "gpu" in r["machine"].get("device", "")
    verdict = f"target ≥ 3x on the GPU: **{'met' if r['speedup'] >= 3 else 'not met'}**" if gpu else \
        "the target is set for the GPU; on this CPU it is measured only"
    same = f"both ways played the same rows: {'yes' if r['same_rows'] else 'NO'}"
    if "same_output_ids" in r:
        same += (f", the same output ids in every model call: {'yes' if r['same_output_ids'] else 'NO'}, the same "
                 f"cached-token counts: {'yes' if r['same_cached_tokens'] else 'no'}")
    load = f" Load average at the end: {', '.join(map(str, r['load_avg']))}." if r.get("load_avg") and not gpu else ""
    out += ["", f"**P10** {r['many']['in_flight']} in flight ÷ 1 at a time = **{r['speedup']}x** episodes/min "
            f"({verdict}); {same}.{load}"]
    return out + ["", r["note"], ""] if r.get("note") else out + [""]


def _bfcl_work(r: dict) -> list[str]:
    """Where each way's time went: the lane's counters (runtime/lane_work.py)."""
    one = r["one"]
    out = ["", f"Where the time went (the lane's counters; prefix cache {r.get('prefix_cache_mb', '?')} MiB, "
           f"prompts of {one.get('stage_min')}+ ids prefilled outside the batch, prefill step "
           f"{one.get('prefill_step')}): prompt ids prefilled per path with their seconds, ids reused, decode.", "",
           "| in flight | solo prefill | staged prefill | batch prompt processing | from prefix cache (stores) | "
           "from sessions | decode tokens | decode s | batch other s |", "|---|---|---|---|---|---|---|---|---|"]
    for k in ("one", "many"):
        w = r[k]["work"]
        out.append(
            f"| {r[k]['in_flight']} | {w['solo_prefill_tokens']} ids, {w['solo_prefill_s']} s | "
            f"{w['staged_prefill_tokens']} ids, {w['staged_prefill_s']} s | {w['batch_prefill_tokens']} ids, "
            f"{w['batch_prefill_s']} s | {w['prefix_cache_tokens']} ({w['prefix_cache_stores']}) | "
            f"{w['session_tokens']} | {w['solo_decode_tokens'] + w['batch_decode_tokens']}"
            + (f" in {w['batch_decode_steps']} batch steps" if w["batch_decode_steps"] else "")
            + f" | {round(w['solo_decode_s'] + w['batch_decode_s'], 2)} | {w['batch_other_s']} |")
    return out


def notes(text: str, title: str) -> list[str]:
    """A hand-written results note (measured by hand, machine and commands named in it)."""
    return [f"## {title}", "", text.strip(), ""]


def router(r: dict, title: str) -> list[str]:
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}; 1-minute load average {r.get('load_average_1m')} "
           f"while it ran, {r['date']}. {r['decisions']} single decisions per row (features, calibrated "
           "probabilities, the rule), the registry view held in memory. Wall clock and the thread's CPU time. "
           "Script: `benchmarks/bench_router.py`.", "",
           "| specialists | domains | request | chars | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | registry "
           "refresh ms |", "|---|---|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        for name, q in c["requests"].items():
            out.append(f"| {c['specialists']} | {c['domains']} | {name} (18 tools) | {q['chars']} | "
                       f"{q['p50_ms']:.3f} | {q['p99_ms']:.3f} | {q['cpu_p50_ms']:.3f} | {q['cpu_p99_ms']:.3f} | "
                       f"{c['registry_refresh_ms_p50']:.2f} |")
    typical = max(c["requests"]["typical"]["p50_ms"] for c in r["cases"])
    out += ["", f"**P11** routing decision p50 for a typical request: **{typical:.2f} ms** at most (target ≤ "
            f"{r['target_p50_ms']:g} ms: {'met' if typical <= r['target_p50_ms'] else 'not met'}). A long request "
            "(the 4000 characters the features read at most) costs more, in hashing its n-grams. The registry view "
            "is built once and held; the refresh column is what rebuilding it from the store costs.", ""]
    return out


def eval_router(r: dict, title: str) -> list[str]:
    def pct(x):
        return "n/a" if x is None else f"{x * 100:.1f}%"

    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}, {r['date']}. Data: {r['data']} ({r['train_requests']} "
           f"train, {r['heldout_requests']} heldout requests). Specialists: {', '.join(r['specialists'])} (travel has "
           f"none, and general, the off-domain requests for the generalist, never has one: their requests should "
           f"escalate). Quality per tier is an **assumption**, not measured: "
           f"`--quality {r['quality_assumption']}` (no eval result rows exist yet for the three tiers on these "
           "tasks). Script: `benchmarks/bench_eval_router.py`.", "",
           "| case | accuracy [95%] | ECE | escalation precision / recall | APGR (oracle) | CPT(50%) | CPT(80%) | "
           "to specialists at ship 0.5 |", "|---|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        a, e, cv = c["accuracy"], c["escalation"], c["curve"]
        out.append(f"| {c['case']} | {a['rate']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}] | {c['ece']:.3f} | "
                   f"{pct(e['precision'])} / {pct(e['recall'])} ({e['escalated']} escalated, {e['should']} should) | "
                   f"{cv['apgr']:.3f} ({cv['oracle']['apgr']:.3f}) | {pct(cv['cpt50'])} | {pct(cv['cpt80'])} | "
                   f"{pct(c['shares']['specialist'])} |")
    out += ["", "`tools`: the heldout requests as they come; `text-only`: the same without their tools; "
            "`travel-unseen`: a router trained without travel (its travel answers count as wrong). APGR is the area "
            "under the performance-gap-recovered curve over the share of requests sent to the cloud (a random order "
            "scores 0.5), the weak arm being the local split (specialists + generalist) the router makes at its "
            "thresholds; CPT is the share of cloud calls that recovers 50% / 80% of the gap (docs/router.md, "
            "\"Evaluating a router\"). A router whose confidence ranks its mistakes first comes close to the oracle.",
            ""]
    return out


def loop(r: dict, title: str) -> list[str]:
    s = r["summary"]
    out = [f"## {title}", "", f"Machine: {_machine(r['machine'])}, {r['date']}; 1-minute load average "
           f"{r['load_average_1m'][0]} before, {r['load_average_1m'][1]} after. Command: `{r['command']}` (set-up "
           f"excluded; a fresh run directory and model store). Script: `benchmarks/bench_loop.py`.", "",
           f"Wall time **{r['wall_s'] / 60:.1f} min** (target ≤ 10 min on this 2-core machine). Stages (s): "
           + ", ".join(f"{k} {v}" for k, v in r["stages_s"].items())
           + f"; router {s['seconds']['router']}, report and the rest "
           f"{max(0.0, s['seconds']['total'] - s['seconds']['loop'] - s['seconds']['router']):.1f}.", "",
           f"Domain **{s['domain']}**; base `{s['base']}`, specialist `{s['specialist']}`; gate verdict "
           f"**{s['verdict']}**.", "",
           "| arm | in-domain | out-of-domain | mixed |", "|---|---|---|---|"]
    for arm, cells in s["results"].items():
        out.append(f"| {arm} | " + " | ".join(
            f"{c['rate']:.1%} [{c['ci95'][0]:.1%}, {c['ci95'][1]:.1%}] ({c['passed']}/{c['tasks']})"
            for c in (cells[k] for k in ("in-domain", "out-of-domain", "mixed"))) + " |")
    out += ["", s["conclusion"], "", "Whiskers and intervals: 95% Wilson. The router's score on a task is the "
            "score of the model it routed that task's first request to (greedy episodes; docs/quickstart.md). "
            "Chart: `benchmarks/results/loop-summary.png`. Gate reasons: " + "; ".join(s.get("reasons", [])), ""]
    return out


SECTIONS = [
    ("engine.json", "Engine on CPU (issue 2: P1, P3, P4)", engine),
    ("engine_gpu.json", "Engine on an NVIDIA GPU (issue 2: P1, qwen3-4b bf16)", engine),
    ("engine-gpu-h200.json", "Engine on an NVIDIA GPU after the one-scheduler change (issue 9: P1, qwen3-4b bf16)",
     engine),
    ("grammar.json", "Constrained decoding (issue 3: P2)", grammar),
    ("traces.json", "traces-to-data throughput (issue 4: P9)", traces),
    ("serve.json", "Server concurrency and prefix cache (issue 5: P5), small preset", serve),
    ("serve-qwen3-0.6b.json", "Server concurrency and prefix cache (issue 5: P5), qwen3-0.6b shape", serve),
    ("serve-gpu-qwen3-0.6b.json", "Server on an NVIDIA GPU (issue 5: P5), qwen3-0.6b shape bf16", serve),
    ("serve-gpu-qwen3-4b.json", "Server on an NVIDIA GPU (issue 5: P5), qwen3-4b shape bf16", serve),
    ("cli.json", "CLI start-up (issue 8)", cli),
    ("scheduler-cpu.md", "One scheduler (issue 9): P1 and P5 before/after on this CPU, and adapters sharing a batch",
     notes),
    ("decode_path-gpu-qwen3-4b.json", "P1 by layer on an NVIDIA GPU (issue 9), qwen3-4b bf16", decode_path),
    ("serve-gpu-h200-qwen3-4b.json", "Server on an NVIDIA GPU after the one-scheduler change (issue 9: P5), qwen3-4b "
     "shape bf16", serve),
    ("kv_ttft-gpu-qwen3-4b.json", "Warm turn TTFT on an NVIDIA GPU (issue 9), qwen3-4b bf16", kv_ttft),
    ("kv_ttft-gpu-qwen3-4b-earlier.json", "Warm turn TTFT on an NVIDIA GPU (issue 9), qwen3-4b bf16: the earlier run",
     kv_ttft),
    ("reload-gpu-qwen3-4b.json", "Reloading a saved session on an NVIDIA GPU (issue 9: P4), qwen3-4b bf16", reload),
    ("reload-cold-gpu-qwen3-4b.json", "Reloading a saved session after a restart on an NVIDIA GPU (issue 9: P4)",
     reload_cold),
    ("reload-cold-gpu-qwen3-4b-bailout.json", "Reloading a saved session after a restart on an NVIDIA GPU (issue 9: "
     "P4): the first version", reload_cold),
    ("kv_read-gpu-qwen3-4b-*.json", "What bounds reading a KV file into the GPU (issue 9: P4)", kv_read),
    ("reload-cpu-qwen3-0.6b.json", "Reloading a saved session on this CPU (issue 9: P4), qwen3-0.6b shape", reload),
    ("kv_ttft-sdpa-gpu-qwen3-4b.json", "Fused attention at new key lengths on an NVIDIA GPU (issue 9)", sdpa_first_use),
    ("adapters.json", "Mixed-adapter batches and P12 (issue 9), small preset, CPU", adapters),
    ("adapters-gpu-qwen3-0.6b.json", "Mixed-adapter batches on an NVIDIA GPU (issue 9), qwen3-0.6b bf16", adapters),
    ("solo-gpu-qwen3-4b.txt", "Solo vs batch-only single streams on an NVIDIA GPU (issue 5), qwen3-4b bf16", solo),
    ("router.json", "Routing decision latency on the CPU (issue 13: P11)", router),
    ("train-cpu.json", "LoRA SFT vs mlx_lm.lora on this CPU (issue 11: P8), small preset", train),
    ("train-cpu-qwen-vocab.json", "LoRA SFT vs mlx_lm.lora on this CPU (issue 11: P8), small preset, Qwen vocabulary",
     train),
    ("train-gpu-qwen3-0.6b.json", "LoRA SFT vs mlx_lm.lora on an NVIDIA GPU (issue 11: P8), qwen3-0.6b bf16", train),
    ("train-gpu-qwen3-4b.json", "LoRA SFT vs mlx_lm.lora on an NVIDIA GPU (issue 11: P8), qwen3-4b bf16", train),
    ("train-gpu-qwen3-4b-one-run.json", "LoRA SFT vs mlx_lm.lora on an NVIDIA GPU (issue 11: P8), qwen3-4b bf16, "
     "the earlier single run per side (text and completions)", train),
    ("bfcl_inflight-cpu-small.json", "BFCL episodes in flight on this CPU (issue 12: P10), small preset",
     bfcl_inflight),
    ("bfcl_inflight-gpu-qwen3-0.6b.json", "BFCL episodes in flight on an NVIDIA GPU (issue 12: P10), qwen3-0.6b bf16",
     bfcl_inflight),
    ("eval_router.json", "Router quality on the project's labelled set (issue 13: eval-router)", eval_router),
    ("loop.json", "The closed loop: `tinygpt quickstart` on this CPU (issue 14)", loop),
    ("loop-notes.md", "The closed loop: what the numbers say (issue 14)", notes),
]


def main() -> None:
    lines = ["# Benchmarks", "", "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`. CPU numbers "
             "come from a shared 2-core machine: quote them as ratios measured side by side in one run; absolute "
             "times are quoted only from the GPU.", ""]
    for name, title, render in SECTIONS:
        path = RESULTS / name
        if "*" in name:  # one section over several results files
            found = sorted(RESULTS.glob(name))
            if found:
                lines += render([json.loads(f.read_text()) for f in found], title)
                continue
        if path.exists():
            text = path.read_text()
            lines += render(json.loads(text) if name.endswith(".json") else text, title)
        else:
            lines += [f"## {title}", "", f"Not measured yet (`{name}` missing).", ""]
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
