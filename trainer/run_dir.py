"""A training run's directory and the files in it; a run writes only into a directory it created.

    RUN/run.json           marker (created_by "tinygpt train") + status: running | complete | interrupted | failed
    RUN/config.toml        the resolved config (reusable: tinygpt train --config RUN/config.toml); an on-policy
                           distillation run saves RUN/on-policy.toml instead (and records RUN/episodes/)
    RUN/data-report.json   what the data loader read, skipped, split and windowed
    RUN/metrics.jsonl      one line per step ({"step", "loss", "tokens", "lr", "seconds"}) and per validation
    RUN/loss.png           the loss curve
    RUN/checkpoints/       step-NNNNNNN/ (checkpoint.py)
    RUN/adapter/           the final adapter, mlx-lm format + tinygpt.json marker
    RUN/data/              traces-to-data's export, when --data is a directory of traces
A new run needs a new or empty directory; `--resume` needs one whose run.json tinygpt wrote. Every file is
written to a temp name and renamed, so an interrupted write never leaves a half file under a real name. A new run
that fails before its first step is removed again (only what it wrote, and the directories it made: run.json's
`made_dirs`), so the same command can be retried as it is.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tinygpt.trainer.errors import TrainError

MARKER = "run.json"
CREATOR = "tinygpt train"
CONFIGS = {"config.toml": "tinygpt train", "on-policy.toml": "tinygpt distill on-policy"}  # saved config -> command
KINDS = {"pretrain": "tinygpt pretrain"}  # run.json kinds that save a config.toml not `tinygpt train`'s


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` through a temp file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _default() -> Path:
    base = Path(f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    out, n = base, 1
    while out.exists() or out.is_symlink():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def target(given: str) -> Path:
    """The directory a new run would take (`given`, or runs/train-<time>), checked: new or empty; nothing is
    written. TrainError otherwise."""
    out = Path(given).expanduser() if given else _default()
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        hint = (f"continue that run with --resume {out}" if out.is_dir() and read_marker(out) is not None else
                "it is not a run of tinygpt's and is left as it is; name a new directory")
        raise TrainError(f"--out {out} exists and is not an empty directory; a run writes only into a new one "
                         f"({hint})")
    return out


def create(given: str, **fields) -> Path:
    """A new run directory (an empty one is taken), its run.json saying `fields` (e.g. the run's kind) from the
    start; anything else is refused, nothing is written."""
    out = target(given)
    made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_status(out, "running", created=now(), made_dirs=[str(p.resolve()) for p in made], **fields)
    except OSError as exc:
        raise TrainError(f"cannot create the run directory {out}: {exc.strerror or exc}; choose a writable --out") \
            from exc
    return out


def absolute(value: str, *, model: bool = False) -> str:
    """`value` made absolute when it names an existing local path (so `--resume` works from any directory); a
    model's registered name or alias is kept (it means the store's entry, wherever the run is resumed)."""
    if not value or not Path(value).expanduser().exists():
        return value
    if model:
        from tinygpt.runtime.store import ModelStore

        if value in ModelStore().names():
            return value
    return str(Path(value).expanduser().resolve())


def read_marker(run: Path) -> dict | None:
    try:
        meta = json.loads((run / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("created_by") == CREATOR else None


def open_existing(given: str, config: str = "config.toml") -> tuple[Path, dict]:
    """The run directory `--resume` names, with its marker; TrainError if tinygpt did not make it, or made it
    for another kind of run (each kind saves its config under its own name: `config`)."""
    run = Path(given).expanduser()
    meta = read_marker(run) if run.is_dir() and not run.is_symlink() else None
    if meta is None:
        raise TrainError(f"--resume {run}: not a run directory of `tinygpt train` (no {MARKER} of it there)")
    if not (run / config).is_file():
        other = next((name for name in CONFIGS if name != config and (run / name).is_file()), None)
        if other is not None:
            command = KINDS.get(meta.get("kind"), CONFIGS[other])
            raise TrainError(f"--resume {run}: a run of `{command}`, not of this command; continue it with "
                             f"`{command} --resume {run}`")
        raise TrainError(f"--resume {run}: its {config} is missing; the run cannot be continued as it was")
    return run, meta


def completed(run: Path, marker: dict, register: str | None = None) -> dict | None:
    """The saved summary of a run that is already complete, for a `--resume` that has nothing left to do (and
    rewrites nothing); None if it is not complete. TrainError for `--register` then: nothing would register it."""
    if marker.get("status") != "complete" or not isinstance(marker.get("summary"), dict):
        return None
    if register:
        raise TrainError(f"--resume {run}: the run is already complete, so nothing is left to register at its end; "
                         f"register its output with `tinygpt models add {register} ...`")
    return {**marker["summary"], "resumed_from": marker["summary"]["step"], "already_complete": True}


def write_status(run: Path, status: str, **fields) -> dict:
    """Update run.json: keep what it holds, set `status` and `fields`."""
    meta = read_marker(run) or {"created_by": CREATOR}
    meta.update(fields, status=status, updated=now())
    write_atomic(run / MARKER, json.dumps(meta, indent=2) + "\n")
    return meta


# what a run writes in its directory (besides hidden temp names): the only entries `discard` removes
WRITTEN = ("run.json", *CONFIGS, "data-report.json", "metrics.jsonl", "loss.png", "checkpoints", "adapter", "data",
           "episodes", "model")


def stepped(run: Path) -> bool:
    """True once the run has recorded a step or a checkpoint."""
    metrics = run / "metrics.jsonl"
    return (metrics.is_file() and metrics.stat().st_size > 0) or any((run / "checkpoints").glob("step-*"))


def discard(run: Path) -> None:
    """Remove a new run that failed before its first step: the entries it wrote, then the directories it made
    (run.json's `made_dirs`) if nothing else is in them. Anything else found there is left as it is."""
    made = [Path(p) for p in (read_marker(run) or {}).get("made_dirs", [])]
    for name in WRITTEN:
        entry = run / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.exists() or entry.is_symlink():
            entry.unlink(missing_ok=True)
    for entry in run.glob(".*.tmp"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for directory in made:
        try:
            directory.rmdir()  # only when empty
        except OSError:
            break


def run_recorded(run: Path, body, *, new: bool = False) -> dict:
    """`body()` -> summary, with run.json saying how it ended: `interrupted` (Ctrl-C), `failed` (with the error),
    or the summary's own status, with the summary and the seconds it took. A `new` run that fails before its first
    step is discarded instead, so nothing blocks the retry."""
    started = time.perf_counter()
    try:
        summary = body()
    except KeyboardInterrupt:
        write_status(run, "interrupted")
        raise
    except BaseException as exc:
        if new and isinstance(exc, Exception) and not stepped(run):
            discard(run)
            raise
        write_status(run, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_status(run, summary["status"], summary=summary)
    return summary


class Metrics:
    """metrics.jsonl: appended line by line (flushed), truncated to a checkpoint's step on resume."""

    def __init__(self, run: Path, keep_through_step: int | None = None):
        self.path = run / "metrics.jsonl"
        self.lines: list[dict] = []
        if self.path.exists():
            self.lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        if keep_through_step is not None:
            self.lines = [m for m in self.lines if m["step"] <= keep_through_step]
            write_atomic(self.path, "".join(json.dumps(m) + "\n" for m in self.lines))
        self._fh = open(self.path, "a", encoding="utf-8")

    def add(self, **record) -> None:
        self.lines.append(record)
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def write_dir(run: Path, name: str, write) -> Path:
    """Make RUN/name with `write(tmp_dir)` in a temp dir and a rename; a previous RUN/name (ours) is replaced."""
    final = run / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=run))
    try:
        write(tmp)
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{name}.old.", suffix=".tmp", dir=run))
            os.replace(final, aside / name)
            os.replace(tmp, final)
            shutil.rmtree(aside)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
