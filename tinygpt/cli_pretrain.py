"""`tinygpt pretrain`: train a small model from random weights on a text corpus; resume a run exactly.

Every flag is the kebab-case of a PretrainConfig field (trainer/pretrain_config.py) and may also be set in a TOML
file given with --config (keys = field names); flags win over the file, the file over the defaults. The resolved
config is printed at the start and saved as RUN/config.toml. Progress goes to stderr; the summary (or --json) to
stdout. Exit 0 when the run completes, 130 when Ctrl-C stopped it (after writing a checkpoint), 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields

from tinygpt.cli_train import add_config_flags
from tinygpt.run_output import announcer, summary_text
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
        summary = pretrain.run(PretrainConfig(), resume=a.resume, flags=given, announce=announcer("pretrain"))
    else:
        summary = pretrain.run(resolve(given, a.config), announce=announcer("pretrain"))
    print(json.dumps(summary, indent=2) if a.json else
          summary_text(summary, command="pretrain", artifact="model", use="generate", parameters=True))
    return 0 if summary["status"] == "complete" else 130
