"""The trajectory viewer: browse the server's `.atraj` episodes, open one, see its tokens.

The store is a list of roots (docs/ui.md): `chats` (the chat playground's recordings), each `--traces DIR`, and the
evals directory; each is searched recursively for `.atraj` and `.atraj.part` files. An episode is named by its ref,
`<root>/<path under the root>`, never by its episode id alone (eval runs reuse `<task>.k<pass>`); `episode_url`
gives the page of a file for other pages (the eval results link their rows). Summaries come from
traces.summary (read the fast raw way) and are cached per file by (size, mtime). The token view is the training
row of traces.export (its ids and loss mask, not re-derived here) with each sampled id's recorded logprob; token
texts come from the tokenizer of a served model with the episode's base fingerprint (none: ids only).
Reading only: nothing here writes, moves or deletes a file. Not here: the pages' shell (ui.py), recording chats
(ui_chat.py).
"""
from __future__ import annotations

import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgspec
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.runtime.vocab import cache_dir
from tinygpt.traces.errors import TraceError
from tinygpt.traces.export import kind, training_row
from tinygpt.traces.raw_episode import read_raw_episode
from tinygpt.traces.reader import FINAL_SUFFIX, PART_SUFFIX, read_episode
from tinygpt.traces.summary import summarize
from tinygpt.web.config import ServeConfig, ServerState
from tinygpt.web.errors import ApiError

router = APIRouter(include_in_schema=False)
SKIP_DIRS = {"checkpoints", "adapter", "__pycache__", "node_modules"}  # big folders that never hold episodes
FILTERS = ("task", "split", "model", "route", "status", "passed")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Root:
    name: str
    path: Path


def chat_dir(config: ServeConfig) -> Path:
    """Where the chat playground records its sessions."""
    return Path(config.chat_dir).expanduser() if config.chat_dir else cache_dir() / "chats"


def roots(config: ServeConfig) -> list[Root]:
    """The trajectory roots, in order: chats, each --traces DIR, then the evals directory unless one holds it."""
    out = [Root("chats", chat_dir(config))]
    out += [Root(f"traces-{i}", Path(d).expanduser()) for i, d in enumerate(config.traces, 1)]
    evals = Path(config.evals_dir).expanduser()
    if not any(_inside(evals, r.path) for r in out):
        out.append(Root("evals", evals))
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def episode_url(config: ServeConfig, path: str | Path) -> str | None:
    """The viewer page of the episode file `path` (any spelling), or None if it is under none of the roots."""
    path = Path(path).expanduser()
    for root in roots(config):
        if _inside(path, root.path):
            rel = path.resolve().relative_to(root.path.resolve()).as_posix()
            return "/ui/trajectories/" + _quote(f"{root.name}/{rel}")
    return None


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="/")


def resolve_ref(config: ServeConfig, ref: str) -> Path:
    """The episode file a ref names; a 404 (never a file outside the roots) for anything else."""
    name, _, rest = ref.partition("/")
    parts = PurePosixPath(rest).parts
    root = next((r for r in roots(config) if r.name == name), None)
    ok = (root is not None and parts and ".." not in parts and not PurePosixPath(rest).is_absolute()
          and rest.endswith((FINAL_SUFFIX, PART_SUFFIX)))
    path = root.path.joinpath(*parts) if ok else None
    if path is not None and not path.exists():  # an open episode finished since (or the reverse): same episode
        other = Path(str(path)[:-len(".part")] if str(path).endswith(PART_SUFFIX) else str(path) + ".part")
        path = other if other.is_file() else path
    if path is None or not path.is_file() or not _inside(path, root.path):
        raise ApiError(404, f"no episode {ref!r} in this server's trajectory directories; open the list "
                            "(/ui/trajectories) and pick one")
    return path


# ---- the index --------------------------------------------------------------------------------------------
class Entry(msgspec.Struct, kw_only=True):
    """One episode as the list shows it."""

    ref: str
    url: str
    root: str
    path: str
    episode_id: str
    task_id: str
    split: str
    model: str
    route: str          # the router's target ("" when nothing routed the episode)
    route_kind: str
    created_at: float
    complete: bool
    status: str
    passed: bool | None
    reward: float | None
    calls: int
    tool_calls: int
    prompt_tokens: int
    output_tokens: int
    token_exact: bool
    labels: dict[str, str]


_CACHE: dict[str, tuple[tuple[int, int], Entry | str]] = {}  # path -> ((size, mtime_ns), entry or error)
_LOCK = threading.Lock()


