"""Load one model by name: a base directory, or a base plus an adapter (a specialist), with its identity.

Adds what tinygpt needs on top of mlx-lm: names resolved through the model store (store.py: local directory,
hub id, alias, registered specialist), clear errors for bad inputs, the dtype policy (float32 on the CPU
backend, where MLX has no BLAS path for bf16), and a model's identity: (base fingerprint, adapter fingerprint
or None). `LoadedModel.fingerprint` IS the identity key, so everything keyed by it (prefix caches, saved KV,
saved chats, trajectory headers) tells a base from each of its specialists without a second mechanism.
`attach_adapter` builds a specialist that shares the base's weight arrays (MLX arrays are immutable) and puts
mlx-lm's LoRA/DoRA layers on top. It does not cache or evict models (provider.py) nor generate (engine.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class Identity:
    """What a model computes: its base weights and, for a specialist, its adapter. `key` is stable text."""

    base: str  # fingerprint(base dir)
    adapter: str | None = None  # adapter_fingerprint(adapter dir), None for a plain base

    @property
    def key(self) -> str:
        return self.base if self.adapter is None else f"{self.base}+{self.adapter}"


@dataclass
class LoadedModel:
    """A model, its mlx-lm TokenizerWrapper, config and identity.

    `name` is what it was asked for (registry name, alias, hub id; for a local directory, the directory's name),
    `path` the base model's directory, `adapter_path` the adapter's (None for a base)."""

    model: Any
    tokenizer: Any
    config: dict
    path: Path
    identity: Identity
    tokenizer_hash: str
    chat_template_hash: str
    name: str = ""
    adapter_path: Path | None = None

    def __post_init__(self):
        if not self.name:
            self.name = self.path.name

    @property
    def fingerprint(self) -> str:
        """The identity key: the key of prefix caches, saved KV, sessions and trajectory headers."""
        return self.identity.key

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def vocab_size(self) -> int:
        return int(self.config.get("vocab_size") or self.config.get("text_config", {}).get("vocab_size"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _hash_files(h, files) -> str:
    """Fold each file's name, size and first/last MiB into `h` (cheap, and changes whenever the weights do)."""
    for f in files:
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def fingerprint(path: Path) -> str:
    """A base model's fingerprint: hash of config.json and, per weight file, its size and first/last MiB."""
    path = Path(path)
    return _hash_files(hashlib.sha256((path / "config.json").read_bytes()), sorted(path.glob("*.safetensors")))


def adapter_fingerprint(path: Path) -> str:
    """An adapter's fingerprint: hash of adapter_config.json and adapters.safetensors (size, first/last MiB)."""
    path = Path(path)
    return _hash_files(hashlib.sha256((path / "adapter_config.json").read_bytes()),
                       [path / "adapters.safetensors"])


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def load(name_or_path: str, adapter_path: str | None = None, *, store=None) -> LoadedModel:
    """Load a model by name (see store.py for what names mean); raises ModelLoadError on any bad input.

    `adapter_path` puts that adapter on the resolved base (a specialist that is not in the registry)."""
    from tinygpt.runtime.store import ModelStore

    resolved = (store or ModelStore()).resolve(name_or_path)  # before importing MLX: bad names fail at once
    base = load_base(resolved.base, name=resolved.base_name)
    if adapter_path is not None:
        return attach_adapter(base, adapter_path)
    if resolved.adapter is None:
        return base
    return attach_adapter(base, resolved.adapter, name=resolved.name)


def load_base(path: Path, name: str | None = None) -> LoadedModel:
    """Load the base model in directory `path` (already resolved) with its tokenizer."""
    path = Path(path)
    if not any((path / n).exists() for n in _TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer ({', '.join(_TOKENIZER_FILES)}): copy the model's tokenizer "
                             "files into it, or create a complete model with `tinygpt init-model DIR`")
    from mlx_lm.utils import load as mlx_load

    try:
        model, tokenizer, config = mlx_load(str(path), return_config=True)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"could not load the model in {path}: {type(exc).__name__}: {exc}") from exc
    _cpu_float32(model, config)
    tok_files = [path / n for n in ("tokenizer.json", "tokenizer_config.json") if (path / n).exists()]
    template = getattr(tokenizer, "chat_template", None) or ""
    return LoadedModel(
        model=model, tokenizer=tokenizer, config=config, path=path, identity=Identity(fingerprint(path)),
        tokenizer_hash=_sha(b"".join(f.read_bytes() for f in tok_files)),
        chat_template_hash=_sha(template.encode()), name=name or path.name,
    )


def attach_adapter(base: LoadedModel, adapter_dir, name: str | None = None) -> LoadedModel:
    """A specialist: `base`'s weights (the same arrays, no copy) with the adapter in `adapter_dir` on top.

    A second module tree of the base's architecture is built lazily from its files (nothing is read), its
    parameters are replaced by the base's arrays, and mlx-lm's `load_adapters` wraps its Linears."""
    adapter_dir = Path(adapter_dir)
    missing = [f for f in ("adapters.safetensors", "adapter_config.json") if not (adapter_dir / f).is_file()]
    if missing:
        raise ModelLoadError(f"{adapter_dir} is not an adapter directory (no {', '.join(missing)}); an adapter is "
                             "mlx-lm's adapters.safetensors + adapter_config.json")
    if base.adapter_path is not None:
        raise ModelLoadError(f"{base.name} is already a specialist; put adapters on a base model")
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model

    model, _ = load_model(base.path, lazy=True)
    model.update(base.model.parameters())
    try:
        load_adapters(model, str(adapter_dir))
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"the adapter in {adapter_dir} does not fit the base {base.path}: {first}; train or "
                             "register it for this base") from exc
    model.eval()
    _cpu_float32(model, base.config)
    import mlx.core as mx

    mx.eval(model.parameters())
    identity = Identity(base.identity.base, adapter_fingerprint(adapter_dir))
    return dataclasses.replace(base, model=model, identity=identity, name=name or f"{base.name}+{adapter_dir.name}",
                               adapter_path=adapter_dir)


def upcasts_to_float32(config: dict) -> bool:
    """Whether loading a model of this config turns its bf16/fp16 weights (and its adapters') into float32: on the
    CPU backend, for an unquantized model (the one statement of the dtype policy; provider.footprint reads it)."""
    import mlx.core as mx

    return mx.default_device() == mx.cpu and "quantization" not in config


def _cpu_float32(model, config: dict) -> None:
    """On the CPU backend, upcast bf16/fp16 weights of an unquantized model to float32 (in place)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map

    if not upcasts_to_float32(config):
        return
    params = model.parameters()
    if any(v.dtype in (mx.bfloat16, mx.float16) for _, v in tree_flatten(params)):
        model.update(tree_map(lambda w: w.astype(mx.float32) if w.dtype in (mx.bfloat16, mx.float16) else w,
                              params))
