"""P8 (issue 11): LoRA SFT tokens/s and peak memory, tinygpt's trainer vs mlx-lm's, side by side.

Same model (a random-init preset: `small` on the CPU; the qwen3-0.6b and qwen3-4b shapes in bf16 on a GPU), same
data, LoRA rank, layers, batch size, max sequence length, optimizer and learning rate. Each run is its own process
(so peak memory is its own): tinygpt through `tinygpt.trainer.sft.run` (what `tinygpt train` runs), mlx-lm
through `mlx_lm.tuner.trainer.train` with its own datasets, batching and loss (what `mlx_lm.lora` runs).
Runs alternate (tinygpt, mlx-lm, tinygpt, ...) so both see the same machine load; the result is the median.
Each run trains two epochs over the same rows; the first epoch compiles every batch shape, the second is timed:
wall clock from the end of epoch 1 to the end of epoch 2, everything each trainer does per step included (mlx-lm
reports once per epoch, so its per-report printing happens once). Tokens are counted as mlx-lm counts them:
trained target tokens (its loss mask, our loss mask) of the second epoch, divided by that time. No row is longer
than --max-seq-length (the data is made so), so neither side truncates or splits. Peak memory:
mx.get_peak_memory() over the training loop (reset after the model is loaded and its LoRA layers made), reported
two ways: `peak_mb` over each side's whole call (tinygpt's includes its final checkpoint, which also writes the
optimizer state; mlx-lm's its final adapter save) and `steps_peak_mb` read at the end of the last training step,
before either side saves anything: the training steps' own peak, the like-for-like figure.
The machine is shared: the load average at the start and end is recorded, and tokens per CPU-second (process
CPU time of the timed epoch, all threads) is reported beside wall-clock tokens/s, as it moves less with load.
A third side, `mlx_lm_tuned`, is mlx-lm with two of its defaults changed — batches sorted by token count and no
allocator-cache flush after every step — to show how much of the difference those two account for.
Workloads: `text` — {"text"} records, every token trained, identical ids and supervision on both sides; and
`completions` — {"prompt", "completion"} with mlx-lm's --mask-prompt (prompt untrained; mlx-lm also trains the
newline after <|im_end|>, one token per row more than tinygpt, which only trains what the model samples).
Usage: python benchmarks/bench_train.py [--preset small] [--vocab bpe|qwen] [--dtype float32] [--rows 200] [--reps 3]
       [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def make_data(directory: Path, workload: str, rows: int, seed: int) -> Path:
    """Synthetic records of varied length from the embedded BPE corpus's sentences."""
    import tinygpt.runtime

    corpus = Path(tinygpt.runtime.__file__).parent / "assets" / "bpe_corpus.txt"  # the small BPE's own corpus
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(lines) for _ in range(rng.randint(lo, hi)))

    path = directory / f"{workload}.jsonl"
    with open(path, "w") as fh:
        for _ in range(rows):
            record = {"text": text(1, 8)} if workload == "text" else {"prompt": text(1, 5), "completion": text(1, 3)}
            fh.write(json.dumps(record) + "\n")
    return path


def worker_tinygpt(args) -> dict:
    import mlx.core as mx

    from tinygpt.trainer import sft
    from tinygpt.trainer.config import resolve
    from tinygpt.trainer.progress import TrainProgress

    stamps = {}
    report = TrainProgress.step

    def stamp(self, m):  # wall clock and mx peak at the end of each step (after the loop's bookkeeping for it)
        report(self, m)
        stamps[m.step] = (time.perf_counter(), time.process_time(), mx.get_peak_memory())

    TrainProgress.step = stamp
    work = tempfile.TemporaryDirectory(prefix="bench-train-")
    out = Path(work.name) / "run"
    cfg = resolve({"model": args.model, "data": args.data, "out": str(out), "rank": args.rank, "scale": 20.0,
                   "num_layers": args.num_layers, "batch_size": args.batch_size, "iters": args.steps,
                   "max_seq_length": args.max_seq_length, "optimizer": "adam", "learning_rate": 1e-5,
                   "valid_fraction": 0.0, "save_every": 0, "seed": 0})
    summary = sft.run(cfg)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    work.cleanup()
    half = args.steps // 2
    return {"tokens": sum(m["tokens"] for m in steps if "loss" in m and m["step"] > half),
            "seconds": stamps[args.steps][0] - stamps[half][0], "cpu_seconds": stamps[args.steps][1] - stamps[half][1],
            "peak_mb": summary["peak_memory_mb"], "steps_peak_mb": stamps[args.steps][2] / 2**20,
            "final_loss": summary["final_loss"],
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "mlx": mx.__version__}


