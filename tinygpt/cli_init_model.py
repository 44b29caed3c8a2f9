"""`tinygpt init-model DIR`: create a random-init model offline (Qwen3 architecture, or the family's with
`--vocab llama3` / `--vocab mistral`).

Writes only a new or empty directory; `--force` replaces only a model directory init-model made itself
(presets.check_target has the rule). Progress goes to stderr; the result line (or --json) to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager

from tinygpt.flags import SEED_MAX, int_in
from tinygpt.runtime.presets import DTYPES, PRESETS, STEPS, VOCABS, InitSpec, init_model

EPILOG = """examples:
  tinygpt init-model models/tiny                          tiny model, small BPE trained here (tests)
  tinygpt init-model models/q06 --preset qwen3-0.6b --vocab qwen
                                                          Qwen3-0.6B shape, real 151,936-token vocabulary
  tinygpt init-model models/q4 --preset qwen3-4b --vocab qwen --dtype bfloat16   (for GPUs)
  tinygpt init-model models/tiny-llama --vocab llama3     Llama architecture, Llama 3 vocabulary + 3.1 template
  tinygpt init-model models/tiny-mistral --vocab mistral  Mistral architecture, Nemo's tekken vocabulary + template

The real vocabularies come from package releases on PyPI, downloaded once into the user cache
(~/.cache/tinygpt): ggml-vocab-qwen2.gguf / ggml-vocab-llama-bpe.gguf and llama.cpp's chat templates from the
llama-cpp-python==0.3.36 sdist, tekken_240718.json from the mistral-common==1.12.0 wheel. Each model writes tool
calls in its family's format (docs/tool-formats.md). Weights are random: these models are for tests, benchmarks
and as a starting point for training, not for chatting.
"""


@contextmanager
def creation_progress(title: str, total: int):
    """Yield a `step(description)` callable: a rich bar on a terminal's stderr, plain numbered lines otherwise."""
    if not sys.stderr.isatty():
        count = 0

        def line(msg: str) -> None:
            nonlocal count
            count += 1
            sys.stderr.write(f"{title}: [{count}/{total}] {msg}\n")
            sys.stderr.flush()

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        job = bar.add_task(title, total=total)
        started = 0

        def step(msg: str) -> None:
            nonlocal started
            if started:
                bar.advance(job)
            started += 1
            bar.update(job, description=f"{title}: {msg}")

        yield step
        bar.update(job, completed=total, description=f"{title}: done")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt init-model", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="directory to create (must not exist or be empty, unless --force)")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny", help="model shape (default: tiny)")
    p.add_argument("--vocab", choices=VOCABS, default="bpe",
                   help="bpe: small BPE trained here; qwen, llama3, mistral: that family's real vocabulary, special "
                        "tokens and chat template (default: bpe)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weight dtype (default float32: MLX's CPU backend has no fast bf16 path)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="random seed for the weights (default 0)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing model directory that init-model created (never anything else)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    spec = InitSpec(preset=a.preset, vocab=a.vocab, dtype=a.dtype, seed=a.seed)
    with creation_progress("init-model", STEPS) as step:
        path = init_model(a.out_dir, spec, force=a.force, progress=step)
    config = json.loads((path / "config.json").read_text())
    if a.json:
        print(json.dumps({"path": str(path), "preset": a.preset, "vocab": a.vocab, "config": config}))
    else:
        print(f"created {a.preset} model ({a.vocab} vocab, {config['vocab_size']} ids, {a.dtype}) in {path}")
    return 0
