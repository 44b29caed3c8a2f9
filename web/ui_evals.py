"""The UI's Eval results page: /ui/evals, and its JSON under /ui/api/evals/.

It reads what `tinygpt eval` and `tinygpt eval-gate` wrote under the server's evals directory (`evals_dir`,
searched recursively; `traces/` and hidden folders skipped): runs (`*.run.json` + `*.results.jsonl`) and gate
verdicts (any `*.json` whose kind is `tinygpt.gate-result`). `/parse` checks a dropped result-row JSONL against
`ResultRow` (the rows, or a 400 naming the line). `/summary` gives, for chosen runs and dropped rows, each arm's
pass rate per (suite, split) and category with its Wilson interval, and each arm's paired difference from a
baseline arm, computed by the gate's own code (evals/paired.py pairs, evals/compare.py compares, default
GateConfig). An arm is (model name, model fingerprint, policy): an adapter, a retrained checkpoint or a scripted
replay is its own bar. A difference whose interval lies wholly below 0, with its two-sided p below 5%, is flagged
`regression` (above 0: `improvement`). Nothing here decides verdicts (the gate does) or writes a file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import msgspec
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.evals import stats
from tinygpt.evals.compare import compare
from tinygpt.evals.errors import EvalError
from tinygpt.evals.gate import RESULT_KIND, GateResult
from tinygpt.evals.gate_config import GateConfig
from tinygpt.evals.paired import ArmRows, arm_rows, pair
from tinygpt.evals.results import SCHEMA_VERSION, ResultRow, Run, RunManifest, read_manifest, read_run
from tinygpt.web.errors import ApiError, decode
from tinygpt.web.ui import page
from tinygpt.web.ui_traces import episode_url

router = APIRouter(include_in_schema=False)
SKIP_DIRS = {"traces", "checkpoints", "adapter", "episodes", "__pycache__", "node_modules"}
MANIFEST, ROWS = ".run.json", ".results.jsonl"
GATE_SNIFF = 4096  # the kind is the first key of gate-result.json
_ROW = msgspec.json.Decoder(ResultRow)


class SummaryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refs: list[str] = []  # runs under evals_dir, by the `ref` /index gave
    rows: list[ResultRow] = []  # rows of a dropped file (/parse checked them)
    baseline: str | None = None  # an arm id; None: a base model's arm if there is one


def evals_dir(request: Request) -> Path:
    return Path(request.app.state.tg.config.evals_dir).expanduser()


def _json(body) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


@router.get("/ui/evals")
async def evals_page() -> Response:
    return page("evals.html")


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
            if name.endswith(MANIFEST):
                manifests.append(path)
            elif name.endswith(ROWS) and not (Path(here) / (name[: -len(ROWS)] + MANIFEST)).is_file():
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


def _ref(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def resolve(root: Path, ref: str, suffix: str) -> Path:
    """The file `ref` names under `root`, or a 404; a ref never leaves `root`."""
    parts = PurePosixPath(ref).parts
    path = root.joinpath(*parts) if parts else root
    inside = not PurePosixPath(ref).is_absolute() and ".." not in parts and ref.endswith(suffix)
    if not inside or not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
        raise ApiError(404, f"no eval file {ref!r} under {root}; reload the list of runs")
    return path


@router.get("/ui/api/evals/index")
def index(request: Request) -> Response:
    """Every run and gate result under the evals directory, and what could not be read (`problems`)."""
    root = evals_dir(request)
    if not root.is_dir():
        return _json({"dir": str(root), "exists": False, "runs": [], "gates": [], "problems": []})
    manifests, gate_files, orphans = scan(root)
    runs, gates = [], []
    problems = [f"{p}: a results file without its run manifest ({MANIFEST}); drop it on this page to see its rows"
                for p in orphans]
    for path in manifests:
        try:
            m = read_manifest(path)
        except (EvalError, OSError) as exc:
            problems.append(str(exc))
            continue
        runs.append({"ref": _ref(root, path), **msgspec.structs.asdict(m), "mode": m.settings.get("mode")})
    for path in gate_files:
        try:
            g = msgspec.json.decode(path.read_bytes(), type=GateResult)
        except (msgspec.DecodeError, OSError) as exc:
            problems.append(f"{path}: not a readable gate result ({exc})")
            continue
        gates.append({"ref": _ref(root, path), **msgspec.to_builtins(g),
                      "candidate_arm": arm_id(g.candidate.model, g.candidate.model_fingerprint, g.candidate.policy),
                      "baseline_arm": arm_id(g.baseline.model, g.baseline.model_fingerprint, g.baseline.policy)})
    runs.sort(key=lambda r: r["started_at"])
    gates.sort(key=lambda g: g["created_at"])
    return _json({"dir": str(root), "exists": True, "runs": runs, "gates": gates, "problems": problems})


def decode_rows(data: bytes, name: str, *, torn_tail_ok: bool = False) -> list[ResultRow]:
    """Result rows from JSONL bytes; a line that is not a valid row is an EvalError naming `name` and the line.
    `torn_tail_ok`: a last line without its newline is a row still being written, and is left out."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif torn_tail_ok and lines:
        lines.pop()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise EvalError(f"{name} line {number}: empty; a result-row file holds one JSON row per line")
        try:
            row = _ROW.decode(line)
        except msgspec.DecodeError as exc:
            raise EvalError(f"{name} line {number}: not a valid result row ({exc}); rows are what "
                            "`tinygpt eval` writes into <run id>.results.jsonl (docs/evals.md)") from None
        if row.version > SCHEMA_VERSION:
            raise EvalError(f"{name} line {number}: result row version {row.version} is newer than this tinygpt "
                            f"reads ({SCHEMA_VERSION}); upgrade tinygpt")
        rows.append(row)
    return rows


