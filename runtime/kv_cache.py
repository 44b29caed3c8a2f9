"""Persistent KV: a session's cache of the ids it has consumed, and saving/loading it across restarts.

A `Session` pairs an mlx-lm prompt cache with the exact token ids in it. `sync` trims the cache to the common
prefix of what it holds and a new prompt, so a call prefills only the new suffix. Files are mlx-lm's
`save_prompt_cache` safetensors plus metadata (format version, model fingerprint, tokenizer hash, ids) that
must match before reuse (the fingerprint is the model's identity key, models.Identity: a specialist's KV is
never loaded by its base or a sibling, nor the other way round); writes go to a temp file and are renamed, so
a failure never overwrites a good file.
`save_session` replaces only a tinygpt KV file (read from its header); any other file, or a symlink, is refused.
The cross-request prefix cache is mlx-lm's own `LRUPromptCache` (used by engine.py), not re-implemented here.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import (
    can_trim_prompt_cache, load_prompt_cache, save_prompt_cache, trim_prompt_cache,
)

from tinygpt.runtime.prefill import bucketed, make_cache, plain

FORMAT = "tinygpt-kv/1"


class KVCacheError(RuntimeError):
    """A saved KV cache cannot be used (corrupt, or made by another model/tokenizer)."""


@dataclass
class Session:
    """A persistent conversation state: the prompt cache and the ids it holds, in order."""

    cache: list[Any]
    ids: list[int] = field(default_factory=list)

    @classmethod
    def new(cls, model) -> "Session":
        return cls(cache=make_cache(model))

    def offset(self) -> int:
        return self.cache[0].offset if self.cache else 0

    def sync(self, prompt_ids: list[int], model) -> list[int]:
        """Trim to the common prefix with `prompt_ids`; return the suffix still to prefill (never empty)."""
        common = 0
        for a, b in zip(self.ids, prompt_ids):
            if a != b:
                break
            common += 1
        if common == len(prompt_ids):  # all cached: re-feed the last token to get its logits
            common -= 1
        if common < len(self.ids):
            if not can_trim_prompt_cache(self.cache) or common == 0:
                self.cache, self.ids = make_cache(model), []
                return list(prompt_ids)
            trim_prompt_cache(self.cache, len(self.ids) - common)
            del self.ids[common:]
        return list(prompt_ids[common:])

    def commit(self, ids: list[int]) -> None:
        """Record that the cache now holds `ids` (trimming any token the cache holds beyond them)."""
        extra = self.offset() - len(ids)
        if extra > 0:
            trim_prompt_cache(self.cache, extra)
        elif extra < 0:
            raise RuntimeError(f"cache holds {self.offset()} tokens but {len(ids)} were recorded")
        self.ids = list(ids)

    def reset(self, model) -> None:
        self.cache, self.ids = make_cache(model), []


def settle_cache(cache: list[Any], ids: list[int], model) -> tuple[list[Any], list[int]]:
    """(cache, the ids it holds): every layer trimmed to the longest prefix of `ids` that all layers hold.

    After an interruption the layers may disagree (one layer fed a token the next had not) or hold more than was
    recorded; trimming all of them to the shortest keeps cache and ids in step. Un-trimmable caches start over."""
    layers = [c for c in cache if hasattr(c, "offset")]  # KV layers (not e.g. multi_adapter.AdapterRows)
    if layers:
        mx.eval([c.state for c in layers if c.offset > 0])
    held = min((c.offset for c in layers), default=0)
    target = min(held, len(ids))
    if any(c.offset != target for c in layers):
        if target == 0 or not can_trim_prompt_cache(cache):
            return make_cache(model), []
        for c in layers:
            c.trim(c.offset - target)
    return cache, list(ids[:target])


def saved_format(path: Path) -> str | None:
    """The `format` in a safetensors file's metadata header, or None if it is not such a file."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size)) if size < (64 << 20) else {}
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta.get("0.format") if isinstance(meta, dict) else None  # mlx-lm flattens [metadata, ...]


def save_session(session: Session, path: str | Path, *, fingerprint: str, tokenizer_hash: str) -> Path:
    """Write the session's KV + metadata to `path` (.safetensors), atomically; never replaces a user's file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if path.is_symlink():
        raise KVCacheError(f"{path} is a symbolic link; tinygpt does not write through links. Choose another name")
    if path.exists() and saved_format(path) != FORMAT:
        raise KVCacheError(f"{path} exists and is not a tinygpt KV cache; tinygpt will not overwrite it. "
                           "Choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.safetensors", dir=path.parent)
    except OSError as exc:
        raise KVCacheError(f"cannot write a KV cache at {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(name)
    meta = {"format": FORMAT, "fingerprint": fingerprint, "tokenizer_hash": tokenizer_hash,
            "ids": json.dumps(session.ids)}
    try:
        save_prompt_cache(str(tmp), plain(session.cache), meta)  # mlx-lm reloads caches by class name
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_session(path: str | Path, *, fingerprint: str, tokenizer_hash: str) -> Session:
    """Load a saved session; raise KVCacheError if it is unreadable or belongs to another model/tokenizer."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".safetensors").exists():
        path = path.with_name(path.name + ".safetensors")
    if not path.exists():
        raise KVCacheError(f"no saved KV cache at {path}")
    try:
        cache, meta = load_prompt_cache(str(path), return_metadata=True)
    except Exception as exc:  # noqa: BLE001 — mlx raises RuntimeError/ValueError/KeyError on bad files
        raise KVCacheError(f"{path} is not a readable KV cache file ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise KVCacheError(f"{path} is not a tinygpt KV cache (format {meta.get('format')!r}, want {FORMAT!r})")
    if meta.get("fingerprint") != fingerprint or meta.get("tokenizer_hash") != tokenizer_hash:
        raise KVCacheError(
            f"{path} was made by another model or tokenizer (fingerprint {meta.get('fingerprint')}, "
            f"tokenizer {meta.get('tokenizer_hash')}; this model: {fingerprint}, {tokenizer_hash}). "
            "Its keys/values would be meaningless here; start a new session instead.")
    try:
        ids = [int(i) for i in json.loads(meta["ids"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise KVCacheError(f"{path}: token ids in the metadata are missing or corrupt") from exc
    session = Session(cache=bucketed(cache), ids=ids)
    if session.offset() != len(ids):
        raise KVCacheError(f"{path}: cache holds {session.offset()} tokens but metadata lists {len(ids)}")
    return session
