"""The model store: what a model name means, and the registry file that records names.

A name is, in this order: an alias (→ another name; an alias may itself be a hub id, which then means the local
model), a registered entry (a base model directory, an adapter or a specialist = base + adapter in mlx-lm's
format), `default` (the embedded default model: the tool world's base shipped in the package, DEFAULT_DIR, only
ever read, never removed), a local directory (a model directory, or an adapter directory the registry knows the
base of), or a hub id `org/name` (fetched through huggingface_hub with mlx-lm's file patterns; offline, a clear
error). `resolve` turns a name into directories without importing MLX; models.py loads them. The registry is JSON
in cache_dir()/models/registry.json, written atomically (temp file, fsync, rename). mlx-lm's adapter_config.json
has no base field, so the registry records each adapter's base. `remove` unregisters; it deletes files only of a
directory tinygpt created (its tinygpt.json marker) inside the store's own directory, never a user's. An entry may
say what it is for (domain, tool names, provenance: `describe`); registry files written before those fields
existed read unchanged. It does not load or cache models.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from tinygpt.runtime.models import ModelLoadError, fingerprint

Kind = Literal["base", "adapter", "specialist"]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT = "default"  # the embedded default model: the tool world's pretrained base, shipped with tinygpt
# found through the package (a checkout or an installed wheel alike); only ever read, never written
DEFAULT_DIR = Path(__file__).resolve().parent / "assets" / "world-base"
RESERVED = {"auto": "the name `tinygpt serve --router` gives the router"}  # never a model of the store
ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json")


class StoreError(ModelLoadError):
    """A name is unknown or a registry change is not allowed; the message says what exists or what to do."""


class Entry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One registered model. `path` is the model directory (base) or the adapter directory (adapter, specialist);
    `base` names the base (a registered name or a directory) for adapters and specialists."""

    name: str
    kind: Kind
    path: str
    base: str | None = None
    status: str = "unrated"  # the eval gate and the router fill it ("shipped", "rejected", ...)
    created: str
    source: str | None = None  # the hub id a pulled model came from
    domain: str | None = None  # the kind of request a specialist is for (the router routes that domain to it)
    tools: list[str] = []  # the tool names it was trained to call
    provenance: dict[str, str] = {}  # how it was made: e.g. {"data": ..., "run": ..., "teacher": ...}


