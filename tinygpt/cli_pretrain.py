"""`tinygpt pretrain`: train a small model from random weights on a text corpus; resume a run exactly.

Every flag is the kebab-case of a PretrainConfig field (trainer/pretrain_config.py) and may also be set in a TOML
file given with --config (keys = field names); flags win over the file, the file over the defaults. The resolved
config is printed at the start and saved as RUN/config.toml. Progress goes to stderr; the summary (or --json) to
stdout. Exit 0 when the run completes, 130 when Ctrl-C stopped it (after writing a checkpoint), 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from tinygpt.cli_train import add_config_flags
from tinygpt.trainer.pretrain_config import PretrainConfig

EPILOG = """examples:
  tinygpt train-tokenizer corpus/ --vocab-size 8192 --out tokenizers/mine     a BPE with chat + tool tokens
  tinygpt pretrain corpus/ --tokenizer tokenizers/mine --out runs/base        the small preset, qwen3, WSD
  tinygpt pretrain corpus/ --tokenizer tokenizers/mine --layers 8 --hidden-size 512 --heads 8 --kv-heads 2 \\
      --seq-length 1024 --iters 5000 --warmup 200 --batch-size 16 --grad-accumulation 4 --out runs/base8
  tinygpt pretrain books.txt --tokenizer tokenizers/mine --arch llama --preset tiny --valid-data held-out.txt
  tinygpt pretrain --config runs/base/config.toml --out runs/base2 --seed 1   repeat a run with one change
  tinygpt pretrain --resume runs/base                  continue after Ctrl-C or a crash, exactly
  tinygpt pretrain corpus/ --tokenizer tokenizers/mine --register my-base   then: tinygpt generate --model my-base

corpus: .txt / .md files (one document each), .jsonl files ({"text": ...}, or chat {"messages", "tools"} and
{"prompt", "completion"} records rendered with the tokenizer's chat template), or directories of them.
Documents are tokenized, each followed by <|endoftext|> (else the tokenizer's EOS), and packed into windows of
--seq-length tokens: every token is trained, no padding. The schedule is warmup-stable-decay by default.

outputs in the run directory: model/ (a standalone mlx-lm model: mlx_lm.load, tinygpt generate/chat/serve
--model RUN/model), checkpoints/, metrics.jsonl, loss.png, config.toml, data-report.json, run.json.
Fine-tune the result with `tinygpt train --model RUN/model`. See docs/trainer.md, "Pretraining".
"""

GROUPS = {"data": "corpus and tokenizer", "arch": "model shape", "optimizer": "optimization",
          "batch_size": "batches and sequences", "seed": "run"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt pretrain", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_arg", nargs="*", metavar="DATA", help="corpus files or directories (same as --data)")
    add_config_flags(p, PretrainConfig, GROUPS)
    p.add_argument("--config", default=None, metavar="TOML", help="a TOML file of these settings (flags win)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in RUN from its latest checkpoint, with its saved config")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


def _announce(cfg: PretrainConfig, run) -> None:
    from tinygpt.trainer.config import to_toml

    sys.stderr.write(f"tinygpt pretrain -> {run}\n" + "".join(f"  {line}\n" for line in to_toml(cfg).splitlines()))
    sys.stderr.flush()


def _human(s: dict) -> str:
    if s.get("already_complete"):
        return f"{s['run_dir']} is already complete; nothing was run or rewritten. Its summary:\n" + \
            _human({k: v for k, v in s.items() if k != "already_complete"})
    loss = f"loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}" if s["final_loss"] is not None else "no steps"
    val = f" (val {s['val_loss']:.4f})" if s["val_loss"] is not None else ""
    speed = f", {s['tokens_per_s']:,.0f} tok/s" if s["tokens_per_s"] else ""
    head = (f"{s['status']}: step {s['step']}/{s['iters']} in {s['seconds']:.1f} s, {loss}{val}{speed}, "
            f"{s['total_params']:,} parameters, peak {s['peak_memory_mb']:,.0f} MB")
    if s["status"] != "complete":
        return head + f"\ncontinue with: tinygpt pretrain --resume {s['run_dir']}"
    tail = f"\nmodel: {s['model']}\nloss curve: {s['loss_png']}"
    if s.get("registered"):
        tail += f"\nregistered as {s['registered']}: tinygpt generate --model {s['registered']}"
    return head + tail


def main(argv: list[str]) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.data_arg:
        if a.data is not None:
            p.error("give the corpus once: as DATA or as --data")
        a.data = a.data_arg
    from tinygpt.trainer import pretrain
    from tinygpt.trainer.pretrain_config import resolve

    given = {f.name: getattr(a, f.name, None) for f in fields(PretrainConfig)}
    if a.resume:
        if a.config:
            p.error("--resume uses the run's saved config; --config cannot be combined with it")
        summary = pretrain.run(PretrainConfig(), resume=a.resume, flags=given, announce=_announce)
    else:
        summary = pretrain.run(resolve(given, a.config), announce=_announce)
    print(json.dumps(summary, indent=2) if a.json else _human(summary))
    return 0 if summary["status"] == "complete" else 130