def _files(root: Root) -> list[Path]:
    found = []
    for here, dirs, names in os.walk(root.path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        found += [Path(here) / n for n in names if n.endswith((FINAL_SUFFIX, PART_SUFFIX))]
    return sorted(found)


def _entry(root: Root, path: Path) -> Entry:
    raw = read_raw_episode(path)
    s = summarize(raw)
    h = raw.header
    ref = f"{root.name}/{path.relative_to(root.path).as_posix()}"
    return Entry(ref=ref, url="/ui/trajectories/" + _quote(ref), root=root.name, path=str(path),
                 episode_id=h.episode_id, task_id=h.task_id, split=h.split, model=h.model,
                 route=h.route.target if h.route else "", route_kind=h.route.kind if h.route else "",
                 created_at=h.created_at, complete=s.complete, status=s.status, passed=s.passed, reward=s.reward,
                 calls=s.calls, tool_calls=s.tool_calls, prompt_tokens=s.prompt_tokens,
                 output_tokens=s.output_tokens, token_exact=s.token_exact, labels=dict(h.labels))


def index(config: ServeConfig) -> tuple[list[Entry], list[str], list[dict]]:
    """(every readable episode, newest first; the problems met; the roots and whether they exist)."""
    entries, problems, seen, listed = [], [], set(), []
    for root in roots(config):
        exists = root.path.is_dir()
        listed.append({"name": root.name, "dir": str(root.path), "exists": exists})
        for path in _files(root) if exists else []:
            real = os.path.realpath(path)
            if real in seen:  # a root inside another: each file once
                continue
            seen.add(real)
            try:
                st = path.stat()
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                continue
            key = (st.st_size, st.st_mtime_ns)
            with _LOCK:
                cached = _CACHE.get(str(path))
            if cached is None or cached[0] != key:
                try:
                    value: Entry | str = _entry(root, path)
                except TraceError as exc:
                    value = str(exc)
                with _LOCK:
                    _CACHE[str(path)] = (key, value)
            else:
                value = cached[1]
            (problems.append if isinstance(value, str) else entries.append)(value)
    entries.sort(key=lambda e: (-e.created_at, e.ref))
    return entries, problems, listed


def _passed_text(p: bool | None) -> str:
    return "none" if p is None else ("true" if p else "false")


def _field(e: Entry, name: str) -> str:
    return {"task": e.task_id, "split": e.split, "model": e.model, "route": e.route or "none", "status": e.status,
            "passed": _passed_text(e.passed)}[name]


def select(entries: list[Entry], query: dict[str, str]) -> list[Entry]:
    """The entries every given filter keeps (exact values; `q`: text in the episode or task id; `id`: the
    episode id)."""
    out = entries
    for name in FILTERS:
        want = query.get(name)
        if want:
            out = [e for e in out if _field(e, name) == want]
    if query.get("id"):
        out = [e for e in out if e.episode_id == query["id"]]
    if query.get("q"):
        text = query["q"].lower()
        out = [e for e in out if text in e.episode_id.lower() or text in e.task_id.lower()]
    return out


def facets(entries: list[Entry]) -> dict[str, list[dict]]:
    """Each filter's values with their counts (over all episodes), most common first."""
    out = {}
    for name in FILTERS:
        counts: dict[str, int] = {}
        for e in entries:
            counts[_field(e, name)] = counts.get(_field(e, name), 0) + 1
        out[name] = [{"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return out


def _int(query: dict[str, str], name: str, default: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > hi:
        raise ApiError(400, f"{name} must be a whole number from 0 to {hi}, got {raw!r}")
    return int(raw)


def _json(body, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def config_of(request: Request) -> ServeConfig:
    return request.app.state.tg.config


@router.get("/ui/api/trajectories")
async def list_episodes(request: Request) -> Response:
    """The episodes that match the filters (query parameters: docs/ui.md), newest first, with facets."""
    query = dict(request.query_params)
    unknown = sorted(set(query) - set(FILTERS) - {"id", "q", "offset", "limit"})
    if unknown:
        raise ApiError(400, f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTERS + ('id', 'q'))}, and "
                            "offset / limit")
    if query.get("passed") not in (None, "", "true", "false", "none"):
        raise ApiError(400, f"passed must be true, false or none (no verdict), got {query['passed']!r}")
    offset, limit = _int(query, "offset", 0, 10**9), _int(query, "limit", 200, MAX_LIMIT)
    entries, problems, listed = await run_in_threadpool(index, config_of(request))
    chosen = select(entries, query)
    return _json({"roots": listed, "total": len(entries), "matched": len(chosen),
                  "episodes": chosen[offset:offset + limit], "facets": facets(entries), "problems": problems[:50]})


def _event_json(event) -> dict:
    """A record as the page shows it: ids are left out (the token view has them), their counts kept."""
    body = msgspec.to_builtins(event)
    body["kind"] = kind(event)
    for key in ("token_ids", "prompt_token_ids", "output_token_ids", "logprobs"):
        if key in body:
            ids = body.pop(key)
            body[key.replace("token_ids", "tokens").replace("logprobs", "has_logprobs")] = (
                (ids is not None) if key == "logprobs" else (None if ids is None else len(ids)))
    return body


def episode_json(config: ServeConfig, ref: str) -> dict:
    path = resolve_ref(config, ref)
    try:
        ep = read_episode(path)
    except TraceError as exc:
        raise ApiError(422, f"cannot read this episode: {exc}") from exc
    header = msgspec.to_builtins(ep.header)
    return {"ref": ref, "url": "/ui/trajectories/" + _quote(ref), "path": str(path), "complete": ep.complete,
            "torn_bytes": ep.torn_bytes, "header": header, "events": [_event_json(e) for e in ep.events],
            "end": msgspec.to_builtins(ep.end) if ep.end is not None else None}


@router.get("/ui/api/trajectory")
async def get_episode(request: Request, ref: str = "") -> Response:
    """One episode by ref: header, events (ids as counts) and end."""
    if not ref:
        raise ApiError(400, "pass ref=<root>/<path> (the list's `ref`)", param="ref")
    return _json(await run_in_threadpool(episode_json, config_of(request), ref))


def token_rows(episode, mask_error_turns: bool) -> list[dict]:
    """Each id of the episode's training row, with its loss mask, its model call and (sampled ids) its logprob."""
    row = training_row(episode, mask_error_turns=mask_error_turns)
    logprobs: list[float | None] = []
    calls: list[int] = []
    for index, call in enumerate(e for e in episode.events if kind(e) == "model_call"):
        lps = call.logprobs if call.logprobs is not None else [None] * len(call.output_token_ids)
        logprobs += [None] * len(call.prompt_token_ids) + list(lps)
        calls += [index] * (len(call.prompt_token_ids) + len(call.output_token_ids))
    if len(logprobs) != len(row.input_ids):  # the row is the calls' ids in order: a mismatch is a bug here
        raise RuntimeError(f"token view: {len(logprobs)} logprobs for {len(row.input_ids)} ids")
    return [{"id": t, "mask": m, "logprob": lp, "call": c}
            for t, m, lp, c in zip(row.input_ids, row.loss_mask, logprobs, calls)]


async def _tokenizer(state: ServerState, header) -> tuple[object | None, str]:
    """A tokenizer for the episode's ids: a served model's with its base fingerprint (loading the model named in
    the header if it is served), and what was used or why there is none."""
    base = header.model_fingerprint.split("+", 1)[0]
    cards = list(state.scheduler.cards.values())
    name = state.lookup(header.model)
    if name is not None and not any(c.fingerprint.split("+", 1)[0] == base for c in cards):
        try:
            cards.append(await state.card(name))
        except ApiError:
            pass  # the named model cannot be loaded: the loaded ones may still share its base
    for card in cards:
        if card.fingerprint.split("+", 1)[0] == base:
            return card.tokenizer, f"token texts from {card.name}'s tokenizer"
    return None, (f"no served model has this episode's base ({header.model}, {base}): token ids only; serve that "
                  "model to see the texts")


@router.get("/ui/api/trajectory/tokens")
async def get_tokens(request: Request, ref: str = "", mask_error_turns: bool = False) -> Response:
    """The token view: every id the episode's model consumed or sampled, its loss mask (traces→data's), logprob
    and text."""
    if not ref:
        raise ApiError(400, "pass ref=<root>/<path> (the list's `ref`)", param="ref")
    path = resolve_ref(config_of(request), ref)
    try:
        ep = await run_in_threadpool(read_episode, path)
        rows = token_rows(ep, mask_error_turns)
    except TraceError as exc:
        return _json({"ref": ref, "tokens": [], "note": f"no token view: {exc}"})
    tokenizer, note = await _tokenizer(request.app.state.tg, ep.header)
    if tokenizer is not None:
        for r in rows:
            r["text"] = tokenizer.decode([r["id"]])
    return _json({"ref": ref, "tokens": rows, "note": note, "mask_error_turns": mask_error_turns})
