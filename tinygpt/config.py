"""tinygpt's config: a dataclass of defaults, overridden by a TOML file, overridden by CLI flags.

The file is $TINYGPT_CONFIG or ~/.config/tinygpt/config.toml; keys are the field names. A flag is the
kebab-case of its field. This module resolves values; it does not parse command lines.
A $TINYGPT_CONFIG that names a missing or unreadable file is an error (the user asked for it); the default
path is optional. Imports stay light (standard library only) so `--help` is fast.
`model_memory_mb` defaults to half of this machine's memory: it bounds loaded models' weights only, and the rest
is for what grows with use (KV caches, prefix caches of `prefix_cache_mb` per model, activations) and the system;
a lone model larger than it still loads (docs/server.md, "Many models and memory").
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class Config:
    """Resolved settings shared by commands."""

    model: str = ""  # empty: the embedded default model (the tool world's base, shipped with tinygpt)
    trajectory_dir: str = ""
    prefix_cache_mb: int = 2048
    grammar_backend: str = "llguidance"
    tool_format: str = ""  # tool-call format name (runtime/tool_formats); "" or "auto": the model's chat template's
    model_keep_alive_s: int = 0  # serve unloads a model idle this long; 0 = keep it until room is needed
    model_memory_mb: int = field(default_factory=lambda: default_model_memory_mb())  # loaded weights; -1 = no limit
    router: str = ""  # a saved router's directory (tinygpt route train): serve's model "auto", agent --router

    def as_dict(self) -> dict:
        return asdict(self)


class ConfigError(ValueError):
    """The config file is unreadable or has unknown/ill-typed keys."""


_TYPE_NAMES = {int: "an integer", str: "a string", float: "a number", bool: "true or false"}
# keys that once existed: a file that still has one gets an error saying what replaced it
_REMOVED = {"default_preset": "the embedded default model is no longer made on first use from a preset; it is the "
                              "tool world's base shipped with tinygpt. Delete the key (for a random-init model: "
                              "`tinygpt init-model DIR --preset P`, then `model = \"DIR\"`)"}


def config_path() -> Path:
    return Path(os.environ.get("TINYGPT_CONFIG") or Path.home() / ".config" / "tinygpt" / "config.toml")


def _read(path: Path, required: bool) -> dict:
    if not required and not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"$TINYGPT_CONFIG names {path}, which does not exist; create it or unset "
                          "TINYGPT_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_config(overrides: dict | None = None) -> Config:
    """Defaults < config file < `overrides` (non-None values, e.g. from flags)."""
    path = config_path()
    values = _read(path, required=bool(os.environ.get("TINYGPT_CONFIG")))
    known = {f.name: f.type for f in fields(Config)}
    gone = sorted(set(values) & set(_REMOVED))
    if gone:
        raise ConfigError(f"{path}: key {gone[0]!r} is gone: {_REMOVED[gone[0]]}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None and k in known})
    cfg = Config(**values)
    for f in fields(Config):
        want, value = type(getattr(Config(), f.name)), getattr(cfg, f.name)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: key {f.name!r} must be {_TYPE_NAMES.get(want, want.__name__)}, "
                              f"got {value!r}")
    from tinygpt.runtime.tool_formats import ToolFormatError, check_name  # light: no MLX at import

    try:
        check_name(cfg.tool_format)
    except ToolFormatError as exc:
        raise ConfigError(f"{path}: key 'tool_format': {exc}") from None
    for key in ("prefix_cache_mb", "model_keep_alive_s"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{path}: key {key!r} must be >= 0, got {getattr(cfg, key)}")
    if cfg.model_memory_mb < -1:
        raise ConfigError(f"{path}: key 'model_memory_mb' must be -1 (no limit) or a number of MiB >= 0, got "
                          f"{cfg.model_memory_mb}")
    return cfg


def default_model_memory_mb() -> int:
    """Half of this machine's physical memory, in MiB (-1, no limit, where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2 >> 20
    except (ValueError, OSError, AttributeError):
        return -1

