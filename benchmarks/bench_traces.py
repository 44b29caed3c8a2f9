"""P9: traces-to-data throughput on synthetic episodes, dedupe included.

Generates N synthetic tool-use episodes once with the real Recorder (cached under bench-out/), with planted exact
and near duplicates, then runs `traces_to_data` (filter + exact + MinHash-LSH near dedupe + rows + chat) several
times and writes the median episodes/s and machine info to benchmarks/results/traces.json. Target: >= 5000/s.
Usage: python benchmarks/bench_traces.py [--episodes 100000] [--runs 3] [--workers 0]
"""
import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasketch
import msgspec
import numpy as np

import tinygpt  # noqa: F401  (fast BLAS for MLX; harmless here)
from tinygpt.traces.atraj import Header, Reward, Sampling, ToolSpec, Verdict
from tinygpt.traces.recorder import Recorder
from tinygpt.traces.to_data import ExportConfig, traces_to_data

ROOT = Path(__file__).resolve().parents[1]
VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "ru", "so", "ta", "vi", "we", "zu") for b in range(300)]
SYSTEM = "You are a file system agent. Use the tools to answer. " * 20
TOOLS = [ToolSpec(name=n, description=f"{n} a path", parameters={"type": "object"}) for n in ("ls", "cat", "mv", "cd")]


def _words(rng: random.Random, n: int) -> list[str]:
    return rng.choices(VOCAB, k=n)


def _episode_plan(rng: random.Random) -> dict:
    """The content of one episode: a task text and 2-4 (assistant text, tool, result) steps."""
    steps = [
        (_words(rng, rng.randint(20, 60)), rng.choice(TOOLS).name, _words(rng, rng.randint(20, 80)))
        for _ in range(rng.randint(2, 4))
    ]
    return {"task": _words(rng, rng.randint(30, 60)), "steps": steps, "answer": _words(rng, rng.randint(10, 40))}


