"""What a server can serve: the model it was started with, plus every model the store knows (bases, adapters on
their base, specialists, aliases), each by name, loaded through the provider (specialists share their base's
weights). A `ModelSource` for the scheduler: `get` loads through the provider, `release` lets the provider drop
what the scheduler unloaded, `footprint` says what a model will occupy before it loads (for the scheduler's
memory budget); and a file-only `ModelInfo` per name for listings, so listing never loads a model or imports
MLX. A registered model whose files are gone is left out of the list (asking for it by name says why).
`name_for` maps what clients such as BFCL send as `model` to a servable name: a model's directory, however
spelled, or the hub id recorded for it (a pulled model's source), without loading or fetching anything.
Not here: loading itself (provider.py, models.py), the registry file (store.py), which models stay loaded
(scheduler.py).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tinygpt.runtime.models import LoadedModel, ModelLoadError
from tinygpt.runtime.provider import ModelProvider, footprint
from tinygpt.runtime.store import DEFAULT, DEFAULT_DIR, HUB_ID_RE, ModelStore, Registry, Resolved, StoreError

log = logging.getLogger("tinygpt.serve")


@dataclass(frozen=True)
class ModelInfo:
    """A servable model as its files describe it (nothing loaded)."""

    name: str
    kind: str               # "base" | "adapter" | "specialist"
    base: Path
    adapter: Path | None
    family: str
    created: int            # unix seconds (the adapter's, else the model directory's mtime)
    size_bytes: int         # weights on disk (a specialist: its adapter's only; the base is shared)
    status: str = "unrated"

    @property
    def modified_iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))


class Catalog:
    """The servable names: `primary` (a path, hub id or name, served as `primary_name`) first, then the store's."""

    def __init__(self, primary: str, primary_name: str | None = None, *, store: ModelStore | None = None,
                 provider: ModelProvider | None = None, include_store: bool = True):
        self.store = store or (provider.store if provider is not None else ModelStore())
        self.provider = provider or ModelProvider(self.store)
        self._primary_ref = primary
        self._primary = self.store.resolve(primary)
        self.primary = primary_name or self._primary.name
        self.include_store = include_store

    def _resolved(self, name: str) -> Resolved:
        if name == self.primary:
            return self._primary
        return self.store.resolve(name)

    def names(self) -> list[str]:
        """Every name a request may use, the primary first; registered models whose files are gone are left out."""
        out = [self.primary]
        if not self.include_store:
            return out
        try:
            reg = self.store.read()
        except StoreError as exc:  # a damaged registry: the served model still answers; the rest is unlisted
            log.warning("%s; listing only %s", exc, self.primary)
            return out
        candidates = ([DEFAULT] if (DEFAULT_DIR / "config.json").exists() else [])
        candidates += [e.name for e in reg.models] + list(reg.aliases)
        for name in candidates:
            if name in out:
                continue
            try:
                self.store.resolve(name)
            except ModelLoadError:
                continue
            out.append(name)
        return out

    def name_for(self, requested: str) -> str | None:
        """The servable name `requested` means when it is no name itself: the text `--model` was given as, a
        served model's directory spelled any way (absolute, relative to this process's directory, `~`, through a
        symlink), or the hub id recorded for a registered model (its `source`). A directory that two names share
        means the primary first, then the first registered. None if nothing matches."""
        if requested == self._primary_ref:
            return self.primary
        try:
            reg = self.store.read() if self.include_store or HUB_ID_RE.fullmatch(requested) else Registry()
        except StoreError:
            reg = Registry()
        known = [(self.primary, self._primary.adapter or self._primary.base)]  # (name, its directory)
        known += [(DEFAULT, DEFAULT_DIR)] if self.include_store else []
        known += [(e.name, Path(e.path)) for e in reg.models]
        known += [(a, Path(t)) for a, t in reg.aliases.items() if Path(t).is_absolute()]  # aliases of directories
        wanted = {_real(e.path) for e in reg.models if e.source is not None and e.source == requested}
        wanted.add(_real(requested))
        for name, where in known:
            if _real(str(where)) in wanted - {None} and (name == self.primary or (self.include_store and
                                                                                   name in self.names())):
                return name
        return None

    def _ref(self, name: str) -> str:
        return self._primary_ref if name == self.primary else name

    def get(self, name: str) -> LoadedModel:
        """The model `name` means, loaded through the provider (shared base weights), named `name`; held until
        `release(name)`."""
        loaded = self.provider.get(self._ref(name))
        return loaded if loaded.name == name else _renamed(loaded, name)

    def release(self, name: str) -> None:
        """The scheduler unloaded `name`: the provider lets go of it (and of its base once nothing uses that)."""
        self.provider.unload(self._ref(name))

    def footprint(self, name: str) -> dict[str, int]:
        """{directory: bytes} of the weights `name` runs on once loaded (its base's, its adapter's), not loading."""
        r = self._resolved(name)
        return footprint(r.base, r.adapter)

    def base_model(self, loaded: LoadedModel) -> LoadedModel:
        """The base `loaded` runs on (itself for a base): the provider's one copy of the base's weights."""
        if loaded.adapter_path is None:
            return loaded
        return self.provider.base(loaded)

    def info(self, name: str) -> ModelInfo:
        r = self._resolved(name)
        entry = self.store.entry(name) if name != self.primary else None
        cfg = _read_json(r.base / "config.json")
        where = r.adapter or r.base
        files = list(where.glob("*.safetensors"))
        kind = entry.kind if entry is not None else ("specialist" if r.adapter else "base")
        return ModelInfo(name=name, kind=kind, base=r.base, adapter=r.adapter,
                         family=str(cfg.get("model_type", "unknown")), created=int(where.stat().st_mtime),
                         size_bytes=sum(f.stat().st_size for f in files),
                         status=entry.status if entry is not None else "unrated")


def _real(path: str) -> str | None:
    """`path` with `~`, `..` and symlinks resolved (relative to this process's directory); None if it cannot be."""
    try:
        return os.path.realpath(os.path.expanduser(path))
    except (ValueError, OSError):  # e.g. a NUL byte in what a client sent
        return None


def _renamed(loaded: LoadedModel, name: str) -> LoadedModel:
    import dataclasses

    return dataclasses.replace(loaded, name=name)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
