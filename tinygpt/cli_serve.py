"""`tinygpt serve`: serve models over OpenAI- and Ollama-compatible HTTP on one socket: `--model` (the default
one) and every model in the store, each request naming one.

Parses flags into a `ServeConfig` (each setting: flag, else config file, else default), loads the model (a bad
model directory is a clear error and exit 2, before any socket is bound), binds the socket itself (a busy port is
a clear error and exit 1) and runs uvicorn; on shutdown (Ctrl-C) it stops the scheduler first, so running jobs
end at once instead of holding their connections until uvicorn's graceful-shutdown timeout.
`--model-memory-mb` (config `model_memory_mb`, default half this machine's memory) is the one memory budget of
loaded models, enforced by the scheduler (runtime/scheduler.py); the banner says what it resolved to.
`build_app(config)` is the one place the app is wired (tool worlds, eval results: what web may not import); the
CLI and the tests' servers both use it. Not here: the app (tinygpt/web/app.py).
"""
from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path

from tinygpt.flags import add_tool_format_flag

from tinygpt.flags import int_in

EXAMPLES = """\
examples:
  tinygpt serve --model ./models/tiny
      OpenAI API at http://127.0.0.1:11434/v1, Ollama API at http://127.0.0.1:11434/api
  tinygpt serve --model ./models/small --port 8080 --api-key "$(openssl rand -hex 16)"
      every request must send 'Authorization: Bearer <key>' (or set TINYGPT_API_KEY)
  tinygpt serve --model DIR --host 0.0.0.0 --allowed-host mybox.lan
      listen on all interfaces (think twice: anyone on the network can use the model)

  curl http://127.0.0.1:11434/v1/chat/completions -H 'content-type: application/json' \\
       -d '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}'
  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=x python my_agent.py
  OLLAMA_HOST=127.0.0.1:11434 ollama run tiny   (or any Ollama client)

The OpenAPI spec is at /openapi.json (no /docs page: it would need a CDN). GET /health for probes.
Extensions on both APIs:
"session": "<id>" keeps the KV cache server-side across calls; "return_token_ids": true returns the exact
prompt and output token ids; with --router, model "auto" routes each chat request (the decision in the
x-tinygpt-route header and the body's "tinygpt": {"route": ...}).
The browser UI is at /ui (chat playground, trajectories, evals, training runs; docs/ui.md).
"""


GRAMMAR_BACKENDS = ("llguidance", "outlines")


def serve_config(args: argparse.Namespace):
    """The server's config from parsed flags: each setting from its flag, else the config file, else the default."""
    from tinygpt.config import load_config
    from tinygpt.model_arg import model_path
    from tinygpt.web.config import ServeConfig

    cfg = load_config({"model": args.model, "grammar_backend": args.grammar_backend,
                       "prefix_cache_mb": args.prefix_cache_mb, "model_memory_mb": args.model_memory_mb,
                       "tool_format": args.tool_format, "router": args.router})
    return ServeConfig(
        model=model_path(cfg), model_name=args.model_name, host=args.host, port=args.port,
        api_key=args.api_key or None, models_without_key=args.models_without_key,
        allowed_hosts=tuple(args.allowed_host), cors_origins=tuple(args.cors_origin),
        max_body_bytes=int(args.max_body_mb * (1 << 20)), request_timeout_s=args.request_timeout,
        max_tokens=args.max_tokens, max_batch=args.max_batch,
        prefill_step=args.prefill_step or 0, max_sessions=args.max_sessions,
        keep_alive_s=args.keep_alive if args.keep_alive is not None else (cfg.model_keep_alive_s or -1.0),
        batching=not args.no_batch, solo=not args.no_solo, grammar_backend=cfg.grammar_backend,
        tool_format="" if cfg.tool_format == "auto" else cfg.tool_format,
        prefix_cache_mb=cfg.prefix_cache_mb, model_memory_mb=cfg.model_memory_mb,
        router=str(Path(cfg.router).expanduser()) if cfg.router else None,
        traces=tuple(args.traces), chat_dir=args.chat_dir or "", evals_dir=args.evals_dir, runs_dir=args.runs_dir)


def build_app(config):
    """The app `tinygpt serve` runs for `config` (web.app.create_app), wired with what web may not import itself:
    the UI chat's tool worlds (tools) and the Eval results page's reader (evals.results_view). Tests build their
    servers with this too (tests/server_for_tests.py), so they exercise what users get. Raises what create_app
    raises (ModelLoadError, RouterError, BackendError)."""
    from tinygpt.evals import results_view
    from tinygpt.web.app import create_app

    return create_app(config, tool_worlds=tool_worlds(), eval_results=results_view)