class Registry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The registry file."""

    version: int = 1
    models: list[Entry] = []
    aliases: dict[str, str] = {}


@dataclass(frozen=True)
class Resolved:
    """What a name means on disk: the base model directory and, for a specialist, the adapter directory."""

    name: str
    base: Path
    adapter: Path | None = None
    base_name: str = ""  # for a specialist: the name its base resolves under

    def __post_init__(self):
        if not self.base_name:
            object.__setattr__(self, "base_name", self.name if self.adapter is None else self.base.name)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def is_adapter_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in ADAPTER_FILES)


_HINT = ("Create one with `tinygpt init-model {dir}` (random weights, offline) or pass a hub id like "
         "mlx-community/Qwen3-0.6B-4bit")


def _looks_local(text: str) -> bool:
    """`models/q06` when `models/` exists here, or anything written like a path, is meant as a local path."""
    return (text.startswith((".", "/", "~")) or text.endswith("/") or "\\" in text or text.count("/") != 1
            or Path(text.split("/", 1)[0]).is_dir() or Path(text).suffix in (".safetensors", ".json", ".gguf"))


class ModelStore:
    """Names → directories, and the registry file. `root` defaults to cache_dir()/models."""

    def __init__(self, root: str | Path | None = None):
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        if self._root is None:  # looked up on first use: vocab.py imports the tokenizers library
            from tinygpt.runtime.vocab import cache_dir  # the one definition of the user cache

            self._root = cache_dir() / "models"
        return self._root

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.json"

    # ---- the registry file -------------------------------------------------------------------------
    def read(self) -> Registry:
        try:
            data = self.registry_path.read_bytes()
        except FileNotFoundError:
            return Registry()
        try:
            return msgspec.json.decode(data, type=Registry)
        except msgspec.DecodeError as exc:
            raise StoreError(f"the model registry {self.registry_path} is damaged ({exc}); fix it by hand or move "
                             "it away (registered names are then forgotten; no model files are touched)") from exc

    def _write(self, reg: Registry) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.format(msgspec.json.encode(reg), indent=2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.registry_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def entries(self) -> list[Entry]:
        """Every model: the embedded default first, then the registry's entries."""
        default = Entry(name=DEFAULT, kind="base", path=str(DEFAULT_DIR), status="unrated", created="",
                        source="embedded")
        return [default, *self.read().models]

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries() if e.name == name), None)

    def names(self) -> list[str]:
        reg = self.read()
        return [DEFAULT, *(e.name for e in reg.models), *reg.aliases]

    # ---- changes -----------------------------------------------------------------------------------
    def _check_new_name(self, reg: Registry, name: str, hub_id_ok: bool = False) -> None:
        hub_id = hub_id_ok and HUB_ID_RE.fullmatch(name) is not None and len(name) <= 128
        if not hub_id and not NAME_RE.fullmatch(name):
            also = " (an alias may also be a hub id like org/name)" if hub_id_ok else ""
            raise StoreError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (no '/'), starting "
                             f"with a letter or digit, at most 64 characters{also}")
        if name.lower() in RESERVED:
            raise StoreError(f"the name {name!r} is reserved ({RESERVED[name.lower()]}); choose another")
        if name == DEFAULT or any(e.name == name for e in reg.models) or name in reg.aliases:
            raise StoreError(f"the name {name!r} is taken; `tinygpt models rm {name}` first or choose another")

    def add(self, name: str, path: str | Path, *, base: str | None = None, kind: Kind | None = None,
            source: str | None = None) -> Entry:
        """Register a base model directory, or an adapter directory on `base` (kind adapter or specialist)."""
        reg = self.read()
        self._check_new_name(reg, name)
        where = Path(path).expanduser()
        if not where.is_dir():
            raise StoreError(f"no directory at {str(path)!r}; name an existing model or adapter directory")
        where = where.resolve()
        if is_adapter_dir(where):
            if base is None:
                raise StoreError(f"{where} is an adapter; say which base model it belongs to with --base")
            resolved = self.resolve(base)  # the base must resolve now, so a typo fails here, not at load time
            if resolved.adapter is not None:
                raise StoreError(f"the base {base!r} is itself a specialist; name a base model")
            check_made_for(where, resolved.base)
            if base not in self.names() and Path(base).expanduser().is_dir():
                base = str(resolved.base.resolve())  # a directory is recorded absolute (works from any cwd)
            kind = kind or "specialist"
            if kind == "base":
                raise StoreError(f"{where} is an adapter, not a base model (no config.json)")
        elif (where / "config.json").is_file():
            if base is not None:
                raise StoreError(f"{where} is a model directory, not an adapter; --base is only for adapters")
            kind = "base"
        else:
            raise StoreError(f"{where} is neither a model directory (config.json) nor an adapter directory "
                             f"({' + '.join(ADAPTER_FILES)})")
        entry = Entry(name=name, kind=kind, path=str(where), base=base, created=_now(), source=source)
        reg.models.append(entry)
        self._write(reg)
        return entry

    def alias(self, name: str, target: str) -> None:
        """Make `name` mean `target` (which must resolve now). `name` may be a hub id (`org/name`): that hub id
        then means the local `target` everywhere (never fetched), and a server answers to it."""
        reg = self.read()
        self._check_new_name(reg, name, hub_id_ok=True)
        self.resolve(target)
        local = Path(target).expanduser()
        if target not in self.names() and local.is_dir():  # a directory: stored absolute, so it means the same
            target = str(local.resolve())                    # from any working directory
        reg.aliases[name] = target
        self._write(reg)

    def set_status(self, name: str, status: str) -> Entry:
        """Record a registered model's status (the eval gate and router call this)."""
        reg = self.read()
        for i, e in enumerate(reg.models):
            if e.name == name:
                reg.models[i] = msgspec.structs.replace(e, status=status)
                self._write(reg)
                return reg.models[i]
        raise self._unknown(name)

    def describe(self, name: str, *, domain: str | None = None, tools: list[str] | None = None,
                 provenance: dict[str, str] | None = None) -> Entry:
        """Record what a registered model is for (the router reads it): its domain, the tool names it was trained to
        call, how it was made. Arguments left None keep their recorded value; domain "" clears it."""
        if domain is not None and domain and not NAME_RE.fullmatch(domain):
            raise StoreError(f"invalid domain {domain!r}: use letters, digits, '.', '_' and '-', at most 64 characters")
        reg = self.read()
        for i, e in enumerate(reg.models):
            if e.name == name:
                changes: dict = {}
                if domain is not None:
                    changes["domain"] = domain or None
                if tools is not None:
                    changes["tools"] = sorted(set(tools))
                if provenance is not None:
                    changes["provenance"] = dict(provenance)
                reg.models[i] = msgspec.structs.replace(e, **changes)
                self._write(reg)
                return reg.models[i]
        raise self._unknown(name)

    def owns(self, path: str | Path) -> bool:
        """True if tinygpt created the directory (its marker) inside the store's own directory."""
        from tinygpt.runtime.presets import model_marker

        p = Path(path)
        if p.is_symlink() or not p.is_dir():
            return False
        inside = p.resolve().is_relative_to(self.root.resolve()) and p.resolve() != self.root.resolve()
        marked = model_marker(p) is not None or _adapter_marked(p)
        return inside and marked

    def remove(self, name: str) -> tuple[str, Path | None]:
        """Unregister `name`; returns (what it was, the directory deleted or None when files were left alone)."""
        reg = self.read()
        alias_users = sorted(a for a, t in reg.aliases.items() if t == name)
        if name in reg.aliases:
            if alias_users:  # an alias of this alias would dangle
                raise StoreError(f"{name!r} is used by {', '.join(alias_users)}; remove those first")
            del reg.aliases[name]
            self._write(reg)
            return "alias", None
        if name == DEFAULT:
            raise StoreError(f"{DEFAULT!r} is the embedded default model, shipped with tinygpt ({DEFAULT_DIR}); it "
                             "cannot be removed. Set config `model` or pass --model to use another")
        entry = next((e for e in reg.models if e.name == name), None)
        refs = {name} | ({entry.path} if entry is not None and entry.kind == "base" else set())
        users = [e.name for e in reg.models if e.base in refs] + alias_users
        if users:
            raise StoreError(f"{name!r} is used by {', '.join(sorted(users))}; remove those first")
        if entry is None:
            raise self._unknown(name)
        reg.models.remove(entry)
        self._write(reg)
        if self.owns(entry.path) and not any(e.path == entry.path for e in reg.models):  # no other name uses it
            shutil.rmtree(entry.path)
            return entry.kind, Path(entry.path)
        return entry.kind, None

    def pull(self, hub_id: str, name: str | None = None) -> Entry:
        """Fetch `hub_id` into the Hugging Face cache and register it (under its last path part by default)."""
        if not HUB_ID_RE.fullmatch(hub_id):
            raise StoreError(f"{hub_id!r} is not a hub id; a hub id looks like org/name")
        name = name or hub_id.split("/")[-1]
        self._check_new_name(self.read(), name)
        return self.add(name, fetch_hub(hub_id), source=hub_id)

    # ---- resolution --------------------------------------------------------------------------------
    def _unknown(self, name: str) -> StoreError:
        return StoreError(f"unknown model {name!r}: not a registered name, alias or local directory. Known: "
                          f"{', '.join(self.names())}. See `tinygpt models ls`; "
                          + _HINT.format(dir=name).replace("Create", "or create"))

    def resolve(self, text: str, _depth: int = 0) -> Resolved:
        """The directories `text` names (see the module docstring for the order); StoreError/ModelLoadError if none."""
        if not text or not text.strip():
            raise ModelLoadError("--model is empty; name a model, a model directory or a hub id like org/name")
        if _depth > 8:
            raise StoreError(f"{text!r}: bases of bases nest more than 8 deep; check `tinygpt models ls`")
        reg = self.read() if NAME_RE.fullmatch(text) or HUB_ID_RE.fullmatch(text) else Registry()
        chain = [text]
        while chain[-1] in reg.aliases:
            chain.append(reg.aliases[chain[-1]])
            if chain[-1] in chain[:-1]:
                raise StoreError(f"alias {text!r} is part of a cycle ({' -> '.join(chain)}); `tinygpt models rm` "
                                 "one of those aliases")
        if len(chain) > 1:
            return _renamed(self.resolve(chain[-1], _depth + 1), text)
        entry = next((e for e in reg.models if e.name == text), None)
        if entry is not None:
            return self._resolve_entry(entry)
        if text == DEFAULT:
            return Resolved(name=DEFAULT, base=DEFAULT_DIR)
        return self._resolve_path(text, reg)

    def _resolve_entry(self, e: Entry) -> Resolved:
        path = Path(e.path)
        if not path.is_dir():
            raise StoreError(f"model {e.name!r} is registered at {path}, which no longer exists; "
                             f"`tinygpt models rm {e.name}` to forget it")
        if e.kind == "base":
            return Resolved(name=e.name, base=_model_dir(path))
        if not is_adapter_dir(path):
            raise StoreError(f"{e.kind} {e.name!r}: {path} has no {' + '.join(ADAPTER_FILES)} any more")
        base = self.resolve(e.base or "")
        if base.adapter is not None:
            raise StoreError(f"{e.kind} {e.name!r}: its base {e.base!r} is itself a specialist")
        return Resolved(name=e.name, base=base.base, adapter=path, base_name=base.name)

    def _resolve_path(self, text: str, reg: Registry) -> Resolved:
        p = Path(text).expanduser()
        if p.is_dir():
            if is_adapter_dir(p):
                known = next((e for e in self.read().models if e.kind != "base" and Path(e.path) == p.resolve()), None)
                if known is None:
                    raise StoreError(f"{p} is an adapter whose base is not recorded; register it with `tinygpt models "
                                     f"add NAME --base BASE --adapter {text}`")
                return _renamed(self._resolve_entry(known), p.name)
            return Resolved(name=p.name, base=_model_dir(p))
        if p.is_file():
            raise ModelLoadError(f"{p} is a file; --model takes a model directory (config.json, *.safetensors, "
                                 "tokenizer files) or a name. " + _HINT.format(dir="DIR"))
        if NAME_RE.fullmatch(text) and not text.startswith("."):
            raise self._unknown(text)
        if _looks_local(text):
            raise ModelLoadError(f"no model directory at {str(p)!r}: the local path does not exist. "
                                 + _HINT.format(dir=text))
        return Resolved(name=text, base=fetch_hub(text))


