"""Eval results as a viewer reads them: what `tinygpt eval` and `tinygpt eval-gate` wrote under a directory.

Four functions, the surface the UI's Eval results page is given (`tinygpt serve` hands this module to the app as
its `eval_results`, since web may not import evals; the page's side is web/ui_evals.py's `EvalResults`):
`index(root)` lists runs (`*.run.json` + `*.results.jsonl`, searched recursively; `traces/` and hidden folders
skipped) and gate verdicts (any `*.json` whose kind is `tinygpt.gate-result`); `run_rows(root, ref)` gives one
run's rows; `parse_rows(data, name)` checks a dropped result-row JSONL against `ResultRow`, line by line; and
`summary(root, refs, rows, baseline)` gives each arm's pass rate per (suite, split) and category with its Wilson
interval, and each arm's paired difference from a baseline arm, computed by the gate's own code (paired.py pairs,
compare.py compares, default GateConfig). An arm is (model name, model fingerprint, policy): an adapter, a
retrained checkpoint or a scripted replay is its own arm. A difference whose interval lies wholly below 0, with
its two-sided p below 5%, is flagged `regression` (above 0: `improvement`).
All return plain JSON-able dicts. Bad input raises `ViewError` (a file or rows that are wrong; HTTP 400) or
`NotFound` (a ref that names no eval file under `root`; HTTP 404), each with a message for the user; both are
EvalErrors. Nothing here decides verdicts (the gate does), writes a file, or knows about HTTP.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import msgspec

from tinygpt.evals import stats
from tinygpt.evals.compare import compare
from tinygpt.evals.errors import EvalError
from tinygpt.evals.gate import RESULT_KIND, GateResult
from tinygpt.evals.gate_config import GateConfig
from tinygpt.evals.paired import ArmRows, arm_rows, pair
from tinygpt.evals.results import (MANIFEST_SUFFIX, ROWS_SUFFIX, SCHEMA_VERSION, ResultRow, Run, RunManifest,
                                   read_manifest, read_run)

SKIP_DIRS = {"traces", "checkpoints", "adapter", "episodes", "__pycache__", "node_modules"}
GATE_SNIFF = 4096  # the kind is the first key of gate-result.json
_ROW = msgspec.json.Decoder(ResultRow)


class ViewError(EvalError):
    """A results file, dropped rows or a request that cannot be shown; the message says what to do."""


class NotFound(EvalError):
    """A ref that names no eval file under the results directory."""


# ---- what is there ---------------------------------------------------------------------------------------
def scan(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """The run manifests, gate results and results files without a manifest under `root`, sorted; symbolic links
    to folders are not followed."""
    manifests, gates, orphans = [], [], []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(here) / name
            if name.startswith("."):
                continue
            if name.endswith(MANIFEST_SUFFIX):
                manifests.append(path)
            elif name.endswith(ROWS_SUFFIX):
                if not (Path(here) / (name[: -len(ROWS_SUFFIX)] + MANIFEST_SUFFIX)).is_file():
                    orphans.append(path)
            elif name.endswith(".json") and _is_gate(path):
                gates.append(path)
    return manifests, gates, orphans


def _is_gate(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return RESULT_KIND.encode() in f.read(GATE_SNIFF)
    except OSError:
        return False


def index(root: Path) -> dict:
    """Every run and gate result under `root` (each with its `ref`, its path relative to `root`), oldest first,
    and what could not be read (`problems`, one line each); `exists` False when `root` is not a directory."""
    root = Path(root)
    if not root.is_dir():
        return {"dir": str(root), "exists": False, "runs": [], "gates": [], "problems": []}
    manifests, gate_files, orphans = scan(root)
    runs, gates = [], []
    problems = [f"{p}: a results file without its run manifest ({MANIFEST_SUFFIX}); drop it on this page to see "
                "its rows" for p in orphans]
    for path in manifests:
        try:
            m = read_manifest(path)
        except (EvalError, OSError) as exc:
            problems.append(str(exc))
            continue
        runs.append({"ref": path.relative_to(root).as_posix(), **msgspec.to_builtins(m),
                     "mode": m.settings.get("mode")})
    for path in gate_files:
        try:
            g = msgspec.json.decode(path.read_bytes(), type=GateResult)
        except (msgspec.DecodeError, OSError) as exc:
            problems.append(f"{path}: not a readable gate result ({exc})")
            continue
        gates.append({"ref": path.relative_to(root).as_posix(), **msgspec.to_builtins(g),
                      "candidate_arm": arm_id(g.candidate.model, g.candidate.model_fingerprint, g.candidate.policy),
                      "baseline_arm": arm_id(g.baseline.model, g.baseline.model_fingerprint, g.baseline.policy)})
    runs.sort(key=lambda r: r["started_at"])
    gates.sort(key=lambda g: g["created_at"])
    return {"dir": str(root), "exists": True, "runs": runs, "gates": gates, "problems": problems}


# ---- rows ------------------------------------------------------------------------------------------------
def resolve(root: Path, ref: str, suffix: str) -> Path:
    """The file `ref` names under `root`; NotFound otherwise. A ref never leaves `root`."""
    parts = PurePosixPath(ref).parts
    path = root.joinpath(*parts) if parts else root
    inside = not PurePosixPath(ref).is_absolute() and ".." not in parts and ref.endswith(suffix)
    if not inside or not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
        raise NotFound(f"no eval file {ref!r} under {root}; reload the list of runs")
    return path


def decode_rows(data: bytes, name: str, *, torn_tail_ok: bool = False) -> list[ResultRow]:
    """Result rows from JSONL bytes; a line that is not a valid row is a ViewError naming `name` and the line.
    `torn_tail_ok`: a last line without its newline is a row still being written, and is left out."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif torn_tail_ok and lines:
        lines.pop()
    found = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ViewError(f"{name} line {number}: empty; a result-row file holds one JSON row per line")
        try:
            row = _ROW.decode(line)
        except msgspec.DecodeError as exc:
            raise ViewError(f"{name} line {number}: not a valid result row ({exc}); rows are what "
                            "`tinygpt eval` writes into <run id>.results.jsonl (docs/evals.md)") from None
        if row.version > SCHEMA_VERSION:
            raise ViewError(f"{name} line {number}: result row version {row.version} is newer than this tinygpt "
                            f"reads ({SCHEMA_VERSION}); upgrade tinygpt")
        found.append(row)
    return found


