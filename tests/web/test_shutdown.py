"""Ending a server with streams in flight, to a base and its specialists (which share one lane and one batch):
every stream ends at once with an in-band 503, not when uvicorn's graceful-shutdown timeout cuts it; and a
specialist's client that disconnects cancels its job, as a base's does."""
import json
import threading
import time

import httpx
import pytest

from tinygpt.runtime.models import load


@pytest.fixture(scope="module")
def store_root(tiny_model, tmp_path_factory):
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    root = tmp_path_factory.mktemp("shutdown")
    store = ModelStore(root / "models")
    store.add("specA", init_adapter(tiny_model, root / "a", rank=4, seed=5), base=str(tiny_model))
    store.add("specB", init_adapter(tiny_model, root / "b", rank=4, seed=6), base=str(tiny_model))
    return str(root / "models")


@pytest.fixture(scope="module")
def no_eos(tiny_model):
    """A logit_bias that keeps the random model from ending its answers early."""
    return {str(t): -100 for t in load(str(tiny_model)).tokenizer.eos_token_ids}


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()


class Stream(threading.Thread):
    """One streamed /v1/completions request, read to its end; `.events` are its data payloads."""

    def __init__(self, url: str, model: str, no_eos: dict):
        super().__init__(daemon=True)
        self.url, self.body = url, {"model": model, "prompt": "go", "max_tokens": 4000, "stream": True,
                                    "temperature": 0, "logit_bias": no_eos}
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            with httpx.stream("POST", self.url + "/v1/completions", json=self.body, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
        except httpx.HTTPError as exc:
            self.error = exc

    @property
    def texts(self) -> int:
        return sum(1 for e in self.events if e.startswith("{") and json.loads(e).get("choices"))


def test_stopping_the_server_ends_base_and_specialist_streams_at_once(start_server, store_root, tiny_model, no_eos):
    srv = start_server(store=store_root, max_tokens=4096)
    streams = [Stream(srv.url, m, no_eos) for m in (tiny_model.name, "specA", "specB", "specA")]
    for s in streams:
        s.start()
    assert _wait(lambda: all(s.texts for s in streams)), "the streams did not start"
    assert srv.worker.lanes["specA"] is srv.worker.lanes[tiny_model.name]  # one shared lane, one batch
    assert srv.worker.active == 4
    srv.server.should_exit = True
    srv.thread.join(30)
    for s in streams:
        s.join(30)
    assert not srv.thread.is_alive() and not srv.worker._thread.is_alive()
    for s in streams:  # each ended cleanly, by the shutdown: uvicorn did not have to cut it
        assert s.error is None, f"{s.body['model']}: {s.error!r}"
        error = json.loads(s.events[-1])["error"]
        assert "shutting down" in error["message"], s.body["model"]
    assert srv.worker.active == 0


def test_a_specialist_client_that_disconnects_cancels_its_job(start_server, store_root, tiny_model, no_eos):
    srv = start_server(store=store_root, max_tokens=4096)
    body = {"model": "specB", "prompt": "go", "max_tokens": 4000, "stream": True, "temperature": 0,
            "logit_bias": no_eos}
    with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                break
        assert srv.worker.active == 1
        assert srv.worker.lanes["specB"] is srv.worker.lanes[tiny_model.name]
    assert _wait(lambda: srv.worker.cancelled == 1), "generation went on after the client left"
    assert srv.worker.active == 0
