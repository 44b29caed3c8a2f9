"""The browser UI's shell: `/ui` and its pages, the UI's own static files, and the vendored chart library.

`router` serves `/ui` (a redirect to the chat page), the pages of the chat playground and the trajectory viewer
(their APIs: ui_chat.py, ui_traces.py), every file of `web/static/` at `/ui/static/<name>` (read from the
installed package, so a wheel serves what it carries), and plotly's `plotly.min.js` at `/ui/vendor/plotly.min.js`,
read from the installed `plotly` Python package's own data: no CDN, nothing fetched at run time, no third-party
code in this repository. Pages are static HTML plus the project's own small vanilla JS; data comes from JSON APIs
under `/ui/api/...`; URLs in docs/ui.md. `/favicon.ico` is an empty 204, so a browser's automatic request for it
logs no error. Not here: chat sessions (ui_chat.py), the trajectory store (ui_traces.py), the eval and run pages
(ui_evals.py, ui_runs.py).
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import re
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from tinygpt.web import ui_chat, ui_traces
from tinygpt.web.errors import ApiError

router = APIRouter(include_in_schema=False)
router.include_router(ui_chat.router)
router.include_router(ui_traces.router)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json"}
PLOTLY_FILE = ("package_data", "plotly.min.js")


def static_bytes(name: str) -> bytes:
    """A file of the UI's static folder, from the installed package; 404 for anything else."""
    if not _NAME.fullmatch(name) or Path(name).suffix not in MEDIA:
        raise ApiError(404, f"no UI file {name!r}")
    resource = importlib.resources.files(__package__).joinpath("static", name)  # the installed package's copy
    try:
        return resource.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ApiError(404, f"no UI file {name!r}") from None


def page(name: str) -> Response:
    """An HTML page of the static folder (never cached: it names the scripts it loads)."""
    return Response(static_bytes(name), media_type=MEDIA[".html"], headers={"Cache-Control": "no-cache"})


@router.get("/ui")
@router.get("/ui/")
async def home() -> Response:
    return RedirectResponse("/ui/chat", status_code=307)


@router.get("/ui/chat")
async def chat_page() -> Response:
    return page("chat.html")


@router.get("/ui/trajectories")
@router.get("/ui/trajectories/{ref:path}")
async def trajectories_page(ref: str = "") -> Response:
    """The list, or one episode (the page reads which from its URL)."""
    return page("trajectories.html")


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    return Response(static_bytes(name), media_type=MEDIA[Path(name).suffix], headers={"Cache-Control": "no-cache"})


def plotly_path() -> Path | None:
    """Where the installed plotly package keeps plotly.min.js (found without importing plotly), or None."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder).joinpath(*PLOTLY_FILE)
        if path.is_file():
            return path
    return None


@router.get("/ui/vendor/plotly.min.js")
async def plotly() -> Response:
    """plotly.min.js from the `plotly` package (a dependency of tinygpt); a 404 that says how to fix it if absent."""
    path = plotly_path()
    if path is None:
        raise ApiError(404, "plotly.min.js is not installed here: the charts need the `plotly` Python package "
                            "(a tinygpt dependency); run `pip install plotly` or ./bootstrap.sh setup")
    return Response(path.read_bytes(), media_type=MEDIA[".js"], headers={"Cache-Control": "public, max-age=3600"})
