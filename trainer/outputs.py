"""What a run leaves when it ends: the final adapter, the loss curve, and the adapter registered under a name.

`check_register(name)` refuses a bad or taken `--register` name before a run starts (so a long run does not fail
at its end); `finish(...)` writes RUN/adapter/ (mlx-lm format + the tinygpt.json marker), RUN/loss.png, and
registers the adapter when asked. Used by every kind of run (sft.py, on_policy_run.py). Not here: checkpoints
(checkpoint.py), the run directory's other files (run_dir.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from tinygpt.trainer import run_dir
from tinygpt.trainer.config import TrainConfig
from tinygpt.trainer.errors import TrainError


def check_register(name: str) -> None:
    """TrainError unless `name` ("" = none) can name a new entry of the model store."""
    if not name:
        return
    from tinygpt.runtime.store import NAME_RE, ModelStore

    if not NAME_RE.fullmatch(name):
        raise TrainError(f"--register {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    if name in ModelStore().names():
        raise TrainError(f"--register {name!r}: the name is taken in the model store; choose another")


def finish(cfg: TrainConfig, run: Path, loaded, adapter_config: dict, base: dict, lines: list[dict]) -> dict:
    """Write the final adapter and loss curve; register the adapter if asked."""
    from tinygpt.runtime.presets import ADAPTER_CREATOR, MARKER
    from tinygpt.trainer import loss_plot
    from tinygpt.trainer.tuning import write_adapter

    def write(tmp: Path) -> None:
        write_adapter(tmp, loaded.model, adapter_config)
        meta = {"created_by": ADAPTER_CREATOR, "trained_by": run_dir.CREATOR, "kind": "adapter", "run": str(run.resolve()),
                "fine_tune_type": cfg.method, "rank": cfg.rank, "scale": cfg.scale, "num_layers": cfg.num_layers,
                "created": run_dir.now(), **base, "files": sorted(["adapters.safetensors", "adapter_config.json", MARKER])}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")

    adapter = run_dir.write_dir(run, "adapter", write)
    axes = loss_plot.write(run / "loss.png", [(m["step"], m["loss"]) for m in lines if "loss" in m],
                           [(m["step"], m["val_loss"]) for m in lines if "val_loss" in m])
    out = {"adapter": str(adapter), "loss_png": str(run / "loss.png"), "loss_png_axes": axes}
    if cfg.register:
        from tinygpt.runtime.store import ModelStore

        entry = ModelStore().add(cfg.register, adapter, base=cfg.model)
        out["registered"] = entry.name
    return out
