"""Result rows: one JSONL schema for every suite, written as episodes finish and read back strictly.

An eval run writes two files into its results directory, both created new (never over another file):
`<run_id>.results.jsonl`, one `ResultRow` per episode (task x pass), appended and fsynced as each finishes, and
`<run_id>.run.json`, the run's `RunManifest`, which says "running" until the last row is written and
"complete" after. `read_results(dir)` reads every run under a directory: a line that does not decode, a row of
another run, or a run that did not complete is an `EvalError` naming the file (and line). It does not run
episodes (runner.py) or compare models (gate.py).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from tinygpt.evals.errors import EvalError

SCHEMA_VERSION = 1
ROWS_SUFFIX = ".results.jsonl"
MANIFEST_SUFFIX = ".run.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class _Value(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Frozen, keyword-only, strict about unknown fields (these are read back from user-visible files)."""


class ResultRow(_Value, kw_only=True):
    """One episode of one task: who ran it, whether it passed, what it cost, and where its trajectory is.

    `model` is the name the model was asked for (what `eval-gate --candidate/--baseline` match); its identity is
    `model_fingerprint` (base fingerprint, plus "+<adapter fingerprint>" for a specialist). `policy` is "model"
    for the model's own answers; a scripted replay ("gold", "drop-last") says so. `pass_index` is k in 0..K-1.
    `trajectories` are the episode's `.atraj` files (one per user turn), relative to the results directory."""

    version: int = SCHEMA_VERSION
    run_id: str
    suite: str
    split: str
    category: str
    task_id: str
    pass_index: Count
    model: str
    model_fingerprint: str
    base_fingerprint: str
    adapter_fingerprint: str | None = None
    policy: str
    passed: bool
    score: Fraction
    steps: Count
    prompt_tokens: Count
    output_tokens: Count
    latency_s: Annotated[float, msgspec.Meta(ge=0.0)]
    seed: int | None = None
    finished_at: float
    end: str  # how the last turn ended: answer | max_steps | length | truncated_call
    reason: str = ""  # the checker's words
    trajectories: list[str] = []


class RunManifest(_Value, kw_only=True):
    """What a run set out to do, and whether it finished."""

    version: int = SCHEMA_VERSION
    run_id: str
    status: Literal["running", "complete", "failed"]  # failed: every row was written, but some say nothing
    suite: str
    split: str
    model: str
    model_fingerprint: str
    policy: str
    passes: Annotated[int, msgspec.Meta(ge=1)]
    tasks: Count
    started_at: float
    finished_at: float | None = None
    settings: dict[str, str | int | float | bool | None] = {}
    failure: str = ""  # why a "failed" run's results say nothing about the model