def _renamed(r: Resolved, name: str) -> Resolved:
    return Resolved(name=name, base=r.base, adapter=r.adapter, base_name=r.base_name if r.adapter else name)


def _model_dir(p: Path) -> Path:
    if not (p / "config.json").exists():
        what = "an empty directory" if not any(p.iterdir()) else "not an mlx-lm / Hugging Face model directory"
        raise ModelLoadError(f"{p} has no config.json: {what}. " + _HINT.format(dir="DIR"))
    if not any(p.glob("*.safetensors")):
        raise ModelLoadError(f"{p} has a config.json but no *.safetensors weights (deleted, or not converted: "
                             "mlx-lm loads safetensors only)")
    return p


def _adapter_marked(p: Path) -> bool:
    from tinygpt.runtime.presets import adapter_marker

    return adapter_marker(p) is not None


def fetch_hub(hub_id: str) -> Path:
    """The local snapshot of `hub_id` (from the hub cache, else downloaded); ModelLoadError when it cannot be had."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    try:
        return Path(snapshot_download(hub_id, allow_patterns=DEFAULT_ALLOW_PATTERNS))
    except Exception as exc:  # noqa: BLE001 — the hub client raises many types; all mean "could not fetch"
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache" if HF_HUB_OFFLINE else (
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise ModelLoadError(f"no local directory or registered name {hub_id!r}, and it could not be fetched from "
                             f"the Hugging Face hub ({why}). Offline? Point --model at a local directory, or create "
                             f"one with `tinygpt init-model {hub_id}`") from exc


def check_made_for(adapter: Path, base: Path) -> None:
    """Refuse an adapter whose tinygpt marker records another base (a wrong pairing would only fail at load)."""
    from tinygpt.runtime.presets import adapter_marker  # light: no MLX at import

    made_for = (adapter_marker(adapter) or {}).get("base_fingerprint")
    if made_for and made_for != fingerprint(base):
        raise StoreError(f"{adapter} was made for another base model (fingerprint {made_for}; {base} is "
                         f"{fingerprint(base)}); name the base it was made for")