def worker_mlx_lm(args) -> dict:
    import types

    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    class ByTokens(CacheDataset):
        """mlx-lm's CacheDataset, sorted by token count (its own itemlen is the record's number of keys)."""

        def itemlen(self, idx):
            return len(self[idx][0])

    model, tokenizer = load(args.model)
    records = [json.loads(line) for line in open(args.data)]
    raw = create_dataset(records, tokenizer, types.SimpleNamespace(mask_prompt="prompt" in records[0]))
    dataset = ByTokens(raw) if args.tuned else CacheDataset(raw)
    mx.random.seed(0)
    model.freeze()
    linear_to_lora_layers(model, args.num_layers, {"rank": args.rank, "dropout": 0.0, "scale": 20.0})
    reports = []

    class Record(TrainingCallback):
        def on_train_loss_report(self, info):  # at the end of each epoch (steps_per_report = one epoch)
            reports.append({**info, "at": time.perf_counter(), "cpu": time.process_time(),
                            "peak": mx.get_peak_memory()})

    work = tempfile.TemporaryDirectory(prefix="bench-train-mlx-")
    targs = TrainingArgs(batch_size=args.batch_size, iters=args.steps, steps_per_report=args.steps // 2,
                         steps_per_eval=10**9, steps_per_save=10**9, max_seq_length=args.max_seq_length,
                         adapter_file=str(Path(work.name) / "adapters.safetensors"),
                         clear_cache_threshold=2**62 if args.tuned else 0)
    mx.reset_peak_memory()
    train(model, optim.Adam(learning_rate=1e-5), dataset, None, targs, training_callback=Record())
    work.cleanup()
    first, second = reports  # the reports after epoch 1 and epoch 2
    return {"tokens": second["trained_tokens"] - first["trained_tokens"], "seconds": second["at"] - first["at"],
            "cpu_seconds": second["cpu"] - first["cpu"],
            "peak_mb": mx.get_peak_memory() / 2**20, "steps_peak_mb": second["peak"] / 2**20,
            "final_loss": second["train_loss"],
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def padded_tokens(lengths: list[int], args, chat: bool) -> dict:
    """Tokens each side pushes through the model per epoch, padding included: mlx_lm.lora batches rows in file
    order (CacheDataset.itemlen is a record's number of keys), tinygpt sorted by length."""
    bs, cap = args.batch_size, args.max_seq_length

    def ours(batch):  # inputs padded to a multiple of 32, at most cap - 1 (batches.pack)
        longest = max(batch) - 1
        return len(batch) * max(longest, min(-(-longest // 32) * 32, cap - 1))

    def theirs(batch):  # iterate_batches: 1 + a multiple of 32, at most cap, minus the shifted last column
        return len(batch) * (min(1 + 32 * -(-max(batch) // 32), cap) - 1)

    mine = sorted(n - 1 if chat else n for n in lengths)  # tinygpt's chat rows end at <|im_end|>, not after it
    return {"tinygpt": sum(ours(mine[i: i + bs]) for i in range(0, len(mine), bs)),
            "mlx_lm": sum(theirs(lengths[i: i + bs]) for i in range(0, len(lengths) - bs + 1, bs)),
            "mlx_lm_tuned": sum(theirs(sorted(lengths)[i: i + bs]) for i in range(0, len(lengths) - bs + 1, bs)),
            "real": sum(lengths)}


def run_worker(which: str, args, data: Path, model: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", which.removesuffix("_tuned"), "--data", str(data), "--model",
           str(model)] + (["--tuned"] if which.endswith("_tuned") else [])
    for flag in ("steps", "batch_size", "max_seq_length", "rank", "num_layers"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{which} worker failed:\n{r.stderr[-3000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    result["tokens_per_cpu_s"] = result["tokens"] / result["cpu_seconds"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=["tinygpt", "mlx_lm"], default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--vocab", default="bpe", choices=["bpe", "qwen"])
    p.add_argument("--dtype", default="float32", help="the model's weights (bfloat16 for the GPU shapes)")
    p.add_argument("--workloads", default="text,completions")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--steps", type=int, default=0, help="(workers) steps: two epochs")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-seq-length", type=int, default=512)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--num-layers", type=int, default=-1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--tuned", action="store_true", help="(mlx-lm worker) sort by tokens, never flush the cache")
    p.add_argument("--sides", default="tinygpt,mlx_lm,mlx_lm_tuned",
                   help="mlx_lm_tuned: mlx-lm with its batches sorted by token count and no per-step cache flush")
    args = p.parse_args()
    import tinygpt  # noqa: F401  (OpenBLAS before mlx)

    if args.worker:
        result = (worker_tinygpt if args.worker == "tinygpt" else worker_mlx_lm)(args)
        print(json.dumps(result))
        return
    sys.path.insert(0, str(HERE))
    from machine import machine_info

    from tinygpt.runtime.presets import InitSpec, init_model

    holder = tempfile.TemporaryDirectory(prefix="bench-train-")
    work = Path(holder.name)
    model = init_model(work / "model", InitSpec(preset=args.preset, vocab=args.vocab, dtype=args.dtype))
    results = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average_at_start": os.getloadavg(),
               "model_config": {k: v for k, v in json.loads((model / "config.json").read_text()).items()
                                if k in ("hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")},
               "preset": args.preset, "vocab": args.vocab,
               "settings": {k: getattr(args, k) for k in ("batch_size", "max_seq_length", "rank", "num_layers", "rows",
                                                           "reps")},
               "optimizer": "adam, lr 1e-5, LoRA scale 20, dropout 0",
               "counting": "trained target tokens per side, each as its own loss mask counts them: mlx-lm's mask "
                           "also covers one padding target past each row's end (and, on completions, the newline "
                           "after <|im_end|>), so it counts 1-2 tokens per row more than tinygpt",
               "workloads": {}}
    if args.rows % args.batch_size:
        raise SystemExit("--rows must be a multiple of --batch-size (the same batches on both sides)")
    args.steps = 2 * args.rows // args.batch_size
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(model)
    for workload in args.workloads.split(","):
        data = make_data(work, workload, args.rows, seed=0)
        lengths = [len(tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}, {
            "role": "assistant", "content": r["completion"]}])) if "prompt" in r else len(tokenizer.encode(r["text"])) + 1
            for r in map(json.loads, data.read_text().splitlines())]
        if max(lengths) > args.max_seq_length:
            raise SystemExit(f"a {workload} row has {max(lengths)} tokens > --max-seq-length {args.max_seq_length}")
        sides = args.sides.split(",")
        runs = {side: [] for side in sides}
        for rep in range(args.reps):
            for which in sides if rep % 2 == 0 else sides[::-1]:
                runs[which].append(run_worker(which, args, data, model))
                print(workload, which, json.dumps(runs[which][-1]), file=sys.stderr, flush=True)
        med = {w: {k: statistics.median(r[k] for r in rs)
                   for k in ("tokens_per_s", "tokens_per_cpu_s", "peak_mb", "steps_peak_mb", "maxrss_mb")} for w, rs in runs.items()}
        tuned = {"tuned_tokens_per_s_ratio": med["tinygpt"]["tokens_per_s"] / med["mlx_lm_tuned"]["tokens_per_s"],
                 "tuned_peak_memory_ratio": med["tinygpt"]["peak_mb"] / med["mlx_lm_tuned"]["peak_mb"]} \
            if "mlx_lm_tuned" in med else {}
        pairs = {side: [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["tinygpt"], runs[side])]
                 for side in sides if side != "tinygpt"}  # each rep's runs are back to back: same machine load
        results["workloads"][workload] = {
            "rows": args.rows, "tokens_per_row": {"min": min(lengths), "median": statistics.median(lengths),
                                                  "max": max(lengths)}, "steps": args.steps,
            "padded_tokens_per_epoch": padded_tokens(lengths, args, chat=workload != "text"),
            "runs": runs, "median": med,
            "tokens_per_s_ratio": med["tinygpt"]["tokens_per_s"] / med["mlx_lm"]["tokens_per_s"],
            "tokens_per_s_ratio_of_pairs": {side: {"median": statistics.median(r), "each": r} for side, r in pairs.items()},
            "tokens_per_cpu_s_ratio": med["tinygpt"]["tokens_per_cpu_s"] / med["mlx_lm"]["tokens_per_cpu_s"],
            "peak_memory_ratio": med["tinygpt"]["peak_mb"] / med["mlx_lm"]["peak_mb"],
            "steps_peak_memory_ratio": med["tinygpt"]["steps_peak_mb"] / med["mlx_lm"]["steps_peak_mb"], **tuned}
        print(workload, json.dumps(results["workloads"][workload]["median"]),
              f"ratio {results['workloads'][workload]['tokens_per_s_ratio']:.3f}", file=sys.stderr, flush=True)
    holder.cleanup()
    results["load_average_at_end"] = os.getloadavg()
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
