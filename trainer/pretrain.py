"""A pretraining run from random weights, start to finish: tokenizer, corpus, random-init model, the loop, outputs.

`run(cfg)` loads the tokenizer, reads and tokenizes the corpus (packing.py: documents + separator, fixed-length
windows, every token trained), builds an mlx-lm model of the chosen shape with random weights
(runtime/presets.random_model), and trains all its weights in the one loop with the SFT run's machinery
(sft.run_steps: checkpoints, metrics, progress, Ctrl-C; sft.restore and sft.resumed_config for `--resume`, which
continues the same run exactly). Bad input (tokenizer, corpus, shape, --out) is refused before anything is
written. The result is RUN/model/: a standalone mlx-lm model directory (config.json, safetensors, the tokenizer's
files byte for byte, tinygpt.json) that `mlx_lm.load` and the runtime load; `--register` adds it to the store.
Checkpoints hold every weight (checkpoint.py's adapters.safetensors; its adapter_config.json carries the model
config). Not here: argument parsing (tinygpt/cli_pretrain.py), the loop (loop.py), BPE (tokenizer_train.py).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinygpt.trainer import run_dir
from tinygpt.trainer.config import to_toml
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.pretrain_config import PretrainConfig, check_shape

KIND = "pretrain"
TRAINED_BY = "tinygpt pretrain"
ARCH_OF = {"qwen3": "qwen", "llama": "llama3"}  # presets.ARCHITECTURES entry whose rope theta each uses


@dataclass
class Data:
    train: list
    valid: list
    report: dict


def load_tokenizer(name: str):
    """The (fast) tokenizer of a tokenizer directory, model directory or hub id; TrainError if there is none."""
    if not name:
        raise TrainError("--tokenizer is required: a directory from `tinygpt train-tokenizer DATA --out DIR`, or a "
                         "model directory whose tokenizer to use")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"--tokenizer {name}: no tokenizer could be loaded there ({first}); make one with "
                         "`tinygpt train-tokenizer`") from exc
    if not getattr(tok, "is_fast", False):
        raise TrainError(f"--tokenizer {name}: a slow (Python) tokenizer; pretraining needs a tokenizer.json")
    return tok


def model_config(cfg: PretrainConfig, tokenizer) -> dict:
    """The mlx-lm / Hugging Face config.json of the model to pretrain: the preset's shape with the flags' overrides,
    the tokenizer's size and special ids (EOS: the template's end-of-turn tokens, then the document separator)."""
    from tinygpt.runtime.presets import ARCHITECTURES, PRESETS
    from tinygpt.runtime.tool_formats import detect
    from tinygpt.trainer.packing import separator_id

    shape = dict(PRESETS[cfg.preset])
    if cfg.layers:
        shape["num_hidden_layers"] = cfg.layers
    if cfg.hidden_size:
        shape["hidden_size"] = cfg.hidden_size
        shape["intermediate_size"] = 3 * cfg.hidden_size
    if cfg.intermediate_size:
        shape["intermediate_size"] = cfg.intermediate_size
    if cfg.heads:
        shape["num_attention_heads"] = shape["num_key_value_heads"] = cfg.heads
    if cfg.kv_heads:
        shape["num_key_value_heads"] = cfg.kv_heads
    if cfg.head_dim:
        shape["head_dim"] = cfg.head_dim
    elif cfg.hidden_size or cfg.heads:
        shape["head_dim"] = shape["hidden_size"] // shape["num_attention_heads"]
    if shape["head_dim"] < 2 or shape["head_dim"] % 2:
        raise TrainError(f"head size {shape['head_dim']} (hidden {shape['hidden_size']} / "
                         f"{shape['num_attention_heads']} heads) must be even and at least 2 for rotary embeddings; "
                         "set --head-dim or change --heads")
    if shape["num_attention_heads"] % shape["num_key_value_heads"]:
        raise TrainError(f"{shape['num_key_value_heads']} key/value heads must divide "
                         f"{shape['num_attention_heads']} attention heads; set --kv-heads")
    eos = [i for t in detect(tokenizer.chat_template).stop_tokens
           if (i := tokenizer.convert_tokens_to_ids(t)) is not None and i != tokenizer.unk_token_id]
    for extra in (tokenizer.eos_token_id, separator_id(tokenizer)):
        if extra is not None and extra not in eos:
            eos.append(extra)
    model_type, _, theta = ARCHITECTURES[ARCH_OF[cfg.arch]]
    arch = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM"}[model_type]
    return dict(architectures=[arch], model_type=model_type, vocab_size=len(tokenizer),
                rms_norm_eps=1e-6 if model_type == "qwen3" else 1e-5, rope_theta=theta,
                max_position_embeddings=cfg.max_position_embeddings or cfg.seq_length,
                tie_word_embeddings=cfg.tie_embeddings, torch_dtype="float32", bos_token_id=tokenizer.bos_token_id,
                eos_token_id=eos, **shape)


def load_corpus(cfg: PretrainConfig, tokenizer) -> Data:
    """The packed training and validation windows (packing.py), with a report of what was read."""
    from tinygpt.trainer.corpus import corpus_files, documents, total_bytes
    from tinygpt.trainer.packing import check_enough, pack, separator_id, split, tokenize
    from tinygpt.trainer.progress import WorkProgress

    sep = separator_id(tokenizer)

    def stream(paths: list[str], flag: str):
        files = corpus_files(paths, flag)
        with WorkProgress(f"tokenizing {flag}", total_bytes(files)) as progress:
            ids, count = tokenize(documents(files, tokenizer.chat_template), tokenizer, sep, progress)
        if not count:
            raise TrainError(f"{flag} {', '.join(paths)}: no text in the corpus (every document is empty)")
        check_enough(ids, cfg.seq_length, f"{flag} {', '.join(paths)}")
        return ids, count, files

    ids, docs, files = stream(cfg.data, "--data")
    windows = pack(ids, cfg.seq_length, "data")
    report = {"files": [str(f) for f in files], "documents": docs, "tokens": int(len(ids)), "separator": sep,
              "seq_length": cfg.seq_length, "windows": len(windows),
              "dropped_tokens": int(len(ids) - 1 - len(windows) * cfg.seq_length)}
    if cfg.valid_data:
        vids, vdocs, vfiles = stream(cfg.valid_data, "--valid-data")
        train, valid = windows, pack(vids, cfg.seq_length, "valid")
        report.update(valid_files=[str(f) for f in vfiles], valid_documents=vdocs, valid_tokens=int(len(vids)))
    else:
        train, valid = split(windows, cfg.valid_fraction)
    report.update(train_examples=len(train), valid_examples=len(valid),  # examples = windows
                  train_targets=len(train) * cfg.seq_length, valid_targets=len(valid) * cfg.seq_length)
    return Data(train, valid, report)


def _absolute_paths(cfg: PretrainConfig, run: Path) -> None:
    """Local paths made absolute, so `--resume` works from any directory."""
    cfg.out = str(run.resolve())
    cfg.data = [str(Path(p).expanduser().resolve()) for p in cfg.data]
    cfg.valid_data = [str(Path(p).expanduser().resolve()) for p in cfg.valid_data]
    if Path(cfg.tokenizer).expanduser().exists():
        cfg.tokenizer = str(Path(cfg.tokenizer).expanduser().resolve())


def run(cfg: PretrainConfig, *, resume: str | None = None, flags: dict | None = None,
        announce: Callable[[PretrainConfig, Path], None] | None = None) -> dict:
    """Pretrain as `cfg` says (or continue the run `resume`); return the summary (also in RUN/run.json). Every
    check of the input comes before a new run's directory is created."""
    from tinygpt.trainer.outputs import check_register
    from tinygpt.trainer.sft import resumed_config

    if resume:
        run_path, marker = run_dir.open_existing(resume)
        if marker.get("kind") != KIND:
            raise TrainError(f"--resume {run_path}: not a pretraining run; continue it with `tinygpt train --resume`")
        cfg = resumed_config(run_path, flags or {}, PretrainConfig)
        done = run_dir.completed(run_path, marker, (flags or {}).get("register"))
        if done is not None:
            return done  # nothing left to do: the run and its summary stay as they are
    else:
        from tinygpt.trainer.corpus import corpus_files

        check_shape(cfg)
        corpus_files(cfg.data, "--data")  # the quick checks first: paths, then the tokenizer, then the text
        if cfg.valid_data:
            corpus_files(cfg.valid_data, "--valid-data")
        check_register(cfg.register)
        run_path = run_dir.target(cfg.out)
        cfg.out = str(run_path)
    if announce is not None:
        announce(cfg, run_path)
    tokenizer = load_tokenizer(cfg.tokenizer)
    config = model_config(cfg, tokenizer)
    data = load_corpus(cfg, tokenizer)
    if not resume:
        run_path = run_dir.create(cfg.out, kind=KIND)
        _absolute_paths(cfg, run_path)
        run_dir.write_atomic(run_path / "config.toml", to_toml(cfg))
    return run_dir.run_recorded(run_path, lambda: _pretrain(cfg, run_path, tokenizer, config, data,
                                                            resume=bool(resume)), new=not resume)