def load_run(root: Path, ref: str) -> tuple[Run, bool]:
    """The run `ref` names and whether it is partial: a complete run is read as the gate reads it (strict); a
    running one as far as it got; a failed one is a ViewError (its rows say nothing about the model)."""
    path = resolve(root, ref, MANIFEST_SUFFIX)
    try:
        manifest = read_manifest(path)
        if manifest.status != "running":
            return read_run(path), False
        rows_path = path.with_name(path.name[: -len(MANIFEST_SUFFIX)] + ROWS_SUFFIX)
        data = rows_path.read_bytes() if rows_path.is_file() else b""
        return Run(manifest=manifest, rows=decode_rows(data, str(rows_path), torn_tail_ok=True),
                   path=str(rows_path)), True
    except (EvalError, OSError) as exc:
        raise ViewError(str(exc)) from None


def run_rows(root: Path, ref: str) -> dict:
    """One run's rows (a running run: those written so far; `partial`), and its `folder` relative to `root` (a
    row's `trajectories` are relative to it)."""
    run, partial = load_run(Path(root), ref)
    return {"ref": ref, "run_id": run.manifest.run_id, "partial": partial,
            "folder": PurePosixPath(ref).parent.as_posix(), "rows": msgspec.to_builtins(run.rows)}


def parse_rows(data: bytes, name: str) -> dict:
    """A dropped result-row JSONL, checked row by row: `{"name", "count", "rows"}`, or a ViewError naming the
    bad line."""
    if not data.strip():
        raise ViewError(f"{name} is empty; drop a result-row JSONL (<run id>.results.jsonl of `tinygpt eval`)")
    found = decode_rows(data, name)
    return {"name": name, "count": len(found), "rows": msgspec.to_builtins(found)}


