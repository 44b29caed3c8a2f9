"""The server's configuration (what `tinygpt serve` flags set) and its per-app state.

`ServeConfig` is plain data with safe defaults: loopback only, no CORS beyond localhost pages, an 8 MiB body
limit, a request head and body that must each arrive within 30 s, JSON nested at most 64 levels, at most 4096
new tokens per request; with an API key, a model list asked for without one is empty (MODELS_WITHOUT_KEY).
`ServerState` is what every handler reads from `app.state.tg`: the config, the scheduler, the catalog of servable
models, and `card(name)`, which maps a request's model name to its card (loading the model in the scheduler's
thread on first use) or to a 404 that lists what exists.
Not here: flag parsing (tinygpt/cli_serve.py) or the app itself (app.py).
"""
from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tinygpt.runtime.catalog import Catalog
from tinygpt.runtime.model_card import ModelCard
from tinygpt.runtime.models import ModelLoadError
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig, ShuttingDown
from tinygpt.web.errors import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
# What GET /v1/models answers a request that sends no key at all when the server has one (readiness probes such
# as BFCL's send none): "empty" a 200 with an empty list (the server is up; nothing about what it serves),
# "list" the names (as llama.cpp's server), "refuse" a 401 (as vLLM; BFCL then polls forever).
MODELS_WITHOUT_KEY = ("empty", "list", "refuse")
KEYLESS_PATHS = frozenset({"/v1/models"})
AUTO = "auto"  # the model name that asks the server's router (--router) where a request goes (web/routing.py)


@dataclass
class ServeConfig:
    model: str
    model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 11434
    api_key: str | None = None
    models_without_key: str = "empty"       # with api_key, GET /v1/models without any key: MODELS_WITHOUT_KEY
    allowed_hosts: tuple[str, ...] = ()     # extra Host header names accepted when bound to loopback
    cors_origins: tuple[str, ...] = ()      # extra browser origins (localhost pages are always allowed)
    max_body_bytes: int = 8 << 20
    request_timeout_s: float = 30.0         # a request head or body not all received by then: 408
    max_json_depth: int = 64                # deeper JSON nesting gets 400 before anything decodes it
    max_tokens: int = 4096                  # cap on new tokens per request
    max_batch: int = 8
    prefill_step: int = 0                   # 0: by device (scheduler.default_prefill_step)
    max_sessions: int = 16
    keep_alive_s: float = -1.0              # unload after this idle time; < 0 never
    model_memory_mb: int = -1               # weights of loaded models kept within this (LRU); -1: no limit
    batching: bool = True
    solo: bool = True                       # a lone request decodes outside the batch (faster) until a second
    grammar_backend: str = "llguidance"
    tool_format: str = ""                   # tool-call format by name; "": each model's, from its chat template
    prefix_cache_mb: int = 1024             # prefix cache per loaded model
    store: str | None = None                # model store root (None: the user cache's); its models are served too
    serve_store: bool = True                # False: serve only `model`
    router: str | None = None               # a saved router's directory: model "auto" routes each request
    # the browser UI (docs/ui.md)
    traces: tuple[str, ...] = ()            # directories of .atraj episodes the trajectory viewer browses
    chat_dir: str = ""                      # where chat sessions are recorded; "": <user cache>/chats
    evals_dir: str = "runs"                 # eval runs and gate results (the Evals page; its episodes browsable)
    runs_dir: str = "runs"                  # training runs (the Runs page)
    ui_max_chats: int = 32                  # chat sessions kept in memory (least recently used idle one ends first)

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(max_batch=self.max_batch, prefill_batch=self.max_batch, prefill_step=self.prefill_step,
                               batching=self.batching, solo=self.solo, max_sessions=self.max_sessions,
                               keep_alive_s=self.keep_alive_s, prefix_cache_bytes=self.prefix_cache_mb << 20,
                               memory_budget_bytes=None if self.model_memory_mb < 0 else self.model_memory_mb << 20)

    def keyless_paths(self) -> frozenset[str]:
        """GET paths a request without any key may reach when the server has one (the route decides what it sees)."""
        if self.models_without_key not in MODELS_WITHOUT_KEY:
            raise ValueError(f"models_without_key {self.models_without_key!r} is not one of {MODELS_WITHOUT_KEY}")
        return KEYLESS_PATHS if self.api_key and self.models_without_key != "refuse" else frozenset()

    def host_allow_list(self) -> frozenset[str] | None:
        """Host header names accepted, or None (no check) when not bound to loopback."""
        if not is_loopback(self.host):
            return frozenset(h.lower() for h in self.allowed_hosts) or None
        return frozenset(LOOPBACK_NAMES) | {h.lower() for h in self.allowed_hosts}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerState:
    config: ServeConfig
    scheduler: Scheduler
    catalog: Catalog
    started: float = field(default=0.0)
    router: Any = None  # router.serve_route.RequestRouter when serving with --router (model "auto")

    @property
    def default(self) -> str:
        return self.catalog.primary

    def names(self) -> list[str]:
        return self.catalog.names()

    def lookup(self, requested: str) -> str | None:
        """The servable name a request's model means (Ollama clients add ':latest'; BFCL and others send a model's
        directory or hub id: Catalog.name_for), or None."""
        bare = requested[: -len(":latest")] if requested.endswith(":latest") else requested
        for name in (requested, bare):
            if name in self.scheduler.cards:  # loaded before: no need to read the registry
                return name
        names = self.names()
        if requested in names:
            return requested
        if requested.endswith(":latest") and requested[: -len(":latest")] in names:
            return requested[: -len(":latest")]
        return self.catalog.name_for(requested)

    def unknown(self, requested: str, ollama: bool = False) -> ApiError:
        if requested in (AUTO, f"{AUTO}:latest"):
            why = ("routes chat requests only (/v1/chat/completions, /api/chat, /api/generate); name a model here"
                   if self.router is not None else "needs a router: start the server with --router DIR (a router "
                   "`tinygpt route train` saved; docs/router.md)")
            return ApiError(404 if self.router is None else 400, f"model {requested!r} {why}", param="model",
                            code="model_not_found" if self.router is None else None)
        listed = ", ".join(repr(ollama_name(n) if ollama else n) for n in self.names())
        if ollama:
            return ApiError(404, f"model {requested!r} not found; this server serves {listed}")
        return ApiError(404, f"The model {requested!r} does not exist; this server serves {listed} "
                             "(see GET /v1/models)", param="model", code="model_not_found")

    async def card(self, requested: str, ollama: bool = False) -> ModelCard:
        """The card of the model a request names, loading it if need be; 404 (listing what exists) if unknown."""
        name = self.lookup(requested)
        if name is None:
            raise self.unknown(requested, ollama)
        card = self.scheduler.cards.get(name)
        if card is not None:
            return card
        try:
            await asyncio.wrap_future(self.scheduler.control("load", name))
        except ShuttingDown as exc:
            raise ApiError(503, "the server is shutting down; retry against a running server") from exc
        except ModelLoadError as exc:
            raise ApiError(404, f"the model {requested!r} cannot be served: {exc}", param="model",
                           code="model_not_found") from exc
        return self.scheduler.cards[name]


def ollama_name(name: str) -> str:
    """A name with a tag, as Ollama lists models ('name:latest')."""
    return name if ":" in name else f"{name}:latest"
