"""`tinygpt build-base --out DIR`: make the embedded tool world's base model from nothing, in one command.

Three steps, each the documented command it names, each skipped when its output is already complete (so a
re-run after Ctrl-C or a crash continues: the pretraining resumes exactly from its last checkpoint):
  1. corpus     gold episodes of the world's TRAIN tasks as chat records (evals/world_corpus.py), DIR/corpus/
  2. tokenizer  `tinygpt train-tokenizer DIR/corpus --vocab-size V --out DIR/tokenizer`
  3. pretrain   `tinygpt pretrain DIR/corpus --tokenizer DIR/tokenizer --out DIR/pretrain ...` (all weights, from
                random init, warmup-stable-decay)
then, with `--eval-tasks N`, the finished model plays the first N held-out tasks of every domain through the
agent loop (greedy, under the tool grammar) and DIR/pretrain/model/MODEL_CARD.md records the data, the command,
the steps, the time, the losses and those pass rates. The embedded default model (runtime/assets/world-base) was
made with this command's defaults on a GPU (the card says where and how long). Writes only inside DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tinygpt.flags import float_in, int_in

DOMAINS = ("fileops", "calendar", "shop")
EPILOG = """examples:
  tinygpt build-base --out runs/world-base                      the defaults: the embedded model's recipe
  tinygpt build-base --out runs/b2 --fileops 600 --iters 2000 --layers 6 --eval-tasks 100

The corpus takes the LAST tasks of each train split; `tinygpt retrain` and `tinygpt quickstart` take their
rollouts from the FIRST ones, so a specialist's tasks are ones the base never saw (where the two counts together
stay within the split: fileops has 1500 train tasks, calendar and shop 3000).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt build-base", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the build directory (created; a re-run continues it)")
    for name, n in (("fileops", 1200), ("calendar", 1500), ("shop", 3000)):
        p.add_argument(f"--{name}", type=int_in(0), default=n, help=f"{name} train tasks in the corpus (default {n})")
    p.add_argument("--small-talk", type=int_in(0), default=300, help="tool-less greetings in the corpus (default 300)")
    p.add_argument("--vocab-size", type=int_in(266), default=4096, help="BPE size, special tokens included "
                   "(default 4096; a small world may run out of merges before it: the result says the size reached)")
    p.add_argument("--layers", type=int_in(1), default=4)
    p.add_argument("--hidden-size", type=int_in(16), default=256)
    p.add_argument("--seq-length", type=int_in(16), default=2048)
    p.add_argument("--batch-size", type=int_in(1), default=16)
    p.add_argument("--iters", type=int_in(1), default=2000)
    p.add_argument("--learning-rate", type=float_in(0, lo_open=True), default=2e-3)
    p.add_argument("--warmup", type=int_in(0), default=100)
    p.add_argument("--grad-clip", type=float_in(0), default=0.0,
                   help="clip gradients to this global norm (default 0: off, as the shipped model was trained; 1.0 "
                        "is the usual value — bases with less calendar data spiked without it)")
    p.add_argument("--seed", type=int_in(0), default=0)
    p.add_argument("--eval-tasks", type=int_in(0), default=0,
                   help="held-out tasks per domain to measure the model on at the end (default 0: none)")
    p.add_argument("--in-flight", type=int_in(1), default=16, help="episodes played at once in that eval")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    from tinygpt import cli_pretrain, cli_train_tokenizer

    out = Path(a.out)
    corpus, tok, run = out / "corpus", out / "tokenizer", out / "pretrain"
    mix = {"fileops": a.fileops, "calendar": a.calendar, "shop": a.shop}
    started = time.time()
    if not (corpus / "mix.json").exists():
        from tinygpt.evals.world_corpus import write_corpus

        say(f"1/3 corpus: {mix} train tasks + {a.small_talk} small talk -> {corpus}")
        counts = write_corpus(corpus / "world.jsonl", {k: v for k, v in mix.items() if v}, small_talk_records=a.small_talk,
                              seed=a.seed)
        (corpus / "mix.json").write_text(json.dumps(counts, indent=2) + "\n")
    else:
        say(f"1/3 corpus: reusing {corpus}")
    if not (tok / "tinygpt.json").exists():
        say(f"2/3 tokenizer: tinygpt train-tokenizer {corpus / 'world.jsonl'} --vocab-size {a.vocab_size} --out {tok}")
        cli_train_tokenizer.main([str(corpus / "world.jsonl"), "--vocab-size", str(a.vocab_size), "--out", str(tok)])
    else:
        say(f"2/3 tokenizer: reusing {tok}")
    flags = ["--layers", str(a.layers), "--hidden-size", str(a.hidden_size), "--heads", "4", "--kv-heads", "2",
             "--seq-length", str(a.seq_length), "--batch-size", str(a.batch_size), "--iters", str(a.iters),
             "--learning-rate", str(a.learning_rate), "--warmup", str(a.warmup), "--grad-clip", str(a.grad_clip),
             "--seed", str(a.seed),
             "--val-every", "200", "--save-every", "200"]
    run_json = run / "run.json"
    status = json.loads(run_json.read_text()).get("status") if run_json.exists() else None
    if status == "complete":
        say(f"3/3 pretrain: reusing {run}")
    elif run.exists() and (run / "checkpoints").exists():
        say(f"3/3 pretrain: tinygpt pretrain --resume {run}")
        cli_pretrain.main(["--resume", str(run)])
    else:
        command = [str(corpus / "world.jsonl"), "--tokenizer", str(tok), "--out", str(run), *flags]
        say("3/3 pretrain: tinygpt pretrain " + " ".join(command))
        cli_pretrain.main(command)
    model = run / "model"
    results = evaluate(model, a.eval_tasks, a.in_flight, out / "evals") if a.eval_tasks else {}
    write_card(model, mix=json.loads((corpus / "mix.json").read_text()), flags=flags, run=run, results=results,
               seconds=time.time() - started, argv=argv)
    say(f"model: {model} (card: {model / 'MODEL_CARD.md'})")
    return 0


