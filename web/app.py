"""The FastAPI app: OpenAI and Ollama surfaces on one socket, over the runtime's one scheduler.

`create_app(config)` builds the catalog of servable models (the `--model` one, named by `--model-name` or its
directory, then every model in the store) and starts the scheduler, which loads the first model (a bad model
raises `ModelLoadError` here, before any socket is bound; others load on first request), mounts both routers,
maps every error to the right wire shape, publishes the OpenAPI spec at /openapi.json (no /docs page: FastAPI's
loads Swagger UI from a CDN, blank offline, and no local copy is installed), answers GET /health, and wraps the
app in the Guard (Host allow-list, API key, cross-site requests, body limit, timeout and nesting depth) and a
CORS policy that admits only localhost pages unless told otherwise. The browser UI (/ui: web/ui.py and the
ui_* routers, docs/ui.md) is mounted on the same app; what it needs from packages web may not import (tool worlds,
eval results) is passed in by the caller (tinygpt/cli_serve.py's `build_app`). Anything a client sends gets a 4xx
at worst; a 500 means a bug here. Not here: binding sockets (tinygpt/cli_serve.py).
"""
from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager

import msgspec
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.web import ollama_api, openai_api, openapi, ui, ui_chat, ui_evals, ui_runs
from tinygpt.runtime.catalog import Catalog
from tinygpt.runtime.provider import ModelProvider
from tinygpt.runtime.scheduler import Scheduler
from tinygpt.runtime.store import DEFAULT, ModelStore
from tinygpt.web.config import AUTO, ServeConfig, ServerState, ollama_name
from tinygpt.web.errors import ApiError, error_response
from tinygpt.web.guard import Guard

log = logging.getLogger("tinygpt.serve")
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
VERSION = "0.1.0"


def create_app(config: ServeConfig, *, tool_worlds: list[ui_chat.ToolWorld] = (),
               eval_results: ui_evals.EvalResults | None = None) -> FastAPI:
    """The app, with its scheduler started and the first model loaded. What web may not import is handed in by
    whoever builds the app (tinygpt serve: tinygpt.cli_serve.build_app): `tool_worlds`, what the UI's chat may act
    in besides "no tools" (web/ui_chat.py); `eval_results`, what the Eval results page reads (web/ui_evals.py;
    None: the page says it is not available)."""
    store = ModelStore(config.store) if config.store else ModelStore()
    catalog = Catalog(config.model, config.model_name, store=store, provider=ModelProvider(store),
                      include_store=config.serve_store)
    router = request_router(config, catalog, store)
    scheduler = Scheduler(catalog, config.scheduler_config(), default=catalog.primary)
    try:
        scheduler.start(preload=[catalog.primary])
    except BaseException:
        # The scheduler thread reports a failed load before it has released MLX's streams; exiting while it
        # still runs aborts the process ("terminate called without an active exception"). Wait for it.
        scheduler.stop()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            _app.state.ui_chats.shutdown()  # finish the chats' episodes while the scheduler still runs
            scheduler.stop()

    app = FastAPI(title="tinygpt serve", version=VERSION, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json",
                  description="OpenAI- and Ollama-compatible API for local MLX models.")
    app.state.tg = ServerState(config=config, scheduler=scheduler, catalog=catalog, started=time.time(),
                               router=router)
    app.add_api_route("/health", _health, methods=["GET"], summary="liveness probe", response_class=Response)
    app.include_router(openai_api.router)
    app.include_router(ollama_api.router)
    app.include_router(ui.router)
    app.include_router(ui_evals.router)
    app.include_router(ui_runs.router)
    ui_chat.install(app, list(tool_worlds))
    ui_evals.install(app, eval_results)
    _errors(app)
    names = catalog.names() + ([AUTO] if router is not None else [])
    openapi.install(app, sorted(set(names) | {ollama_name(n) for n in names}))
    app.add_middleware(Guard, allowed_hosts=config.host_allow_list(), api_key=config.api_key,
                       max_body=config.max_body_bytes, origin_allowed=origin_policy(config),
                       max_depth=config.max_json_depth, body_timeout_s=config.request_timeout_s,
                       keyless_paths=config.keyless_paths())
    app.add_middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS, allow_origins=list(config.cors_origins),
                       allow_methods=["GET", "POST", "OPTIONS", "HEAD", "DELETE"], allow_headers=["*"])
    return app


def request_router(config: ServeConfig, catalog: Catalog, store: ModelStore):
    """The router behind model "auto" (None without --router). Its generalist is the router's own when that names
    a model other than the embedded default, else the model this server was started with. A RouterError or
    BackendError (one line) when the router, its generalist or an enabled backend cannot be used."""
    if not config.router:
        return None
    from tinygpt.router.errors import RouterError
    from tinygpt.router.model import load
    from tinygpt.router.serve_route import load_request_router

    if catalog.primary in (AUTO, f"{AUTO}:latest"):
        raise RouterError(f"the served model is named {catalog.primary!r}, the name --router gives the router; "
                          "choose another --model-name")
    model = load(config.router)
    own = model.meta.settings.generalist
    generalist = catalog.primary if own == DEFAULT else own
    if generalist != catalog.primary and generalist not in catalog.names():
        raise RouterError(f"{config.router}: the router's generalist {generalist!r} is not a model this server "
                          f"serves ({', '.join(catalog.names())}); serve it, or set the router's generalist")
    return load_request_router(config.router, store, generalist=generalist, model=model)


def origin_policy(config: ServeConfig):
    """Whether a browser page's Origin may use the API: localhost pages and --cors-origin ones ('*': any)."""
    local = re.compile(LOCAL_ORIGINS)
    extra = frozenset(config.cors_origins)

    def allowed(origin: str) -> bool:
        return "*" in extra or origin in extra or local.match(origin) is not None

    return allowed


async def _health(request: Request) -> Response:
    """200 while the server runs: the default model and whether it is loaded now (models load on demand)."""
    s: ServerState = request.app.state.tg
    body = {"status": "ok", "model": s.default, "loaded": s.scheduler.loaded}
    return Response(msgspec.json.encode(body), media_type="application/json")


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request.url.path, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code if 400 <= exc.status_code < 500 else 400
        message = {404: f"no route {request.method} {request.url.path}; see /openapi.json",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(status, str(exc.detail))
        return error_response(request.url.path, ApiError(status, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request.url.path, ApiError(400, f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, ApiError(500, f"internal error ({type(exc).__name__}); this is "
                                                              "a bug in tinygpt serve, please report it"))
