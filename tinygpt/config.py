"""tinygpt's config: a dataclass of defaults, overridden by a TOML file, overridden by CLI flags.

The file is $TINYGPT_CONFIG or ~/.config/tinygpt/config.toml; keys are the field names. A flag is the
kebab-case of its field. This module resolves values; it does not parse command lines.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tinygpt.runtime.vocab import cache_dir


@dataclass
class Config:
    """Resolved settings shared by commands."""

    model: str = ""  # empty: the embedded default model (created on first use)
    default_preset: str = "tiny"
    trajectory_dir: str = ""
    prefix_cache_mb: int = 2048
    grammar_backend: str = "llguidance"

    def as_dict(self) -> dict:
        return asdict(self)


class ConfigError(ValueError):
    """The config file is unreadable or has unknown/ill-typed keys."""


def config_path() -> Path:
    return Path(os.environ.get("TINYGPT_CONFIG") or Path.home() / ".config" / "tinygpt" / "config.toml")


def load_config(overrides: dict | None = None) -> Config:
    """Defaults < config file < `overrides` (non-None values, e.g. from flags)."""
    values: dict = {}
    path = config_path()
    if path.exists():
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    known = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None and k in known})
    cfg = Config(**values)
    for f in fields(Config):
        if not isinstance(getattr(cfg, f.name), type(getattr(Config(), f.name))):
            raise ConfigError(f"config key {f.name!r} must be a {type(getattr(Config(), f.name)).__name__}")
    return cfg


def default_model_dir(preset: str = "tiny") -> Path:
    return cache_dir() / "models" / f"default-{preset}"