def new_run_id(suite: str, split: str, model: str) -> str:
    """A file-safe id naming the run: suite, split, model and the start time (plus a few random hex digits)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = _UNSAFE.sub("_", Path(model.rstrip("/")).name or model).strip("._") or "model"
    return f"{suite}-{split}-{name[:48]}-{stamp}-{os.urandom(2).hex()}"


class ResultWriter:
    """Writes one run: the manifest (running, then complete) and its rows, each fsynced as it is added."""

    def __init__(self, directory: str | Path, manifest: RunManifest):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = manifest
        self.rows_path = self.directory / f"{manifest.run_id}{ROWS_SUFFIX}"
        self.manifest_path = self.directory / f"{manifest.run_id}{MANIFEST_SUFFIX}"
        for path in (self.rows_path, self.manifest_path):
            if path.exists() or path.is_symlink():
                raise EvalError(f"{path} already exists; a run writes only new files (choose another --out)")
        self._write_manifest(manifest)
        self._rows = open(self.rows_path, "xb")
        self.count = 0

    def _write_manifest(self, manifest: RunManifest) -> None:
        tmp = self.manifest_path.with_name(f".{self.manifest_path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)

    def add(self, row: ResultRow) -> None:
        """Append one row (durable when this returns)."""
        if row.run_id != self.manifest.run_id:
            raise ValueError(f"row of run {row.run_id!r} given to the writer of run {self.manifest.run_id!r}")
        self._rows.write(msgspec.json.encode(row) + b"\n")
        self._rows.flush()
        os.fsync(self._rows.fileno())
        self.count += 1

    def complete(self) -> None:
        """Mark the run complete; call only after every planned row was added."""
        if self.count != self.manifest.tasks * self.manifest.passes:
            raise ValueError(f"run {self.manifest.run_id}: {self.count} rows written, "
                             f"{self.manifest.tasks * self.manifest.passes} planned")
        self.close()
        self.manifest = msgspec.structs.replace(self.manifest, status="complete", finished_at=time.time())
        self._write_manifest(self.manifest)

    def fail(self, why: str) -> None:
        """Mark the run failed (every planned row written, but `why` makes them meaningless, e.g. a remote model
        that never answered): eval-gate will not use it."""
        self.close()
        self.manifest = msgspec.structs.replace(self.manifest, status="failed", finished_at=time.time(), failure=why)
        self._write_manifest(self.manifest)

    def close(self) -> None:
        if not self._rows.closed:
            self._rows.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """A complete run as read back: its manifest and its rows."""

    manifest: RunManifest
    rows: list[ResultRow]
    path: str


def read_rows(path: str | Path) -> list[ResultRow]:
    """Every row of one results file; a line that is not a valid row is an EvalError naming file and line."""
    path = Path(path)
    decoder = msgspec.json.Decoder(ResultRow)
    rows = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                raise EvalError(f"{path}:{number}: empty line; a results file holds one JSON row per line")
            try:
                row = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise EvalError(f"{path}:{number}: not a valid result row ({exc}); the file was damaged or edited "
                                "by hand: restore it or run the eval again") from None
            if row.version > SCHEMA_VERSION:
                raise EvalError(f"{path}:{number}: result row version {row.version} is newer than this tinygpt "
                                f"reads ({SCHEMA_VERSION}); upgrade tinygpt")
            rows.append(row)
    return rows


def read_manifest(path: str | Path) -> RunManifest:
    path = Path(path)
    try:
        return msgspec.json.decode(path.read_bytes(), type=RunManifest)
    except msgspec.DecodeError as exc:
        raise EvalError(f"{path}: not a valid run manifest ({exc}); restore it or run the eval again") from None


def read_run(manifest_path: str | Path) -> Run:
    """One complete run; an unfinished run or a row that does not belong to it is an EvalError."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    rows_path = manifest_path.with_name(manifest_path.name[: -len(MANIFEST_SUFFIX)] + ROWS_SUFFIX)
    if manifest.status == "failed":
        raise EvalError(f"run {manifest.run_id} ({manifest_path}) failed: {manifest.failure}. Its results say "
                        "nothing about the model; run the eval again, or move the run's files out of the directory")
    if manifest.status != "complete":
        raise EvalError(f"run {manifest.run_id} ({manifest_path}) did not complete (interrupted or still running): "
                        "its results are partial. Run the eval again, or move the run's files out of the directory")
    if not rows_path.is_file():
        raise EvalError(f"{rows_path}: missing; the run's manifest {manifest_path} has no results file beside it")
    rows = read_rows(rows_path)
    for number, row in enumerate(rows, 1):
        if (row.run_id, row.suite, row.split, row.model) != (manifest.run_id, manifest.suite, manifest.split,
                                                             manifest.model):
            raise EvalError(f"{rows_path}:{number}: the row says run {row.run_id} / suite {row.suite} / split "
                            f"{row.split} / model {row.model}, its manifest says {manifest.run_id} / {manifest.suite}"
                            f" / {manifest.split} / {manifest.model}; the files were mixed up")
    if len(rows) != manifest.tasks * manifest.passes:
        raise EvalError(f"{rows_path}: {len(rows)} rows, but the run planned {manifest.tasks} tasks x "
                        f"{manifest.passes} passes; the file was truncated or edited")
    return Run(manifest=manifest, rows=rows, path=str(rows_path))


def read_results(directory: str | Path) -> list[Run]:
    """Every run under `directory` (searched recursively), complete and valid, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EvalError(f"results directory {directory} does not exist; give the --out of `tinygpt eval`")
    manifests = sorted(directory.rglob(f"*{MANIFEST_SUFFIX}"))
    orphans = [p for p in directory.rglob(f"*{ROWS_SUFFIX}")
               if not p.with_name(p.name[: -len(ROWS_SUFFIX)] + MANIFEST_SUFFIX).is_file()]
    if orphans:
        raise EvalError(f"{orphans[0]}: a results file without its run manifest (*{MANIFEST_SUFFIX}); "
                        "restore the manifest or move the file away")
    runs = [read_run(p) for p in manifests if not p.name.startswith(".")]
    return sorted(runs, key=lambda r: r.manifest.started_at)
