"""The UI's Eval results page: /ui/evals, and its JSON under /ui/api/evals/ — HTTP only.

What the page shows (runs and gate verdicts under the server's evals directory, a run's rows, a dropped
result-row JSONL checked line by line, bars with Wilson intervals and paired differences by the gate's own code)
is read by an `EvalResults` provider that whoever builds the app hands in (`create_app(..., eval_results=)`;
`tinygpt serve` gives tinygpt.evals.results_view, since web may not import evals). This module maps its answers
to JSON, its `NotFound` to a 404 and its `ViewError` to a 400, and adds what only the server knows: each row's
trajectory links in the viewer. Without a provider the page still loads and every API call is a 404 that says
why. Nothing here reads a result file, computes a statistic or writes a file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import msgspec
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.web.errors import ApiError, decode
from tinygpt.web.ui import page
from tinygpt.web.ui_traces import episode_url

router = APIRouter(include_in_schema=False)
NOT_WIRED = ("eval results are not available in this server: it was started without the evals package wiring "
             "(`tinygpt serve` wires it; an app from web.app.create_app needs eval_results=, docs/ui.md)")


class EvalResults(Protocol):
    """What the Eval results page reads (tinygpt.evals.results_view is one: a module with this surface). `root`
    is the evals directory; every answer is a JSON-able dict. A ref that names no eval file under `root` raises
    `NotFound`; bad input (a damaged or failed run, a bad line of a dropped file, rows that are not result rows)
    raises `ViewError`; both with a message for the user. Anything else it raises is a bug."""

    NotFound: type[Exception]
    ViewError: type[Exception]

    def index(self, root: Path) -> dict:
        """{dir, exists, runs: [{ref, run_id, status, model, ...}], gates: [{ref, verdict, ...}], problems}."""

    def run_rows(self, root: Path, ref: str) -> dict:
        """{ref, run_id, partial, folder (relative to root), rows: [{..., trajectories (relative to folder)}]}."""

    def parse_rows(self, data: bytes, name: str) -> dict:
        """{name, count, rows} of a result-row JSONL."""

    def summary(self, root: Path, refs: list[str], rows: list[dict], baseline: str | None) -> dict:
        """{arms, baseline, confidence, groups, cells, errors, comparisons} of the runs `refs` and the rows."""


class SummaryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refs: list[str] = []  # runs under evals_dir, by the `ref` /index gave
    rows: list[dict[str, Any]] = []  # rows of a dropped file (/parse checked them; the provider checks again)
    baseline: str | None = None  # an arm id; None: a base model's arm if there is one


def install(app, eval_results: EvalResults | None) -> None:
    """Give `app` the provider its Eval results page reads (create_app calls this; None: the page says so)."""
    app.state.eval_results = eval_results


def provider(request: Request) -> EvalResults:
    found = getattr(request.app.state, "eval_results", None)
    if found is None:
        raise ApiError(404, NOT_WIRED)
    return found


def evals_dir(request: Request) -> Path:
    return Path(request.app.state.tg.config.evals_dir).expanduser()


def answer(results: EvalResults, call: Callable[..., dict], *args) -> dict:
    """`call(*args)`, its user errors as 4xx."""
    try:
        return call(*args)
    except results.NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except results.ViewError as exc:
        raise ApiError(400, str(exc)) from None


def _json(body) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


@router.get("/ui/evals")
async def evals_page() -> Response:
    return page("evals.html")


@router.get("/ui/api/evals/index")
def index(request: Request) -> Response:
    """Every run and gate result under the evals directory, and what could not be read (`problems`)."""
    results = provider(request)
    return _json(answer(results, results.index, evals_dir(request)))


@router.get("/ui/api/evals/rows")
def rows(request: Request, ref: str) -> Response:
    """One run's rows (a running run: those written so far), its folder relative to the evals directory, and per
    row the viewer's URL of each trajectory (None: not found under the server's trajectory roots)."""
    results = provider(request)
    root = evals_dir(request)
    body = answer(results, results.run_rows, root, ref)
    folder = root / body["folder"]
    config = request.app.state.tg.config
    body["links"] = [[episode_url(config, folder / t) for t in row["trajectories"]] for row in body["rows"]]
    return _json(body)


@router.post("/ui/api/evals/parse")
async def parse(request: Request, name: str = "the file") -> Response:
    """A dropped result-row JSONL, checked row by row: the rows, or a 400 that names the bad line."""
    results = provider(request)
    data = await request.body()
    return _json(await run_in_threadpool(answer, results, results.parse_rows, data, name))


@router.post("/ui/api/evals/summary")
async def summary(request: Request) -> Response:
    """Bars and differences for the chosen runs (`refs`) and dropped rows (`rows`) against `baseline`."""
    results = provider(request)
    asked = decode(await request.body(), SummaryRequest)
    return _json(await run_in_threadpool(answer, results, results.summary, evals_dir(request), asked.refs,
                                         asked.rows, asked.baseline))