def _near_copy(rng: random.Random, plan: dict) -> dict:
    """The same episode with about 3% of the task words changed (Jaccard of 5-grams stays well above 0.8)."""
    task = list(plan["task"])
    for _ in range(max(1, len(task) // 40)):
        task[rng.randrange(len(task))] = rng.choice(VOCAB)
    return {**plan, "task": task}


def _record(directory: Path, index: int, plan: dict, rng: random.Random) -> None:
    header = Header(
        episode_id=f"ep{index:06d}", task_id=f"task{index}", split="train", created_at=time.time(), model="tiny",
        model_fingerprint="fp0", tokenizer_hash="tok0", chat_template_hash="tpl0", tools=TOOLS, tools_hash="th0",
        sampling=Sampling(temperature=0.7, seed=index),
    )
    ids_rng = np.random.default_rng(index)
    ids = lambda n: ids_rng.integers(0, 151_000, n).tolist()  # noqa: E731
    with Recorder(directory, header, fsync="none") as rec:
        system, user = ids(300), ids(len(plan["task"]) + 5)
        rec.message("system", SYSTEM, system)
        rec.message("user", " ".join(plan["task"]), user)
        prompt = system + user + ids(3)
        for number, (said, tool, result) in enumerate(plan["steps"]):
            out = ids(len(said) + 12)
            rec.model_call(
                prompt_token_ids=prompt, output_token_ids=out, logprobs=[-0.5] * len(out), text=" ".join(said),
                tool_calls=[{"id": f"c{number}", "name": tool, "arguments": {"path": said[0]}}],
                finish_reason="tool_calls", latency_s=0.2,
            )
            result_ids = ids(len(result) + 6)
            rec.tool_result(call_id=f"c{number}", name=tool, content=" ".join(result), token_ids=result_ids)
            prompt = result_ids + ids(3)
        out = ids(len(plan["answer"]) + 2)
        rec.model_call(prompt_token_ids=prompt, output_token_ids=out, logprobs=[-0.3] * len(out),
                       text=" ".join(plan["answer"]), finish_reason="stop", latency_s=0.1)
        passed = rng.random() < 0.8
        rec.end(Reward(value=float(passed), source="checker"), Verdict(passed=passed, checker="bench"))


def make_corpus(directory: Path | None, episodes: int, seed: int = 0) -> dict:
    """Write `episodes` episodes: ~5% exact and ~10% near copies of earlier distinct ones.

    Returns the ids of the planted copies. With `directory` None nothing is written (same plan, same ids).
    """
    rng = random.Random(seed)
    if directory is not None:
        directory.mkdir(parents=True)
    plans: list[dict] = []
    planted: dict[str, list[str]] = {"exact": [], "near": []}
    for index in range(episodes):
        roll = rng.random()
        if plans and roll < 0.05:
            plan = rng.choice(plans)
            planted["exact"].append(f"ep{index:06d}")
        elif plans and roll < 0.15:
            plan = _near_copy(rng, rng.choice(plans))
            planted["near"].append(f"ep{index:06d}")
        else:
            plan = _episode_plan(rng)
            plans.append(plan)
        if directory is not None:
            _record(directory, index, plan, rng)
        else:
            rng.random()  # what _record draws
    return planted


def _corpus(episodes: int) -> tuple[Path, dict]:
    directory = ROOT / "bench-out" / f"traces-{episodes}"
    if not (directory / "episodes").is_dir():
        shutil.rmtree(directory, ignore_errors=True)
        started = time.perf_counter()
        make_corpus(directory / "episodes", episodes)
        print(f"generated {episodes} episodes in {time.perf_counter() - started:.0f} s", flush=True)
    return directory / "episodes", make_corpus(None, episodes)


def _precision_recall(out: Path, episodes: int, planted: dict) -> dict:
    """Dedupe quality against the planted copies (nothing else is dropped in this benchmark's config)."""
    kept = {msgspec.json.decode(line)["episode_id"] for line in (out / "chat.jsonl").read_bytes().splitlines()}
    removed = {f"ep{i:06d}" for i in range(episodes)} - kept
    copies = set(planted["exact"]) | set(planted["near"])
    hit = len(removed & copies)
    return {"planted_exact": len(planted["exact"]), "planted_near": len(planted["near"]), "removed": len(removed),
            "precision": round(hit / max(len(removed), 1), 4), "recall": round(hit / max(len(copies), 1), 4)}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
        "numpy": np.__version__, "datasketch": datasketch.__version__, "msgspec": msgspec.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "traces.json")
    args = parser.parse_args(argv)
    corpus, planted = _corpus(args.episodes)
    config = ExportConfig(workers=args.workers)
    runs = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(dir=ROOT / "bench-out") as out:
            load, cpu, started = os.getloadavg()[0], _cpu(), time.perf_counter()
            report = traces_to_data([corpus], out, config)
            seconds, cpu = time.perf_counter() - started, _cpu() - cpu
            sizes = {p.name: p.stat().st_size for p in Path(out).iterdir()}
            quality = _precision_recall(Path(out), args.episodes, planted)
        runs.append({"seconds": round(seconds, 2), "episodes_per_s": round(args.episodes / seconds),
                     "cpu_us_per_episode": round(cpu / args.episodes * 1e6), "load_avg_1min_before": load,
                     "load_avg_1min_after": os.getloadavg()[0], "dedupe": quality,
                     "report": msgspec.to_builtins(report), "output_bytes": sizes})
        print(f"run {run + 1}: {seconds:.2f} s, {args.episodes / seconds:.0f} episodes/s, "
              f"cpu {cpu / args.episodes * 1e6:.0f} us/episode, load {load:.2f} -> {os.getloadavg()[0]:.2f}, "
              f"exact_dup={report.exact_dup} near_dup={report.near_dup} written={report.written}, "
              f"precision {quality['precision']} recall {quality['recall']}", flush=True)
    median = statistics.median(r["episodes_per_s"] for r in runs)
    cpu_median = statistics.median(r["cpu_us_per_episode"] for r in runs)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "traces-to-data", "episodes": args.episodes, "target_episodes_per_s": 5000,
        "median_episodes_per_s": median, "passed": median >= 5000,
        "median_cpu_us_per_episode": cpu_median,
        "cpu_bound_episodes_per_s_on_all_cores": round((os.cpu_count() or 1) / (cpu_median / 1e6)),
        "main_process_peak_rss_mib": round(peak_rss_mib),
        "config": msgspec.to_builtins(config.__dict__), "runs": runs, "machine": _machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median {median} episodes/s (target 5000) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
