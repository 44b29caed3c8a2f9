"""The server's configuration (what `tinygpt serve` flags set) and its per-app state.

`ServeConfig` is plain data with safe defaults: loopback only, no CORS beyond localhost pages, an 8 MiB body
limit, a request head and body that must each arrive within 30 s, JSON nested at most 64 levels, at most 4096
new tokens per request.
`ServerState` is what every handler reads from `app.state.tg`.
Not here: flag parsing (tinygpt/cli_serve.py) or the app itself (app.py).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tinygpt.runtime.model_card import ModelCard
from tinygpt.web.worker import Worker, WorkerConfig

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass
class ServeConfig:
    model: str
    model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 11434
    api_key: str | None = None
    allowed_hosts: tuple[str, ...] = ()     # extra Host header names accepted when bound to loopback
    cors_origins: tuple[str, ...] = ()      # extra browser origins (localhost pages are always allowed)
    max_body_bytes: int = 8 << 20
    request_timeout_s: float = 30.0         # a request head or body not all received by then: 408
    max_json_depth: int = 64                # deeper JSON nesting gets 400 before anything decodes it
    max_tokens: int = 4096                  # cap on new tokens per request
    max_batch: int = 8
    prefill_step: int = 0                   # 0: by device (worker.default_prefill_step)
    max_sessions: int = 16
    keep_alive_s: float = -1.0              # unload after this idle time; < 0 never
    batching: bool = True
    solo: bool = True                       # a lone request decodes outside the batch (faster) until a second
    grammar_backend: str = "llguidance"

    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(max_batch=self.max_batch, prefill_batch=self.max_batch, prefill_step=self.prefill_step,
                            batching=self.batching, solo=self.solo, max_sessions=self.max_sessions,
                            keep_alive_s=self.keep_alive_s, model_name=self.model_name)

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
    worker: Worker
    card: ModelCard
    started: float = field(default=0.0)