# ---- arms, bars and differences --------------------------------------------------------------------------
def arm_id(model: str, fingerprint: str, policy: str) -> str:
    """A stable id of an arm (a link's `baseline=` keeps meaning the same arm as runs are added or removed)."""
    return hashlib.sha256("\x1f".join((model, fingerprint, policy)).encode()).hexdigest()[:12]


def dropped_runs(found: list[ResultRow]) -> list[Run]:
    """Dropped rows as runs (no manifest came with them: one is made from the rows, marked complete)."""
    groups: dict[tuple, list[ResultRow]] = {}
    for row in found:
        key = (row.run_id, row.suite, row.split, row.model, row.model_fingerprint, row.policy)
        groups.setdefault(key, []).append(row)
    out = []
    for (run_id, suite, split, model, fingerprint, policy), group in groups.items():
        manifest = RunManifest(run_id=run_id, status="complete", suite=suite, split=split, model=model,
                               model_fingerprint=fingerprint, policy=policy,
                               passes=max(r.pass_index for r in group) + 1, tasks=len({r.task_id for r in group}),
                               started_at=min(r.finished_at for r in group))
        out.append(Run(manifest=manifest, rows=group, path="(dropped)"))
    return out


def _arms(runs: list[Run]) -> tuple[list[dict], list[Run]]:
    """The arms of these runs, and the runs with each manifest's model replaced by its arm id (what pairing
    selects on), so one name with two identities is two arms rather than an error."""
    arms: dict[str, dict] = {}
    renamed = []
    for run in runs:
        first = run.rows[0] if run.rows else None
        m = run.manifest
        aid = arm_id(m.model, m.model_fingerprint, m.policy)
        arms.setdefault(aid, {"id": aid, "model": m.model, "model_fingerprint": m.model_fingerprint,
                              "base_fingerprint": first.base_fingerprint if first else "",
                              "adapter_fingerprint": first.adapter_fingerprint if first else None,
                              "policy": m.policy})
        renamed.append(msgspec.structs.replace(run, manifest=msgspec.structs.replace(m, model=aid)))
    listed = sorted(arms.values(), key=lambda a: (a["model"], a["model_fingerprint"], a["policy"]))
    names = [a["model"] for a in listed]
    for a in listed:
        a["label"] = a["model"]
        if names.count(a["model"]) > 1:
            fp = a["adapter_fingerprint"] or a["model_fingerprint"]
            a["label"] += f" @{fp[:8]}"
        if a["policy"] != "model":
            a["label"] += f" [{a['policy']}]"
    return listed, renamed


def _rate(rates: list[float]) -> dict:
    n = len(rates)
    mean = sum(rates) / n
    lo, hi = stats.wilson(mean * n, n, GateConfig().confidence)
    return {"tasks": n, "rate": mean, "lo": lo, "hi": hi}


def _cell(arm: ArmRows, suite: str, split: str, aid: str, partial: bool) -> dict:
    cats = sorted(set(arm.categories.values()))
    return {"arm": aid, "suite": suite, "split": split, "passes": arm.passes, "partial": partial,
            **_rate(list(arm.rates.values())),
            "categories": [{"category": c, **_rate([r for t, r in arm.rates.items() if arm.categories[t] == c])}
                           for c in cats]}


def flag(d) -> str:
    """`regression` / `improvement` when the interval excludes 0 and the test agrees (for K = 1 the interval is
    Tango's and the test exact McNemar, which can disagree on a handful of tasks); else `not-significant`."""
    if d.p_value >= 1 - GateConfig().confidence:
        return "not-significant"
    return "regression" if d.hi < 0 else "improvement" if d.lo > 0 else "not-significant"


