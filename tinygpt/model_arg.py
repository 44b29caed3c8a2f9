"""Resolve a command's `--model` to a loaded Engine: an explicit path/hub id, the config's model, or the
embedded default (a random-init tiny Qwen3 created on first use in the user cache).

This is the only place CLI commands get models from, so they all agree on the default and the messages.
"""
from __future__ import annotations

import sys

from tinygpt.config import Config, default_model_dir


def model_path(cfg: Config) -> str:
    """The model to use; creates the embedded default if nothing was named and it does not exist yet."""
    if cfg.model:
        return cfg.model
    path = default_model_dir(cfg.default_preset)
    if not (path / "config.json").exists():
        from tinygpt.runtime.presets import InitSpec, init_model

        sys.stderr.write(f"creating the embedded default model ({cfg.default_preset}) in {path} ...\n")
        init_model(path, InitSpec(preset=cfg.default_preset), force=True)
    return str(path)


def load_engine(cfg: Config):
    """Load the model named by `cfg` into an Engine."""
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    return Engine(load(model_path(cfg)), prefix_cache_bytes=cfg.prefix_cache_mb << 20)


def add_model_flag(parser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="model directory or Hugging Face hub id (default: config `model`, else the embedded "
                             "default tiny model, created on first use)")


def resolve(args) -> Config:
    from tinygpt.config import load_config

    return load_config({"model": getattr(args, "model", None)})