def load_run(root: Path, ref: str) -> tuple[Run, bool]:
    """The run `ref` names and whether it is partial: a complete run is read as the gate reads it (strict); a
    running one as far as it got; a failed one is a 400 (its rows say nothing about the model)."""
    path = resolve(root, ref, MANIFEST)
    try:
        manifest = read_manifest(path)
        if manifest.status != "running":
            return read_run(path), False
        rows_path = path.with_name(path.name[: -len(MANIFEST)] + ROWS)
        data = rows_path.read_bytes() if rows_path.is_file() else b""
        return Run(manifest=manifest, rows=decode_rows(data, str(rows_path), torn_tail_ok=True),
                   path=str(rows_path)), True
    except (EvalError, OSError) as exc:
        raise ApiError(400, str(exc)) from None


@router.get("/ui/api/evals/rows")
def rows(request: Request, ref: str) -> Response:
    """One run's rows (a running run: those written so far), its folder relative to the evals directory (a
    row's `trajectories` are relative to it), and per row the viewer's URL of each trajectory (None: not found
    under the server's trajectory roots)."""
    config = request.app.state.tg.config
    run, partial = load_run(evals_dir(request), ref)
    folder = Path(run.path).parent
    links = [[episode_url(config, folder / t) for t in row.trajectories] for row in run.rows]
    return _json({"ref": ref, "run_id": run.manifest.run_id, "partial": partial,
                  "folder": PurePosixPath(ref).parent.as_posix(), "rows": run.rows, "links": links})


@router.post("/ui/api/evals/parse")
async def parse(request: Request, name: str = "the file") -> Response:
    """A dropped result-row JSONL, checked row by row: the rows, or a 400 that names the bad line."""
    data = await request.body()
    if not data.strip():
        raise ApiError(400, f"{name} is empty; drop a result-row JSONL (<run id>.results.jsonl of `tinygpt eval`)")
    try:
        found = decode_rows(data, name)
    except EvalError as exc:
        raise ApiError(400, str(exc)) from None
    return _json({"name": name, "count": len(found), "rows": found})


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


def _flag(d) -> str:
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
            "method": d.method, "wins": d.wins, "losses": d.losses, "flag": _flag(d),
            "categories": [{"category": c.category, "tasks": c.tasks, "estimate": c.diff.estimate,
                            "lo": c.diff.lo, "hi": c.diff.hi, "p_value": c.diff.p_value,
                            "flag": _flag(c.diff)} for c in s.categories]}


def summarize(runs: list[Run], partial: set[str], baseline: str | None) -> dict:
    """Arms x (suite, split) cells with Wilson intervals, and every arm's paired difference from `baseline`."""
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


def _summary_of(root: Path, asked: SummaryRequest) -> dict:
    loaded = [load_run(root, ref) for ref in dict.fromkeys(asked.refs)]
    runs = [run for run, _ in loaded] + dropped_runs(asked.rows)
    return summarize(runs, {run.manifest.run_id for run, part in loaded if part}, asked.baseline)


@router.post("/ui/api/evals/summary")
async def summary(request: Request) -> Response:
    """Bars and differences for the chosen runs (`refs`) and dropped rows (`rows`) against `baseline`."""
    asked = decode(await request.body(), SummaryRequest)
    return _json(await run_in_threadpool(_summary_of, evals_dir(request), asked))
