"""Resolve a command's `--model` to a loaded Engine: a name from the model store (registered model, alias,
specialist = base + adapter), a directory or hub id, the config's model, or the embedded default (a random-init
tiny Qwen3 created on first use in the user cache; also reachable as `--model default`).

This is the only place CLI commands get models from, so they all agree on the default and the messages.
`resolve(args)` builds the config with flag > config file > default for every Config field the command has a
flag for (argparse dest = field name).
It also shows model-creation progress (`creation_progress`), shared with `tinygpt init-model`.
Imports stay light: MLX and friends load only when a model is created or loaded.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

from tinygpt.config import Config, default_model_dir


@contextmanager
def creation_progress(title: str, total: int):
    """Yield a `step(description)` callable: a rich bar on a terminal's stderr, plain numbered lines otherwise."""
    if not sys.stderr.isatty():
        count = 0

        def line(msg: str) -> None:
            nonlocal count
            count += 1
            sys.stderr.write(f"{title}: [{count}/{total}] {msg}\n")
            sys.stderr.flush()

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        job = bar.add_task(title, total=total)
        started = 0

        def step(msg: str) -> None:
            nonlocal started
            if started:
                bar.advance(job)
            started += 1
            bar.update(job, description=f"{title}: {msg}")

        yield step
        bar.update(job, completed=total, description=f"{title}: done")


def model_path(cfg: Config) -> str:
    """The model name to use; creates the embedded default if it is meant and does not exist yet."""
    if cfg.model and cfg.model != "default":
        return cfg.model
    path = default_model_dir(cfg.default_preset)
    if not (path / "config.json").exists():
        from tinygpt.runtime.presets import STEPS, InitModelError, InitSpec, init_model, model_marker

        # force only ever replaces a directory init-model itself made (a damaged earlier default)
        force = path.exists() and model_marker(path) is not None
        sys.stderr.write(f"creating the embedded default model ({cfg.default_preset}) in {path}\n")
        try:
            with creation_progress("embedded model", STEPS) as step:
                init_model(path, InitSpec(preset=cfg.default_preset), force=force, progress=step)
        except InitModelError as exc:
            raise InitModelError(f"{exc}. (This is the embedded default model's place: set $TINYGPT_CACHE to a "
                                 "writable directory, or pass --model DIR.)") from exc
    return str(path)


def load_engine(cfg: Config, **engine_options):
    """Load the model named by `cfg` into an Engine (`engine_options`: Engine's keyword arguments)."""
    from tinygpt.runtime.models import load
    from tinygpt.runtime.store import ModelStore

    # first: a bad --model is reported before the engine's imports
    loaded = load(model_path(cfg), store=ModelStore(default_preset=cfg.default_preset))
    from tinygpt.runtime.engine import Engine

    return Engine(loaded, prefix_cache_bytes=cfg.prefix_cache_mb << 20, **engine_options)


def add_model_flag(parser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="model name (`tinygpt models ls`: registered model, alias, specialist), model "
                             "directory or Hugging Face hub id (default: config `model`, else the embedded default "
                             "tiny model, created on first use)")


def resolve(args) -> Config:
    """The command's config: its flags (None = not given) over the config file over the defaults."""
    from dataclasses import fields

    from tinygpt.config import load_config

    return load_config({f.name: getattr(args, f.name, None) for f in fields(Config)})