def tool_worlds() -> list:
    """The tool worlds the UI's chat offers (web/ui_chat.py): the embedded world's file system (in memory, or in
    an empty directory the server makes per chat), calendar and shop, each fresh per chat session."""
    from tinygpt.tools.catalog import load_toolset
    from tinygpt.web.ui_chat import ToolWorld

    return [ToolWorld("files", "file system: the embedded world, in memory", lambda _dir: load_toolset("fs:virtual")),
            ToolWorld("sandbox", "file system: an empty directory the server makes for this chat",
                      lambda folder: load_toolset(f"fs:{folder}"), needs_dir=True),
            ToolWorld("calendar", "calendar: the demo calendar, in memory", lambda _dir: load_toolset("calendar")),
            ToolWorld("shop", "shop: the demo shop, in memory", lambda _dir: load_toolset("shop"))]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt serve", description="Serve a model over OpenAI- and "
                                "Ollama-compatible HTTP APIs on one socket.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default=None, metavar="DIR",
                   help="model directory or hub id (default: config `model`, else the embedded default, the tool "
                        "world's base)")
    p.add_argument("--model-name", metavar="NAME", help="name clients use (default: the directory name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=11434, help="port (default 11434, Ollama's; 0 picks a free one)")
    p.add_argument("--api-key", default=os.environ.get("TINYGPT_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route (default: $TINYGPT_API_KEY, else none)")
    p.add_argument("--models-without-key", default="empty", choices=("empty", "list", "refuse"),
                   help="with --api-key, what GET /v1/models answers a request that sends no key at all (readiness "
                        "probes such as BFCL's): an empty list (default), the model names, or 401")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="extra Host header name to accept (repeatable); on loopback only localhost names are")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="extra browser origin allowed by CORS (repeatable; '*' for any); localhost pages always are")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default 8)")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a request whose head or body has not all arrived within this time gets 408 and its "
                        "connection closes (default 30)")
    p.add_argument("--max-tokens", type=int, default=4096, help="cap on new tokens per request (default 4096)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together (default 8)")
    p.add_argument("--prefill-step", type=int, default=None,
                   help="prompt tokens per prefill step; smaller lets other requests in sooner "
                        "(default: 2048 on a GPU, 512 on the CPU)")
    p.add_argument("--max-sessions", type=int, default=16, help="server-side KV sessions kept (LRU; default 16)")
    p.add_argument("--keep-alive", type=float, default=None, metavar="SECONDS",
                   help="unload a model after this idle time (default: config `model_keep_alive_s`, else -1: only "
                        "when --model-memory-mb needs the room; Ollama's keep_alive overrides)")
    p.add_argument("--model-memory-mb", type=int_in(-1), default=None, metavar="MB",
                   help="keep the weights of loaded models within MB MiB (a base shared by its specialists counts "
                        "once): before a model loads, idle ones unload, least recently used first; a model "
                        "with requests running is never unloaded, so a request for a model that does not fit "
                        "waits until they finish (as Ollama's do); a lone model larger than MB still loads. "
                        "0: one model (with its specialists) at a time; -1: no limit. Default: config "
                        "`model_memory_mb`, else half of this machine's memory "
                        f"({_half_memory()})")
    p.add_argument("--no-batch", action="store_true", help="serve one request at a time (no batching)")
    p.add_argument("--no-solo", action="store_true",
                   help="decode a lone request in the batch too (default: outside it, which is faster, until a "
                        "second request arrives)")
    p.add_argument("--grammar-backend", default=None, choices=GRAMMAR_BACKENDS,
                   help="backend for tools / JSON constraints (default: config `grammar_backend`, else llguidance)")
    add_tool_format_flag(p)
    p.add_argument("--prefix-cache-mb", type=int, default=None, metavar="MB",
                   help="prefix cache per loaded model in MiB (default: config `prefix_cache_mb`, else 2048)")
    p.add_argument("--router", default=None, metavar="DIR",
                   help="a router saved by `tinygpt route train`: requests naming model \"auto\" are routed to a "
                        "store model or an enabled backend, the decision in the x-tinygpt-route header (default: "
                        "config `router`, else none: \"auto\" is refused)")
    ui = p.add_argument_group("browser UI (/ui; docs/ui.md)")
    ui.add_argument("--traces", action="append", default=[], metavar="DIR",
                    help="a directory of .atraj episodes for the trajectory viewer (repeatable; searched recursively)")
    ui.add_argument("--chat-dir", default=None, metavar="DIR",
                    help="where the chat playground records its sessions as .atraj (default: the user cache's "
                         "chats/, e.g. ~/.cache/tinygpt/chats)")
    ui.add_argument("--evals-dir", default="runs", metavar="DIR",
                    help="eval runs and gate results for the Evals page (default: runs)")
    ui.add_argument("--runs-dir", default="runs", metavar="DIR",
                    help="training runs for the Runs page (default: runs)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    return p


def _half_memory() -> str:
    from tinygpt.config import default_model_memory_mb

    mb = default_model_memory_mb()
    return f"{mb} MiB here" if mb >= 0 else "unknown here: no limit"


def _check(args: argparse.Namespace) -> str | None:
    for name in ("max_tokens", "max_batch", "prefill_step"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.max_body_mb <= 0:
        return "--max-body-mb must be positive"
    if not args.request_timeout > 0:
        return "--request-timeout must be positive"
    if args.prefix_cache_mb is not None and args.prefix_cache_mb < 0:
        return "--prefix-cache-mb must be 0 or more"
    if args.max_sessions < 0:
        return "--max-sessions must be 0 or more"
    if not 0 <= args.port < 65536:
        return f"--port {args.port} is not a port number (0..65535)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"tinygpt serve: {problem}", file=sys.stderr)
        return 2
    import uvicorn

    from tinygpt.runtime.models import ModelLoadError
    from tinygpt.web.head_timeout import head_timeout_protocol

    config = serve_config(args)
    if config.grammar_backend not in GRAMMAR_BACKENDS:
        print(f"tinygpt serve: grammar_backend {config.grammar_backend!r} (from the config file) is not one of "
              f"{', '.join(GRAMMAR_BACKENDS)}; fix the config file or pass --grammar-backend", file=sys.stderr)
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
            why = ("it is not a host name this machine can resolve" if isinstance(exc, socket.gaierror)
                   else "no network interface of this machine has that address")
            print(f"tinygpt serve: cannot listen on {args.host}: {why}; use --host 127.0.0.1 (this machine "
                  "only) or 0.0.0.0 (all interfaces)", file=sys.stderr)
            return 2
        print(f"tinygpt serve: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
              "pick another --port or stop what uses it", file=sys.stderr)
        return 1
    from tinygpt.router.backends import BackendError
    from tinygpt.router.errors import RouterError

    try:
        app = build_app(config)
    except (ModelLoadError, RouterError, BackendError) as exc:
        sock.close()
        print(f"tinygpt serve: {exc}", file=sys.stderr)
        return 2
    # The generation thread wants the GIL back as soon as an MLX eval ends; the default 5 ms switch interval
    # lets the HTTP thread hold it that long on every decode step.
    sys.setswitchinterval(0.0005)
    server = make_server(uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5,
                                        http=head_timeout_protocol(config.request_timeout_s)),
                         app.state.tg.scheduler,
                         banner=banner(app.state.tg.scheduler.cards[app.state.tg.default], sock, config))
    server.run(sockets=[sock])
    return 0


def banner(card, sock: socket.socket, config) -> str:
    """The line that says where the server listens (printed once it accepts connections)."""
    host, port = sock.getsockname()[:2]
    line = (f"tinygpt serve: {card.name} ({card.parameter_size} parameters, context {card.context_length}) on "
            f"http://{_url_host(host)}:{port}  [OpenAI /v1, Ollama /api, UI /ui, spec /openapi.json]"
            f"{'  API key required' if config.api_key else ''}")
    if card.random_init:
        line += ("\ntinygpt serve: note: this model has random weights (made by `tinygpt init-model`, never "
                 "trained); its answers are noise")
    budget = (f"kept within {config.model_memory_mb} MiB" if config.model_memory_mb >= 0 else "not limited")
    line += f"\ntinygpt serve: loaded models' weights {budget} (--model-memory-mb)"
    if config.router:
        line += (f"\ntinygpt serve: model \"auto\" routes each request with the router {config.router} "
                 "(decision in the x-tinygpt-route header)")
    return line


def make_server(config, scheduler, banner: str = ""):
    """uvicorn's server for `config.app`, whose jobs `scheduler` runs; it prints `banner` once the socket accepts
    connections (not before), and on shutdown ends every job before it waits for open responses."""
    import asyncio

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server: our banner once it accepts connections; the scheduler stopped before it drains them."""

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started and banner:
                print(banner, flush=True)

        async def shutdown(self, sockets=None) -> None:
            # uvicorn lets open responses finish (up to timeout_graceful_shutdown) before the app's lifespan
            # stops the scheduler, and a stream may run for minutes: stop it first, so every running job ends
            # (its client gets an in-band 503) and its connection closes at once.
            await asyncio.to_thread(scheduler.stop)
            await super().shutdown(sockets)

    return Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to host:port (IPv6 when host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
