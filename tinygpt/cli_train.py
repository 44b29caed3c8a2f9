"""`tinygpt train`: fine-tune a model (LoRA, DoRA or full) on traces, rows or chat data; resume a run exactly.

Every flag is the kebab-case of a TrainConfig field (trainer/config.py) and may also be set in a TOML file given
with --config (keys = field names); flags win over the file, the file over the defaults. The resolved config is
printed at the start and saved as RUN/config.toml. Progress goes to stderr; the summary (or --json) to stdout.
Exit 0 when the run completes, 130 when Ctrl-C stopped it (after writing a checkpoint), 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields

from tinygpt.flags import float_in, int_in
from tinygpt.run_output import announcer, summary_text
from tinygpt.trainer.config import TrainConfig, flag

EPILOG = """examples:
  tinygpt quickstart --out runs/q                        record teacher + model episodes, export rows
  tinygpt train runs/q/data/rows.jsonl --out runs/spec   LoRA on every sampled assistant token (default)
  tinygpt train runs/q/traces --only-passed --out runs/rs      rejection sampling: checker-passing episodes
  tinygpt train chat.jsonl --method dora --rank 16 --num-layers 8 --keys self_attn.q_proj,self_attn.v_proj
  tinygpt train data/ --method full --learning-rate 1e-5 --schedule cosine --warmup 20 --iters 500
  tinygpt train rows.jsonl --schedule wsd --decay-fraction 0.2 --grad-accumulation 4 --grad-checkpoint
  tinygpt train --config runs/spec/config.toml --out runs/spec2 --seed 1    repeat a run with one change
  tinygpt train --resume runs/spec                      continue after Ctrl-C or a crash, exactly
  tinygpt train rows.jsonl --register my-spec            then: tinygpt chat --model my-spec
  tinygpt train rows.jsonl --teacher-logprobs rows.topk.safetensors --alpha 0.5 --temperature 2
                                                        distill (the sidecar: tinygpt distill teacher-logprobs)

data formats (one per file, detected from the first record):
  rows        {"input_ids": [...], "loss_mask": [...], "tokenizer_hash": ..., ...}  from traces-to-data;
              trained exactly as given (the tokenizer hash must match the model's)
  chat        {"messages": [...], "tools": [...]}   every assistant turn is trained (mlx-lm: only the last)
  completions {"prompt": ..., "completion": ...}     text  {"text": ...}  (all tokens trained)
  a directory with rows.jsonl, with train.jsonl (+ valid.jsonl), or with .atraj traces

outputs in the run directory: adapter/ (mlx-lm format: mlx_lm.generate --adapter-path RUN/adapter works),
checkpoints/, metrics.jsonl, loss.png, config.toml, data-report.json, run.json (status and summary).
Make a standalone model with `tinygpt fuse --model BASE --adapter RUN/adapter --out DIR`. See docs/trainer.md.
"""


def _type(f):
    meta, default = f.metadata, f.default if f.default is not MISSING else f.default_factory()
    if isinstance(default, bool) or isinstance(default, list) or meta["choices"]:
        return None
    if isinstance(default, int):
        return int_in(meta["lo"], meta["hi"]) if meta["lo"] is not None else int
    if isinstance(default, float):
        return float_in(meta["lo"], meta["hi"], lo_open=meta["lo_open"]) if meta["lo"] is not None else float
    return str


GROUPS = {"model": "data and model", "method": "what is trained", "optimizer": "optimization",
          "batch_size": "batches and sequences", "seed": "run", "teacher_logprobs": "distillation (offline)"}


def add_config_flags(p: argparse.ArgumentParser, cls=TrainConfig, groups: dict = GROUPS) -> None:
    """A flag per field of `cls` (the kebab-case of its name; None when not given), in `groups`' sections."""
    group = p
    for f in fields(cls):
        if f.name in groups:
            group = p.add_argument_group(groups[f.name])
        default = f.default if f.default is not MISSING else f.default_factory()
        shown = f" (default: {default})" if default not in ("", []) else ""
        kw = {"dest": f.name, "default": None, "help": f.metadata["help"] + shown}
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _type(f)
            if f.metadata["choices"]:
                kw["choices"] = f.metadata["choices"]
            kw["metavar"] = "A,B" if isinstance(default, list) else None
        group.add_argument(flag(f.name), **{k: v for k, v in kw.items() if v is not None or k == "default"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt train", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_arg", nargs="?", metavar="DATA", help="training data (same as --data)")
    add_config_flags(p)
    p.add_argument("--config", default=None, metavar="TOML", help="a TOML file of these settings (flags win)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in RUN from its latest checkpoint, with its saved config")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.data_arg is not None:
        if a.data is not None:
            p.error("give the data once: as DATA or as --data")
        a.data = a.data_arg
    from tinygpt.trainer import sft
    from tinygpt.trainer.config import resolve

    given = sft.config_flags(a)
    if a.resume:
        if a.config:
            p.error("--resume uses the run's saved config; --config cannot be combined with it")
        summary = sft.run(TrainConfig(), resume=a.resume, flags=given, announce=announcer("train"))
    else:
        cfg = resolve(given, a.config)
        if not cfg.model:
            from tinygpt.config import load_config
            from tinygpt.model_arg import model_path

            cfg.model = model_path(load_config())
        summary = sft.run(cfg, announce=announcer("train"))
    print(json.dumps(summary, indent=2) if a.json else
          summary_text(summary, command="train", artifact="adapter", use="chat"))
    return 0 if summary["status"] == "complete" else 130
