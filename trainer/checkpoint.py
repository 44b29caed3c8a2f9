"""Checkpoints of a run: trainable weights, optimizer state, step, data cursor and RNG, written atomically.

A checkpoint is RUN/checkpoints/step-NNNNNNN/ holding adapters.safetensors + adapter_config.json (so any
checkpoint is itself an mlx-lm adapter), optimizer.safetensors (the optimizer's whole state tree, step count and
learning rate included, as mlx documents saving it) and state.json (step, data cursor, seed, RNG, data and
config fingerprints). It is written into a hidden temp directory, fsynced, then renamed into place, so a crash
at any moment leaves the previous checkpoints intact and never a half one under a step name. The RNG needs no
array of its own: the loop reseeds it from (seed, micro-batch) before every micro-batch (loop.micro_seed).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.tuning import ADAPTER_WEIGHTS, trainable_weights, write_adapter

STATE = "state.json"
OPTIMIZER = "optimizer.safetensors"
_NAME = re.compile(r"step-(\d{7,})")
_TEMP = re.compile(r"\.step-\d{7,}\..*\.tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, step: int, model, optimizer, adapter_config: dict, meta: dict, keep: int) -> Path:
    """Write the checkpoint of `step` under `root` atomically; keep the newest `keep`; return its path."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:07d}.", suffix=".tmp", dir=root))
    try:
        write_adapter(tmp, model, adapter_config)
        mx.save_safetensors(str(tmp / OPTIMIZER), dict(tree_flatten(optimizer.state)))
        (tmp / STATE).write_text(json.dumps({**meta, "step": step}, indent=2) + "\n")
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if final.exists():  # an older write of the same step (ours: the name is ours): swap, then delete it
            aside = Path(tempfile.mkdtemp(prefix=f".step-{step:07d}.old.", suffix=".tmp", dir=root))
            os.replace(final, aside / "old")
            os.replace(tmp, final)
            shutil.rmtree(aside)
        else:
            os.replace(tmp, final)
        _fsync(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in steps(root)[:-keep]:
        shutil.rmtree(old)
    return final


def steps(root: Path) -> list[Path]:
    """The complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def remove_partial(root: Path) -> None:
    """Delete temp directories a killed run left under `root` (only names this module makes)."""
    for p in root.iterdir() if root.is_dir() else ():
        if _TEMP.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


def read_state(path: Path) -> dict:
    return json.loads((path / STATE).read_text())


def restore(path: Path, model, optimizer) -> dict:
    """Load the checkpoint at `path` into `model` (trainable weights) and `optimizer`; return its state."""
    weights = mx.load(str(path / ADAPTER_WEIGHTS))
    expected = trainable_weights(model)
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
        raise TrainError(f"the checkpoint {path} does not fit this model and method (its weights differ in names "
                         "or shapes); resume it with the config it was saved with")
    model.load_weights(list(weights.items()), strict=False)
    optimizer.state = tree_unflatten(list(mx.load(str(path / OPTIMIZER)).items()))
    mx.eval(model.parameters(), optimizer.state)
    return read_state(path)
