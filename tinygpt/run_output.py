"""What the training commands (`train`, `pretrain`, `distill on-policy`) print around a run: the resolved config
at the start (stderr) and the summary at the end (stdout, unless --json)."""
from __future__ import annotations

import sys
from typing import Callable


def announcer(command: str) -> Callable[[object, object], None]:
    """The `announce(cfg, run)` hook the trainer calls once the run directory is known: the config, as TOML."""
    def announce(cfg, run) -> None:
        from tinygpt.trainer.config import to_toml

        sys.stderr.write(f"tinygpt {command} -> {run}\n" + "".join(f"  {line}\n" for line in to_toml(cfg).splitlines()))
        sys.stderr.flush()
    return announce


def summary_text(s: dict, *, command: str, artifact: str, use: str, parameters: bool = False) -> str:
    """A run's summary for people: its end, losses, speed and peak memory; how to continue an unfinished run, or
    the run's `artifact` (the summary key of what it made) and how to `use` a registered one."""
    if s.get("already_complete"):
        rest = {k: v for k, v in s.items() if k != "already_complete"}
        return (f"{s['run_dir']} is already complete; nothing was run or rewritten. Its summary:\n"
                + summary_text(rest, command=command, artifact=artifact, use=use, parameters=parameters))
    loss = f"loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}" if s["final_loss"] is not None else "no steps"
    val = f" (val {s['val_loss']:.4f})" if s["val_loss"] is not None else ""
    speed = f", {s['tokens_per_s']:,.0f} tok/s" if s["tokens_per_s"] else ""
    size = f"{s['total_params']:,} parameters, " if parameters else ""
    head = (f"{s['status']}: step {s['step']}/{s['iters']} in {s['seconds']:.1f} s, {loss}{val}{speed}, {size}"
            f"peak {s['peak_memory_mb']:,.0f} MB")
    if s["status"] != "complete":
        return head + f"\ncontinue with: tinygpt {command} --resume {s['run_dir']}"
    tail = f"\n{artifact}: {s[artifact]}\nloss curve: {s['loss_png']}"
    if s.get("registered"):
        tail += f"\nregistered as {s['registered']}: tinygpt {use} --model {s['registered']}"
    return head + tail
