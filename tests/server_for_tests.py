"""Not a test module: `running_server(model_dir)`, a real `tinygpt serve` app (uvicorn, 127.0.0.1, a free port)
serving one model in a thread, for tests that need a remote model; yields its OpenAI base URL."""
import contextlib
import socket
import threading
import time

import uvicorn

from tinygpt.cli_serve import make_server
from tinygpt.web.app import create_app
from tinygpt.web.config import ServeConfig


@contextlib.contextmanager
def running_server(model_dir, **overrides):
    config = ServeConfig(model=str(model_dir), **overrides)
    app = create_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = make_server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2),
                         app.state.tg.scheduler)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(15)
        app.state.tg.scheduler.stop()
