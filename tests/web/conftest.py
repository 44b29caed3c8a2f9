"""Fixtures for the server tests: a tiny random model, and real uvicorn servers on 127.0.0.1 free ports."""
import socket
import threading
import time
from dataclasses import replace

import pytest
import uvicorn

from tinygpt.cli_serve import make_server
from tinygpt.runtime.presets import InitSpec, init_model
from tinygpt.web.app import create_app
from tinygpt.web.config import ServeConfig
from tinygpt.web.head_timeout import head_timeout_protocol


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return init_model(tmp_path_factory.mktemp("models") / "tiny", InitSpec(preset="tiny"), force=True)


class RunningServer:
    """A real uvicorn server in a thread, built as `tinygpt serve` builds it; `.url` is its base URL, `.app` the
    FastAPI app."""

    def __init__(self, config: ServeConfig):
        self.app = create_app(config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2,
                                                 http=head_timeout_protocol(config.request_timeout_s)),
                                  self.worker)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def worker(self):
        """The server's scheduler (the tests' historical name for it)."""
        return self.app.state.tg.scheduler

    def stop(self):
        self.server.should_exit = True
        self.thread.join(15)
        self.worker.stop()


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """A model store with nothing registered, so servers list only the model they were started with."""
    return str(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def start_server(tiny_model, empty_store):
    """Start a server with config overrides: `start_server(max_tokens=8, api_key="k")`."""
    servers = []

    def start(**overrides):
        config = replace(ServeConfig(model=str(tiny_model), max_tokens=64, store=empty_store), **overrides)
        srv = RunningServer(config)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def server(start_server):
    """The default server: tiny model, 64 new tokens at most, no API key."""
    return start_server()
