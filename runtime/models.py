"""Load any mlx-lm model (local directory or Hugging Face hub id) with its tokenizer and chat template.

Adds what tinygpt needs on top of `mlx_lm.load`: clear errors for bad paths, a model fingerprint and tokenizer /
chat-template hashes (persistent KV and traces refuse to mix models), and the dtype policy (float32 on the CPU
backend, where MLX has no BLAS path for bf16). It does not generate; see engine.py.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what was wrong and what to do."""


@dataclass
class LoadedModel:
    """A model, its mlx-lm TokenizerWrapper, config and identity hashes."""

    model: Any
    tokenizer: Any
    config: dict
    path: Path
    fingerprint: str
    tokenizer_hash: str
    chat_template_hash: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def vocab_size(self) -> int:
        return int(self.config.get("vocab_size") or self.config.get("text_config", {}).get("vocab_size"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(path: Path) -> str:
    """Hash of config.json and, per weight file, its size and first/last MiB (cheap, changes with weights)."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


_MODEL_HINT = ("Create one with `tinygpt init-model {dir}` (random weights, offline) or pass a hub id like "
               "mlx-community/Qwen3-0.6B-4bit")


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _looks_local(text: str) -> bool:
    """`models/q06` when `models/` exists here, or anything written like a path, is meant as a local path."""
    p = Path(text).expanduser()
    return (text.startswith((".", "/", "~")) or text.endswith("/") or "\\" in text or text.count("/") != 1
            or Path(text.split("/", 1)[0]).is_dir() or p.suffix in (".safetensors", ".json", ".gguf"))


def _resolve(path_or_id: str) -> Path:
    """The local directory of `path_or_id`, fetching a hub id; ModelLoadError says what is wrong and what to do."""
    p = Path(path_or_id).expanduser()
    if not path_or_id.strip():
        raise ModelLoadError("--model is empty; name a model directory or a hub id like org/name")
    if p.is_file():
        raise ModelLoadError(f"{p} is a file; --model takes a model directory (config.json, *.safetensors, "
                             "tokenizer files). " + _MODEL_HINT.format(dir="DIR"))
    if p.is_dir():
        if not (p / "config.json").exists():
            what = "an empty directory" if not any(p.iterdir()) else "not an mlx-lm / Hugging Face model directory"
            raise ModelLoadError(f"{p} has no config.json: {what}. " + _MODEL_HINT.format(dir="DIR"))
        return p
    if _looks_local(path_or_id):
        raise ModelLoadError(f"no model directory at {str(p)!r}: the local path does not exist. "
                             + _MODEL_HINT.format(dir=path_or_id))
    from huggingface_hub.constants import HF_HUB_OFFLINE
    from mlx_lm.utils import _download

    try:
        return Path(_download(path_or_id))
    except Exception as exc:  # noqa: BLE001 — hub client raises many types; all mean "could not fetch"
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache" if HF_HUB_OFFLINE else (
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise ModelLoadError(f"no local directory {path_or_id!r}, and it could not be fetched from the Hugging Face "
                             f"hub ({why}). Offline? Point --model at a local directory, or create one with "
                             f"`tinygpt init-model {path_or_id}`") from exc


def load(path_or_id: str, adapter_path: str | None = None) -> LoadedModel:
    """Load model + tokenizer; raises ModelLoadError with a clear message on any bad input."""
    path = _resolve(path_or_id)  # before importing MLX: a bad path is reported at once
    if not any((path / n).exists() for n in _TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer ({', '.join(_TOKENIZER_FILES)}): copy the model's tokenizer "
                             "files into it, or create a complete model with `tinygpt init-model DIR`")
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load as mlx_load

    try:
        model, tokenizer, config = mlx_load(str(path), adapter_path=adapter_path, return_config=True)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"could not load the model in {path}: {type(exc).__name__}: {exc}") from exc
    if mx.default_device() == mx.cpu and "quantization" not in config:
        params = model.parameters()
        if any(v.dtype in (mx.bfloat16, mx.float16) for _, v in _flat(params)):
            model.update(tree_map(lambda w: w.astype(mx.float32) if w.dtype in (mx.bfloat16, mx.float16) else w,
                                  params))
    tok_files = [path / n for n in ("tokenizer.json", "tokenizer_config.json") if (path / n).exists()]
    template = getattr(tokenizer, "chat_template", None) or ""
    return LoadedModel(
        model=model, tokenizer=tokenizer, config=config, path=path, fingerprint=fingerprint(path),
        tokenizer_hash=_sha(b"".join(f.read_bytes() for f in tok_files)),
        chat_template_hash=_sha(template.encode()),
    )


def _flat(params):
    from mlx.utils import tree_flatten

    return tree_flatten(params)
