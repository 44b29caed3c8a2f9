"""The UI's Training runs page: /ui/runs, and its JSON under /ui/api/runs/.

It lists the trainer's run directories under the server's runs directory (`runs_dir`, searched recursively: a
folder whose run.json says `created_by: "tinygpt train"`, which `tinygpt train`, `pretrain` and `distill
on-policy` all write; retrain's RUN/train/vN/run too), and serves a run's metrics.jsonl from a byte offset so
the page appends new points as the run writes them. The files' format is the trainer's (trainer/run_dir.py,
docs/trainer.md): one JSON object per line, `{"step", "loss", "tokens", "lr", "seconds"}` per step and
`{"step", "val_loss", "seconds"}` per validation. A last line without its newline is a line being written: it is
left for the next read. On `--resume` the trainer rewrites the file (new inode, cut to a checkpoint's step), so
a reader whose file id or offset no longer fits starts over (`reset`). A run is `running` while run.json says so
and one of its files changed in the last STALE_S seconds; a run.json still saying running after that is shown as
`stalled` (killed, or hung). It reads only; the trainer is not imported (web may not import it).
"""
from __future__ import annotations

import json
import math
import os
import time
import tomllib
from pathlib import Path, PurePosixPath

import msgspec
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.web.errors import ApiError
from tinygpt.web.ui import page

router = APIRouter(include_in_schema=False)
MARKER, METRICS, CREATOR = "run.json", "metrics.jsonl", "tinygpt train"  # trainer/run_dir.py's names
CONFIGS = ("config.toml", "on-policy.toml")  # the resolved config a run saves (on-policy.toml: distill on-policy)
SKIP_DIRS = {"traces", "checkpoints", "adapter", "episodes", "__pycache__", "node_modules"}
STALE_S = 120.0  # a running run that wrote nothing for this long is shown as stalled
MAX_READ = 4 << 20  # bytes of metrics one poll returns at most (`more` says there is more)
FIELDS = ("step", "loss", "val_loss", "tokens", "lr", "seconds")  # what a point carries to the page
CONFIG_KEYS = ("model", "method", "iters", "epochs", "learning_rate", "batch_size", "preset", "student", "teacher")


def runs_dir(request: Request) -> Path:
    return Path(request.app.state.tg.config.runs_dir).expanduser()


def _json(body) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


@router.get("/ui/runs")
async def runs_page() -> Response:
    return page("runs.html")


def _marker(run: Path) -> dict | None:
    try:
        meta = json.loads((run / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("created_by") == CREATOR else None


def scan(root: Path) -> list[Path]:
    """The trainer's run directories under `root` (a run's own folders are not searched further)."""
    found = []
    for here, dirs, files in os.walk(root):
        if MARKER in files and _marker(Path(here)) is not None:
            found.append(Path(here))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
    return found


def resolve(root: Path, ref: str) -> Path:
    """The run directory `ref` names under `root`, or a 404; a ref never leaves `root`."""
    parts = PurePosixPath(ref).parts
    path = root.joinpath(*parts) if parts else root
    if (PurePosixPath(ref).is_absolute() or ".." in parts or not path.is_dir()
            or not path.resolve().is_relative_to(root.resolve()) or _marker(path) is None):
        raise ApiError(404, f"no training run {ref!r} under {root}; reload the list of runs")
    return path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _config(run: Path) -> dict:
    for name in CONFIGS:
        try:
            data = tomllib.loads((run / name).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        return {k: data[k] for k in CONFIG_KEYS if isinstance(data.get(k), (str, int, float)) and data[k] != ""}
    return {}


def describe(root: Path, run: Path, meta: dict, now: float) -> dict:
    """What the list shows of one run."""
    updated = max(_mtime(run / MARKER), _mtime(run / METRICS))
    status = str(meta.get("status", "unknown"))
    live = status == "running" and now - updated < STALE_S
    summary = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
    kind = meta.get("kind") or ("distill on-policy" if (run / "on-policy.toml").is_file() else "train")
    rel = run.relative_to(root).as_posix()
    return {"ref": rel if rel != "." else ".", "name": run.name, "kind": str(kind),
            "status": status if live or status != "running" else "stalled", "live": live,
            "created": meta.get("created"), "updated": updated, "error": meta.get("error"),
            "config": _config(run), "summary": {k: v for k, v in summary.items() if isinstance(v, (str, int, float))},
            "metrics_bytes": (run / METRICS).stat().st_size if (run / METRICS).is_file() else 0}


@router.get("/ui/api/runs/index")
def index(request: Request) -> Response:
    """Every training run under the runs directory, newest change first."""
    root = runs_dir(request)
    if not root.is_dir():
        return _json({"dir": str(root), "exists": False, "runs": [], "stale_s": STALE_S})
    now = time.time()
    runs = [describe(root, run, meta, now) for run in scan(root) if (meta := _marker(run)) is not None]
    runs.sort(key=lambda r: r["updated"], reverse=True)
    return _json({"dir": str(root), "exists": True, "runs": runs, "stale_s": STALE_S})


def _point(line: bytes) -> dict | None:
    """A metrics line as a point (only numeric FIELDS), or None for a line that is not one."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("step"), int) or isinstance(obj.get("step"), bool):
        return None
    point = {k: obj[k] for k in FIELDS if isinstance(obj.get(k), (int, float)) and not isinstance(obj[k], bool)
             and math.isfinite(obj[k])}
    return point if len(point) > 1 else None


def read_metrics(path: Path, offset: int, file_id: str | None) -> dict:
    """The points written to `path` after `offset`, up to the last complete line; `reset` when the file is
    another one than the reader's (`file_id`) or shorter than its offset (both: a resumed run rewrote it)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"file": None, "offset": 0, "reset": offset > 0, "points": [], "skipped": 0, "more": False}
    fid = f"{st.st_dev}:{st.st_ino}"
    reset = (file_id is not None and file_id != fid) or offset > st.st_size
    start = 0 if reset else offset
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(MAX_READ)
    end = data.rfind(b"\n") + 1  # a line still being written (no newline yet) waits for the next read
    if end == 0 and len(data) == MAX_READ:
        raise ApiError(422, f"{path}: a line longer than {MAX_READ} bytes; this is not a metrics file of the trainer")
    points, skipped = [], 0
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        point = _point(line)
        if point is None:
            skipped += 1
        else:
            points.append(point)
    return {"file": fid, "offset": start + end, "reset": reset, "points": points, "skipped": skipped,
            "more": start + len(data) < st.st_size}


@router.get("/ui/api/runs/metrics")
def metrics(request: Request, ref: str, offset: int = 0, file: str | None = None) -> Response:
    """A run's metrics points after `offset` (0: from the start), with its status for the page's polling."""
    if offset < 0:
        raise ApiError(400, f"offset {offset} is negative; start at 0 and send the offset the last answer gave")
    root = runs_dir(request)
    run = resolve(root, ref)
    # the status first: a run that says it ended wrote its last metrics before, so this read has them all
    described = describe(root, run, _marker(run) or {}, time.time())
    return _json({"ref": ref, **read_metrics(run / METRICS, offset, file), "run": described})
