"""Fuse an adapter into its base model: a standalone model directory that loads without the adapter.

The pieces are mlx-lm's fuse (`mlx_lm.fuse`): the base is loaded in its own dtype (`load_model`), the adapter
with `load_adapters` (LoRA, DoRA or full), every adapted layer replaced by its `.fuse()`, then `save_model` and
`save_config`. Unlike mlx-lm, the tokenizer files are copied byte for byte from the base (mlx-lm re-saves them
through transformers), so the fused model keeps the base's tokenizer hash and rows recorded with either load on
both. The output is written in a temp directory and renamed; it must be new or empty, or (with `force`) a model
directory tinygpt made — presets.check_target's rule; a user's directory is never replaced.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tinygpt.trainer.errors import TrainError

# tokenizer / template files of a model directory, copied as they are
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "added_tokens.json")


def fuse(base: Path, adapter: Path, out_dir: str | Path, *, force: bool = False, dequantize: bool = False) -> Path:
    """Write base + adapter as one model at `out_dir`; return its path."""
    from tinygpt.runtime.presets import MARKER, check_target, model_marker
    from tinygpt.runtime.store import check_made_for

    base, adapter = Path(base), Path(adapter)
    for f in ("adapters.safetensors", "adapter_config.json"):
        if not (adapter / f).is_file():
            raise TrainError(f"{adapter} is not an adapter directory (no {f}); give a run's adapter/ directory")
    check_made_for(adapter, base)  # the store's own rule: an adapter fuses only into the base it was made for
    where = Path(out_dir).expanduser()
    if where.is_dir() and not where.is_symlink() and any(where.iterdir()) and model_marker(where) is None:
        raise TrainError(f"--out {where} exists and is not empty, and tinygpt did not make it (no {MARKER}): tinygpt "
                         "never replaces it, even with --force. Name a new directory")
    out = check_target(out_dir, force)
    import mlx.core as mx
    from mlx.utils import tree_unflatten
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import dequantize_model, load_model, save_config, save_model

    from tinygpt.runtime.models import adapter_fingerprint, fingerprint

    model, config = load_model(base, lazy=True)
    try:
        load_adapters(model, str(adapter))
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"the adapter {adapter} does not fit the base {base}: {first}") from exc
    fused = [(name, m.fuse(dequantize=dequantize)) for name, m in model.named_modules() if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    mx.eval(model.parameters())
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text())
    meta = {"created_by": "tinygpt init-model", "trained_by": "tinygpt fuse", "kind": "model",
            "fused_from": {"base": str(base.resolve()), "base_fingerprint": fingerprint(base),
                           "adapter": str(adapter.resolve()), "adapter_fingerprint": adapter_fingerprint(adapter),
                           "fine_tune_type": adapter_cfg.get("fine_tune_type", "lora")}}
    out.parent.mkdir(parents=True, exist_ok=True)  # as `eval-gate --out` does: a new parent is made
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_model(tmp, model)
        save_config(config, config_path=tmp / "config.json")
        for name in TOKENIZER_FILES:
            if (base / name).is_file():
                shutil.copyfile(base / name, tmp / name)
        meta["files"] = sorted({p.name for p in tmp.iterdir()} | {MARKER})
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_in(tmp, check_target(out_dir, force))  # checked again: the target may have changed meanwhile
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Rename `new` to `out`; a replaced (tinygpt-made, checked) `out` is moved aside first, deleted after."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(new, out)  # rename(2) replaces an empty directory
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=out.parent))
    os.replace(out, aside / "model")
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(aside / "model", out)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
