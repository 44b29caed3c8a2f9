"""A supervised fine-tuning run, start to finish: model, data, adapters, the loop, checkpoints, outputs.

`run(cfg)` starts a run in a new directory; `run(cfg, resume=RUN)` continues one from its latest checkpoint with
its saved config (flags that would change the result are refused), restoring weights, optimizer state, step and
data cursor, so it ends exactly where the uninterrupted run would. The first Ctrl-C finishes the current step,
writes a checkpoint and returns status "interrupted" (the CLI exits 130); a second one stops at once (the last
checkpoint stays intact). Not here: argument parsing (tinygpt/cli_train.py), the loop itself (loop.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from tinygpt.trainer import checkpoint, run_dir
from tinygpt.trainer.config import TrainConfig, read_toml, to_toml
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.loop import Hooks, LoopConfig, StepMetrics, train
from tinygpt.trainer.outputs import check_register, finish
from tinygpt.trainer.progress import TrainProgress

# flags that change nothing a resumed run computes (where it runs, what it registers at the end)
RESUME_FREE = {"out", "register"}


@dataclass
class Interrupt:
    """Ctrl-C while training: the first asks the loop to stop after its step, a second raises at once."""

    requested: bool = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def resumed_config(run: Path, flags: dict, cls=TrainConfig):
    """The config saved in `run` (a `cls`: TrainConfig, or another run's config dataclass), with only `--register`
    applied; TrainError naming any other flag that was given with a different value, or an `--out` that is not
    the run itself."""
    saved = cls(**read_toml(run / "config.toml", cls))
    if flags.get("out") is not None and Path(flags["out"]).expanduser().resolve() != run.resolve():
        raise TrainError(f"--resume {run} continues the run where it is; leave out --out {flags['out']} (to repeat "
                         f"it elsewhere: --config {run / 'config.toml'} --out {flags['out']})")
    changed = sorted(k for k, v in flags.items() if v is not None and k not in RESUME_FREE and v != getattr(saved, k))
    if changed:
        raise TrainError(f"--resume continues {run} with its saved config; these flags would change it: "
                         f"{', '.join('--' + k.replace('_', '-') for k in changed)}. Start a new run to change them")
    if flags.get("register") is not None:
        saved.register = flags["register"]
    return saved


def _absolute_paths(cfg: TrainConfig, run: Path) -> None:
    """Local paths in the config made absolute, so `--resume` works from any directory."""
    from tinygpt.runtime.store import ModelStore

    cfg.out = str(run.resolve())
    for key in ("data", "valid_data", "model", "teacher_logprobs"):
        value = getattr(cfg, key)
        if key == "model" and value in ModelStore().names():
            continue  # a registered name or alias means the store's entry, wherever the run is resumed
        if value and Path(value).expanduser().exists():
            setattr(cfg, key, str(Path(value).expanduser().resolve()))


def config_key(cfg: TrainConfig) -> str:
    """A hash of everything in the config that changes what the run computes."""
    kept = {k: v for k, v in cfg.as_dict().items() if k not in RESUME_FREE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    return cfg.iters or max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accumulation))


class _RunHooks(Hooks):
    def __init__(self, save: Callable[[int], None], metrics: run_dir.Metrics, progress: TrainProgress,
                 interrupt: Interrupt):
        self.save, self.metrics, self.progress, self.interrupt = save, metrics, progress, interrupt
        self.saved_at = -1

    def on_step(self, m: StepMetrics) -> None:
        self.metrics.add(step=m.step, loss=m.loss, tokens=m.tokens, lr=m.learning_rate, seconds=round(m.seconds, 6))
        self.progress.step(m)

    def on_validation(self, step: int, loss: float, seconds: float) -> None:
        self.metrics.add(step=step, val_loss=loss, seconds=round(seconds, 6))
        self.progress.validation(step, loss)

    def on_checkpoint(self, step: int) -> None:
        self.save(step)
        self.saved_at = step

    def stop_requested(self) -> bool:
        return self.interrupt.requested


def run(cfg: TrainConfig, *, resume: str | None = None, flags: dict | None = None,
        announce: Callable[[TrainConfig, Path], None] | None = None) -> dict:
    """Train as `cfg` says (or continue the run `resume`); return the summary (also saved in RUN/run.json)."""
    if resume:
        run_path, marker = run_dir.open_existing(resume)
        if marker.get("kind") == "pretrain":
            raise TrainError(f"--resume {run_path}: a pretraining run; continue it with `tinygpt pretrain --resume`")
        cfg = resumed_config(run_path, flags or {})
        done = run_dir.completed(run_path, marker, (flags or {}).get("register"))
        if done is not None:
            return done  # nothing left to do: the run and its summary stay as they are
    else:
        check_register(cfg.register)
        run_path, marker = run_dir.create(cfg.out), {}
        _absolute_paths(cfg, run_path)
        run_dir.write_atomic(run_path / "config.toml", to_toml(cfg))
    if announce is not None:
        announce(cfg, run_path)
    return run_dir.run_recorded(run_path, lambda: _train(cfg, run_path, marker, resume=bool(resume)),
                                  new=not resume)


def _train(cfg: TrainConfig, run: Path, marker: dict, *, resume: bool) -> dict:
    import mlx.core as mx

    from tinygpt.runtime.models import fingerprint, load
    from tinygpt.trainer.batches import BucketedBatches, fingerprint as data_fingerprint
    from tinygpt.trainer.data import load_data, long_warning
    from tinygpt.trainer.losses import has_plain_head, masked_nll, trained_nll
    from tinygpt.trainer.optim import make_optimizer
    from tinygpt.trainer.tuning import count_parameters, prepare

    loaded = load(cfg.model)
    base = {"base": str(loaded.path.resolve()), "base_fingerprint": fingerprint(loaded.path),
            "tokenizer_hash": loaded.tokenizer_hash}
    if resume and marker.get("base_fingerprint") not in (None, base["base_fingerprint"]):
        raise TrainError(f"--resume {run}: the base model changed since the run started (fingerprint "
                         f"{marker['base_fingerprint']} then, {base['base_fingerprint']} now)")
    run_dir.write_status(run, "running", **base)
    data = load_data(cfg, loaded, run)
    run_dir.write_atomic(run / "data-report.json", json.dumps(data.report, indent=2) + "\n")
    warning = long_warning(data.report, cfg)
    if warning:
        sys.stderr.write(warning + "\n")
        sys.stderr.flush()
    gather = has_plain_head(loaded.model)  # logits only where trained (losses.trained_nll)
    loss = trained_nll if gather else masked_nll
    shape = {"max_width": cfg.max_seq_length - 1, "gather": gather}
    source = BucketedBatches(data.train, cfg.batch_size, cfg.seed, **shape)
    valid = BucketedBatches(data.valid, cfg.batch_size, cfg.seed, shuffle=False, **shape) if data.valid else None
    fingerprints = {"data": data_fingerprint(data.train), "config": config_key(cfg)}
    if cfg.teacher_logprobs:  # offline distillation: the same batches, carrying the teacher's top-k (distill.py)
        from tinygpt.trainer.distill import plug

        source, valid, loss, teacher_key = plug(cfg, loaded, data, source, valid)
        fingerprints["data"] += f"+{teacher_key}"
    iters = total_steps(cfg, len(source))
    mx.random.seed(cfg.seed)  # the adapter's initial weights
    adapter_config = prepare(loaded.model, cfg, cfg.model)
    optimizer = make_optimizer(cfg, iters)
    start = restore(run, loaded.model, optimizer, fingerprints) if resume else 0
    trainable, total = count_parameters(loaded.model)
    last, lines = run_steps(cfg, run, loaded.model, optimizer, source, valid, loss, iters=iters, start=start,
                            fingerprints=fingerprints, adapter_config=adapter_config)
    summary = summarize(lines, start=start, last=last, iters=iters, run=run, data=data.report,
                        params=(trainable, total), peak=mx.get_peak_memory())
    if last == iters:
        summary.update(finish(cfg, run, loaded, adapter_config, base, lines))
    return summary


def run_steps(cfg, run: Path, model, optimizer, source, valid, loss: Callable, *, iters: int, start: int,
              fingerprints: dict, adapter_config: dict) -> tuple[int, list[dict]]:
    """Steps start+1 .. iters of the one loop with a run's hooks: metrics.jsonl (truncated to `start`), progress,
    a checkpoint every cfg.save_every steps and at the end (with the data cursor and the fingerprints a resume
    checks), and Ctrl-C (finish the step, checkpoint, stop). `cfg` has TrainConfig's loop fields (grad_accumulation,
    val_every, val_batches, save_every, keep_checkpoints, seed, grad_checkpoint). Returns (last step, the metrics
    lines)."""
    import mlx.core as mx

    ckpts = run / "checkpoints"
    loop_cfg = LoopConfig(iters=iters, grad_accumulation=cfg.grad_accumulation, grad_clip=cfg.grad_clip,
                          val_every=cfg.val_every, val_batches=cfg.val_batches, save_every=cfg.save_every,
                          seed=cfg.seed, grad_checkpoint=cfg.grad_checkpoint)

    def save(step: int) -> None:
        meta = {"cursor": step * cfg.grad_accumulation, "seed": cfg.seed, "iters": iters,
                "rng": "reseeded per micro-batch from (seed, cursor): loop.micro_seed",
                "data_fingerprint": fingerprints["data"], "config": fingerprints["config"]}
        checkpoint.save(ckpts, step, model, optimizer, adapter_config, meta, cfg.keep_checkpoints)
        progress.note(f"checkpoint {ckpts / f'step-{step:07d}'}")

    metrics = run_dir.Metrics(run, keep_through_step=start if start else -1)  # a fresh start redoes step 0
    interrupt = Interrupt()
    mx.reset_peak_memory()
    try:
        with TrainProgress(iters, start) as progress, interrupt.installed():
            if start:
                progress.note(f"resumed at step {start}/{iters} from {ckpts / f'step-{start:07d}'}")
            hooks = _RunHooks(save, metrics, progress, interrupt)
            last = train(model, optimizer, source, config=loop_cfg, loss=loss, valid=valid,
                         start_step=start, hooks=hooks)
            if last < iters and hooks.saved_at != last:
                save(last)
    finally:
        metrics.close()
    return last, metrics.lines


def restore(run: Path, model, optimizer, fingerprints: dict) -> int:
    """Restore the newest complete checkpoint of `run` into `model` and `optimizer` (partial ones a killed run
    left are deleted first); its step, or 0 when there is none. TrainError if it was trained on other data or
    another config (`fingerprints`: {"data", "config"})."""
    ckpts = run / "checkpoints"
    checkpoint.remove_partial(ckpts)
    found = checkpoint.steps(ckpts)
    if not found:
        return 0  # killed before its first checkpoint: it starts over, as the same run
    state = checkpoint.read_state(found[-1])
    for key, label in (("data_fingerprint", "data"), ("config", "config")):
        if state.get(key) != fingerprints["data" if key == "data_fingerprint" else "config"]:
            raise TrainError(f"--resume {run}: the {label} differs from what checkpoint {found[-1].name} was trained "
                             "on; a resumed run must see the same data and config")
    return int(checkpoint.restore(found[-1], model, optimizer)["step"])


def summarize(lines: list[dict], *, start: int, last: int, iters: int, run: Path, data: dict, params, peak) -> dict:
    steps = [m for m in lines if "loss" in m]
    vals = [m for m in lines if "val_loss" in m]
    this_session = [m for m in steps if m["step"] > start]
    seconds = sum(m["seconds"] for m in this_session)
    tokens = sum(m["tokens"] for m in this_session)
    return {
        "status": "complete" if last == iters else "interrupted", "run_dir": str(run), "step": last, "iters": iters,
        "resumed_from": start or None, "first_loss": steps[0]["loss"] if steps else None,
        "final_loss": steps[-1]["loss"] if steps else None, "val_loss": vals[-1]["val_loss"] if vals else None,
        "tokens_trained": sum(m["tokens"] for m in steps), "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "peak_memory_mb": round(peak / 2**20, 1), "trainable_params": params[0], "total_params": params[1],
        "train_examples": data["train_examples"], "valid_examples": data["valid_examples"],
        **{key: data[key] for key in ("train_long", "valid_long") if key in data},
    }


def config_flags(args) -> dict:
    """The TrainConfig fields present on an argparse namespace (None = flag not given)."""
    return {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
