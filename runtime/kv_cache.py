"""Persistent KV: a session's cache of the ids it has consumed, and saving/loading it across restarts.

A `Session` pairs an mlx-lm prompt cache with the exact token ids in it. `sync` trims the cache to the common
prefix of what it holds and a new prompt, so a call prefills only the new suffix. Files are mlx-lm's
`save_prompt_cache` safetensors plus metadata (format version, model fingerprint, tokenizer hash, ids) that
must match before reuse (the fingerprint is the model's identity key, models.Identity: a specialist's KV is
never loaded by its base or a sibling, nor the other way round); writes go to a temp file and are renamed, so
a failure never overwrites a good file.
`save_session` replaces only a tinygpt KV file (read from its header); any other file, or a symlink, is refused.
`load_session` brings a session back the cheaper way here: reading the file, or recomputing the KV from the
saved ids (a GPU can prefill faster than a KV file of that length can be read and copied to it; on a CPU the
file wins by far). It weighs the prefill throughput measured in this process (prefill_meter.py; else the rate the
saving process recorded, on the same device) against the read time measured on the file's first layer.
The cross-request prefix cache is mlx-lm's own `LRUPromptCache` (used by engine.py), not re-implemented here.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import (
    can_trim_prompt_cache, load_prompt_cache, save_prompt_cache, trim_prompt_cache,
)

from tinygpt.runtime import prefill_meter
from tinygpt.runtime.prefill import bucketed, make_cache, plain, prefill

FORMAT = "tinygpt-kv/1"
HOW = ("auto", "file", "prefill")


class KVCacheError(RuntimeError):
    """A saved KV cache cannot be used (corrupt, or made by another model/tokenizer)."""


@dataclass(frozen=True)
class Reload:
    """How `load_session` brought a session back and why; the estimates (seconds) it compared, where it made them."""

    how: str  # "file" or "prefill"
    reason: str
    file_s: float | None = None
    prefill_s: float | None = None


@dataclass
class Session:
    """A persistent conversation state: the prompt cache and the ids it holds, in order."""

    cache: list[Any]
    ids: list[int] = field(default_factory=list)
    reload: Reload | None = None  # set when the session came from a saved file

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


def device_name() -> str:
    """The device prefill rates are measured on (e.g. 'NVIDIA H200', 'Apple M2 Max', 'AMD EPYC')."""
    try:
        return str(mx.device_info().get("device_name", mx.default_device()))
    except (AttributeError, RuntimeError):
        return str(mx.default_device())


def save_session(session: Session, path: str | Path, *, fingerprint: str, tokenizer_hash: str,
                 model=None) -> Path:
    """Write the session's KV + metadata to `path` (.safetensors), atomically; never replaces a user's file.

    With `model`, the prefill rate measured for it in this process is recorded too (for a later reload's choice)."""
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
    rate = prefill_meter.rate(model) if model is not None else None
    if rate:
        meta.update(prefill_tok_s=f"{rate:.1f}", device=device_name())
    try:
        save_prompt_cache(str(tmp), plain(session.cache), meta)  # mlx-lm reloads caches by class name
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_session(path: str | Path, *, fingerprint: str, tokenizer_hash: str, model=None,
                 prefill_step: int = 2048, how: str = "auto") -> Session:
    """Load a saved session; raise KVCacheError if it is unreadable or belongs to another model/tokenizer.

    `how`: "file" reads the KV; "prefill" recomputes it from the saved ids with `model`; "auto" (the default)
    does whichever is estimated cheaper here (`_choose`), and reads the file when no prefill rate is known (or no
    model is given).
    `session.reload` says which way it went and why."""
    if how not in HOW:
        raise ValueError(f"how must be one of {', '.join(HOW)}, not {how!r}")
    if how == "prefill" and model is None:
        raise ValueError("how='prefill' needs the model (to recompute the KV from the saved ids)")
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".safetensors").exists():
        path = path.with_name(path.name + ".safetensors")
    if not path.exists():
        raise KVCacheError(f"no saved KV cache at {path}")
    try:
        cache, meta = load_prompt_cache(str(path), return_metadata=True)  # lazy: only the header is read here
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
    held = cache[0].offset if cache else 0
    if held != len(ids):
        raise KVCacheError(f"{path}: cache holds {held} tokens but metadata lists {len(ids)}")
    reload = _choose(cache, ids, model, meta, path) if how == "auto" else Reload(how, "asked for")
    if reload.how == "prefill":
        return Session(cache=_recompute(model, ids, prefill_step), ids=ids, reload=reload)
    _read(cache, path)
    return Session(cache=bucketed(cache), ids=ids, reload=reload)


def _read(cache: list, path: Path, layers: slice = slice(None)) -> None:
    """Evaluate (read from the file) the lazily loaded layers of `cache`; a short or damaged file is KVCacheError."""
    try:
        mx.eval([c.state for c in cache[layers]])
    except Exception as exc:  # noqa: BLE001 — mlx raises RuntimeError on a short read
        raise KVCacheError(f"{path}: the KV data cannot be read ({type(exc).__name__}: {exc})") from exc


def _nbytes(layer) -> int:
    return sum(a.nbytes for a in layer.state if isinstance(a, mx.array))


def _choose(cache: list, ids: list[int], model, meta: dict, path: Path) -> Reload:
    """File or recompute, whichever is estimated cheaper: the saved ids over the measured prefill rate, against
    the file's size over the read rate measured by reading its first layer (kept: the file path goes on from it)."""
    if model is None:
        return Reload("file", "no model given to recompute with")
    rate = prefill_meter.rate(model)
    source = "measured in this process"
    if rate is None and meta.get("device") == device_name():
        try:
            rate, source = float(meta["prefill_tok_s"]), "recorded by the process that saved it"
        except (KeyError, ValueError):
            rate = None
    if rate is None or not cache or not ids:
        return Reload("file", "no prefill rate measured for this model on this device yet")
    prefill_s = len(ids) / rate
    t0 = time.perf_counter()
    _read(cache, path, slice(0, 1))
    first = time.perf_counter() - t0
    total = sum(_nbytes(c) for c in cache)
    file_s = first * total / max(1, _nbytes(cache[0]))
    how = "prefill" if prefill_s < file_s else "file"
    return Reload(how, f"{len(ids)} ids at {rate:.0f} tok/s ({source}) ~{prefill_s:.3f} s vs {total / 2**20:.0f} "
                       f"MiB read ~{file_s:.3f} s", file_s, prefill_s)


def _recompute(model, ids: list[int], step: int) -> list:
    """A cache holding `ids`, prefilled chunk by chunk (each chunk's rate recorded).

    It never gives up part way for the file: in a fresh process every chunk pays for kernels built on first use,
    so a projection from the chunks done says "slow" exactly when finishing still costs no more than the file
    (measured on an H200: benchmarks/results/reload-cold-gpu-qwen3-4b.json)."""
    cache = make_cache(model)
    step = max(1, step)
    for i in range(0, len(ids), step):
        chunk = ids[i:i + step]
        t0 = time.perf_counter()
        prefill(model, cache, chunk, step, logits=False)
        prefill_meter.record(model, len(chunk), time.perf_counter() - t0)
    return cache