def say(line: str) -> None:
    sys.stderr.write(f"[build-base] {line}\n")
    sys.stderr.flush()


def evaluate(model: Path, n: int, in_flight: int, out: Path) -> dict:
    """Pass rate (with a 95% Wilson interval) of `model` on the first `n` held-out tasks of every domain."""
    from tinygpt.config import Config
    from tinygpt.evals.runner import RunSettings, run_suite
    from tinygpt.evals.stats import wilson
    from tinygpt.evals.suite import load_suite, select_tasks
    from tinygpt.model_arg import load_engine

    engine = load_engine(Config(model=str(model)))
    results = {}
    for name in DOMAINS:
        suite = load_suite(name)
        tasks = select_tasks(suite, "heldout", limit=n)
        say(f"eval: {name}, {len(tasks)} held-out tasks")
        _, rows = run_suite(engine, suite, tasks, RunSettings(in_flight=in_flight, max_tokens=128), out,
                            model=str(model), split="heldout")
        passed = sum(r.passed for r in rows)
        low, high = wilson(passed, len(rows))
        results[name] = {"passed": passed, "tasks": len(rows), "rate": passed / len(rows), "ci95": [low, high]}
        say(f"eval: {name} {passed}/{len(rows)} = {passed / len(rows):.1%} [{low:.1%}, {high:.1%}]")
    return results


def write_card(model: Path, *, mix: dict, flags: list[str], run: Path, results: dict, seconds: float,
               argv: list[str]) -> None:
    """MODEL_CARD.md in the model directory: what it is, its data, how it was made, how it scores."""
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [m for m in metrics if "loss" in m and "val_loss" not in m]
    val = [m for m in metrics if "val_loss" in m]
    config = json.loads((model / "config.json").read_text())
    params = parameter_count(model)
    lines = [
        "# world-base: the embedded tool world's base model", "",
        "A small general model of tinygpt's embedded tool world (a file system, a calendar and a shop), pretrained "
        "from random weights by tinygpt's own trainer on gold episodes of the world's train tasks. It calls tools "
        "in the Hermes format of tinygpt's chat template and answers short greetings. It knows nothing outside this "
        "world.", "",
        "## Made by", "", "```", "tinygpt build-base " + " ".join(argv), "```", "",
        f"= corpus, then `tinygpt train-tokenizer`, then `tinygpt pretrain ... {' '.join(flags)}`; "
        f"{seconds / 60:.1f} minutes in all on {machine_line()}.", "",
        "## Data", "",
        "Chat records of gold episodes (real tool results) of the last tasks of each domain's train split (never "
        "a validation or held-out task; `tinygpt retrain` takes its rollouts from the first ones), plus tool-less "
        "small talk: "
        + ", ".join(f"{k} {v}" for k, v in mix.items()) + ".", "",
        "## Model", "",
        f"mlx-lm `{config.get('model_type')}`: {config.get('num_hidden_layers')} layers, hidden "
        f"{config.get('hidden_size')}, {config.get('num_attention_heads')} heads "
        f"({config.get('num_key_value_heads')} key/value), vocabulary {config.get('vocab_size')}, "
        f"{params:,} parameters, float32, tied embeddings.", "",
        "## Training", "",
        f"{len(train) and train[-1].get('step')} steps; loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}"
        + (f"; validation loss {val[-1]['val_loss']:.3f}" if val else "") + ".", "",
    ]
    if results:
        lines += ["## Measured", "", "Greedy, under the tool grammar, `tinygpt eval`'s runner, the first held-out tasks "
                  "of each domain:", "", "| domain | passed | rate | 95% interval |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['passed']}/{v['tasks']} | {v['rate']:.1%} | {v['ci95'][0]:.1%}-{v['ci95'][1]:.1%} |"
                  for k, v in results.items()]
        lines.append("")
    (model / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
    (model / "card.json").write_text(json.dumps({"mix": mix, "flags": flags, "seconds": seconds,
                                                  "results": results, "argv": argv}, indent=2) + "\n")


def parameter_count(model: Path) -> int:
    import mlx.core as mx

    return sum(int(v.size) for f in sorted(model.glob("*.safetensors")) for v in mx.load(str(f)).values())


def machine_line() -> str:
    import os
    import platform

    import mlx.core as mx

    device = mx.default_device()
    name = mx.device_info().get("device_name", "") if device.type == mx.DeviceType.gpu else ""
    return f"{name or platform.processor() or platform.machine()} ({device}, {os.cpu_count()} CPU cores, MLX {mx.__version__})"