def _comparison(runs: list[Run], aid: str, base: str, suite: str, split: str) -> dict:
    out = {"arm": aid, "baseline": base, "suite": suite, "split": split}
    try:
        s = compare(pair(runs, candidate=aid, baseline=base, suite=suite, split=split), GateConfig(), 0.0)
    except EvalError as exc:
        return {**out, "error": str(exc)}
    d = s.diff
    return {**out, "tasks": s.tasks, "estimate": d.estimate, "lo": d.lo, "hi": d.hi, "p_value": d.p_value,
            "method": d.method, "wins": d.wins, "losses": d.losses, "flag": flag(d),
            "categories": [{"category": c.category, "tasks": c.tasks, "estimate": c.diff.estimate,
                            "lo": c.diff.lo, "hi": c.diff.hi, "p_value": c.diff.p_value,
                            "flag": flag(c.diff)} for c in s.categories]}


def summarize(runs: list[Run], partial: set[str], baseline: str | None) -> dict:
    """Arms x (suite, split) cells with Wilson intervals, and every arm's paired difference from `baseline` (an
    arm id; not one of these arms: an arm without an adapter, else the first). Cells and comparisons that cannot
    be made carry an `error` in words, arms named by their labels."""
    arms, renamed = _arms([r for r in runs if r.rows])
    groups = sorted({(r.manifest.suite, r.manifest.split) for r in renamed})
    ids = [a["id"] for a in arms]
    if baseline not in ids:
        bases = [a["id"] for a in arms if a["adapter_fingerprint"] is None and a["policy"] == "model"]
        baseline = (bases or ids or [None])[0]
    cells, errors = [], []
    for a in arms:
        for suite, split in groups:
            mine = [r for r in renamed if r.manifest.model == a["id"] and (r.manifest.suite, r.manifest.split)
                    == (suite, split)]
            if not mine:
                continue
            try:
                found = arm_rows(mine, a["id"], suite, split)
            except EvalError as exc:
                errors.append({"arm": a["id"], "suite": suite, "split": split,
                               "error": str(exc).replace(repr(a["id"]), repr(a["label"]))})
                continue
            cells.append(_cell(found, suite, split, a["id"], any(r.manifest.run_id in partial for r in mine)))
    have = {(c["arm"], c["suite"], c["split"]) for c in cells}
    comparisons = [_comparison(renamed, a, baseline, suite, split) for a in ids if a != baseline
                   for suite, split in groups if (a, suite, split) in have and (baseline, suite, split) in have]
    labels = {a["id"]: a["label"] for a in arms}
    for c in comparisons:
        if "error" in c:
            for aid, label in labels.items():
                c["error"] = c["error"].replace(repr(aid), repr(label))
    return {"arms": arms, "baseline": baseline, "confidence": GateConfig().confidence,
            "groups": [{"suite": s, "split": p} for s, p in groups], "cells": cells, "errors": errors,
            "comparisons": comparisons}


def summary(root: Path, refs: list[str], rows: list[dict], baseline: str | None) -> dict:
    """`summarize` of the runs `refs` names under `root` and of `rows` (a dropped file's rows as `parse_rows`
    gave them, as JSON objects); a row that is not a result row is a ViewError naming it."""
    try:
        dropped = msgspec.convert(rows, type=list[ResultRow], strict=False)
    except msgspec.ValidationError as exc:
        raise ViewError(f"the dropped rows are not result rows ({exc}); drop the file again") from None
    loaded = [load_run(Path(root), ref) for ref in dict.fromkeys(refs)]
    runs = [run for run, _ in loaded] + dropped_runs(dropped)
    return summarize(runs, {run.manifest.run_id for run, part in loaded if part}, baseline)
