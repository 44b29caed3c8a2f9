"""Not a test module: real `tinygpt serve` servers (uvicorn, 127.0.0.1, a free port) in a thread, for tests.

- `running_server(model_dir, **overrides)`: the app `tinygpt serve` builds (tinygpt.cli_serve.build_app: tool
  worlds and eval results wired) for `ServeConfig(model=model_dir, **overrides)`; yields its OpenAI base URL.
- `serving(app)`: any app already built (e.g. one from create_app with parts left out on purpose); yields its base
  URL, and stops the app's scheduler when done, also when the server does not start.
"""
import contextlib
import socket
import threading
import time

import uvicorn

from tinygpt.cli_serve import build_app, make_server
from tinygpt.web.config import ServeConfig
from tinygpt.web.head_timeout import head_timeout_protocol

START_S = 60  # a generous bound on uvicorn's start on a loaded machine, not a measurement


@contextlib.contextmanager
def serving(app):
    """Run `app` (a tinygpt app: its scheduler in app.state.tg) as `tinygpt serve` runs it; yields
    http://127.0.0.1:<port>."""
    config = app.state.tg.config
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        server = make_server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                                            http=head_timeout_protocol(config.request_timeout_s)),
                             app.state.tg.scheduler)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                server.should_exit = True
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(15)
    finally:
        app.state.tg.scheduler.stop()
        sock.close()


@contextlib.contextmanager
def running_server(model_dir, **overrides):
    """A server of `tinygpt serve`'s app for `ServeConfig(model=model_dir, **overrides)`; yields its OpenAI base
    URL (`.../v1`)."""
    with serving(build_app(ServeConfig(model=str(model_dir), **overrides))) as url:
        yield f"{url}/v1"