def _pretrain(cfg: PretrainConfig, run: Path, tokenizer, config: dict, data: Data, *, resume: bool) -> dict:
    import mlx.core as mx

    from tinygpt.runtime.presets import random_model
    from tinygpt.trainer.batches import BucketedBatches, fingerprint
    from tinygpt.trainer.losses import masked_nll
    from tinygpt.trainer.optim import make_optimizer
    from tinygpt.trainer.sft import config_key, restore, run_steps, summarize, total_steps
    from tinygpt.trainer.tuning import count_parameters

    run_dir.write_status(run, "running", kind=KIND, tokenizer=cfg.tokenizer, model_config=config)
    run_dir.write_atomic(run / "data-report.json", json.dumps(data.report, indent=2) + "\n")
    shape = {"max_width": cfg.seq_length}  # every window is seq_length wide: no padding
    source = BucketedBatches(data.train, cfg.batch_size, cfg.seed, **shape)
    valid = BucketedBatches(data.valid, cfg.batch_size, cfg.seed, shuffle=False, **shape) if data.valid else None
    fingerprints = {"data": fingerprint(data.train), "config": config_key(cfg)}
    iters = total_steps(cfg, len(source))
    model = random_model(config, cfg.seed)
    optimizer = make_optimizer(cfg, iters)
    # what a checkpoint's adapter_config.json says: every weight, and the model they belong to
    ckpt_config = {"fine_tune_type": "full", "num_layers": -1, "lora_parameters": None, "pretrain": True,
                   "model_config": config}
    start = restore(run, model, optimizer, fingerprints) if resume else 0
    trainable, total = count_parameters(model)
    last, lines = run_steps(cfg, run, model, optimizer, source, valid, masked_nll, iters=iters, start=start,
                            fingerprints=fingerprints, adapter_config=ckpt_config)
    summary = summarize(lines, start=start, last=last, iters=iters, run=run, data=data.report,
                        params=(trainable, total), peak=mx.get_peak_memory())
    if last == iters:
        summary.update(_finish(cfg, run, model, config, tokenizer, lines))
    return summary


