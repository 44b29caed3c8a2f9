"""The FastAPI app: OpenAI and Ollama surfaces on one socket, over one generation worker.

`create_app(config)` starts the worker (which loads the model; a bad model raises `ModelLoadError` here, before
any socket is bound), mounts both routers, maps every error to the right wire shape, publishes the OpenAPI
spec at /openapi.json (docs at /docs), and wraps the app in the Guard (Host allow-list, API key, body limit)
and a CORS policy that admits only localhost pages unless told otherwise. Anything a client sends gets a 4xx
at worst; a 500 means a bug here. Not here: binding sockets (tinygpt/cli_serve.py).
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from tinygpt.web import ollama_api, openai_api, openapi
from tinygpt.web.config import ServeConfig, ServerState
from tinygpt.web.errors import ApiError, error_response
from tinygpt.web.guard import Guard
from tinygpt.web.worker import Worker

log = logging.getLogger("tinygpt.serve")
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
VERSION = "0.1.0"


def create_app(config: ServeConfig) -> FastAPI:
    """The app, with its worker started and the model loaded."""
    worker = Worker(config.model, config.worker_config())
    card = worker.start()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="tinygpt serve", version=VERSION, lifespan=lifespan, docs_url="/docs",
                  redoc_url=None, openapi_url="/openapi.json",
                  description="OpenAI- and Ollama-compatible API for one local MLX model.")
    app.state.tg = ServerState(config=config, worker=worker, card=card, started=time.time())
    app.include_router(openai_api.router)
    app.include_router(ollama_api.router)
    _errors(app)
    openapi.install(app, sorted({card.name, card.ollama_name}))
    app.add_middleware(Guard, allowed_hosts=config.host_allow_list(), api_key=config.api_key,
                       max_body=config.max_body_bytes)
    app.add_middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS, allow_origins=list(config.cors_origins),
                       allow_methods=["GET", "POST", "OPTIONS", "HEAD", "DELETE"], allow_headers=["*"])
    return app


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
