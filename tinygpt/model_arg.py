"""Resolve a command's `--model` to a loaded Engine: a name from the model store (registered model, alias,
specialist = base + adapter), a directory or hub id, the config's model, or the embedded default (the tool
world's pretrained base, shipped in the package: runtime/assets/world-base; also reachable as `--model default`).

This is the only place CLI commands get models from, so they all agree on the default and the messages.
`resolve(args)` builds the config with flag > config file > default for every Config field the command has a
flag for (argparse dest = field name).
Nothing is created or written here: the embedded default is only read. Imports stay light: MLX and friends load
only when a model is loaded.
"""
from __future__ import annotations

from tinygpt.config import Config


def model_path(cfg: Config) -> str:
    """The model to use: the config's (flag or file), else the embedded default's directory (in the package)."""
    if cfg.model and cfg.model != "default":
        return cfg.model
    from tinygpt.runtime.store import DEFAULT_DIR  # light: no MLX at import

    return str(DEFAULT_DIR)


def load_engine(cfg: Config, **engine_options):
    """Load the model named by `cfg` into an Engine (`engine_options`: Engine's keyword arguments)."""
    from tinygpt.runtime.models import load
    from tinygpt.runtime.store import ModelStore

    # first: a bad --model is reported before the engine's imports
    loaded = load(model_path(cfg), store=ModelStore())
    from tinygpt.runtime.engine import Engine

    return Engine(loaded, prefix_cache_bytes=cfg.prefix_cache_mb << 20, **engine_options)


def add_model_flag(parser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="model name (`tinygpt models ls`: registered model, alias, specialist), model "
                             "directory or Hugging Face hub id (default: config `model`, else the embedded default: "
                             "the tool world's base model)")


def resolve(args) -> Config:
    """The command's config: its flags (None = not given) over the config file over the defaults."""
    from dataclasses import fields

    from tinygpt.config import load_config

    return load_config({f.name: getattr(args, f.name, None) for f in fields(Config)})