def _copy_tokenizer(tokenizer, source: str, directory: Path) -> None:
    """The tokenizer's files byte for byte from a local directory (so the model has its tokenizer hash), else as
    transformers saves them (a hub id)."""
    from tinygpt.trainer.fuse import TOKENIZER_FILES

    where = Path(source).expanduser()
    if where.is_dir():
        for name in TOKENIZER_FILES:
            if (where / name).is_file():
                shutil.copyfile(where / name, directory / name)
    else:
        tokenizer.save_pretrained(str(directory))


def _finish(cfg: PretrainConfig, run: Path, model, config: dict, tokenizer, lines: list[dict]) -> dict:
    """Write RUN/model (a standalone mlx-lm model directory) and the loss curve; register the model if asked."""
    from tinygpt.runtime.presets import MARKER, save_model_files
    from tinygpt.trainer import loss_plot

    def write(tmp: Path) -> None:
        save_model_files(tmp, model, config)
        _copy_tokenizer(tokenizer, cfg.tokenizer, tmp)
        meta = {"created_by": "tinygpt init-model", "trained_by": TRAINED_BY, "kind": "model",
                "run": str(run.resolve()), "tokenizer": cfg.tokenizer, "seed": cfg.seed, "created": run_dir.now(),
                "files": sorted({p.name for p in tmp.iterdir()} | {MARKER})}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")

    path = run_dir.write_dir(run, "model", write)
    axes = loss_plot.write(run / "loss.png", [(m["step"], m["loss"]) for m in lines if "loss" in m],
                           [(m["step"], m["val_loss"]) for m in lines if "val_loss" in m])
    out = {"model": str(path), "loss_png": str(run / "loss.png"), "loss_png_axes": axes}
    if cfg.register:
        from tinygpt.runtime.store import ModelStore

        out["registered"] = ModelStore().add(cfg.register, path).name
    return out
