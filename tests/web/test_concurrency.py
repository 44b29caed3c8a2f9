"""Concurrency through the real server: batching, exact ids/logprobs in a batch, cancellation on disconnect,
slow readers, sessions under contention, and the one-at-a-time fallback."""
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams


def chat(url, content, max_tokens=24, **extra):
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, "return_token_ids": True, "logprobs": True, **extra}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(load(str(tiny_model)))


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()


def test_concurrent_requests_are_batched_with_exact_ids_and_logprobs(start_server, engine):
    srv = start_server(max_tokens=64)
    prompts = [f"request number {i} " * (i + 1) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: chat(srv.url, p, max_tokens=48), prompts))
    assert srv.worker.peak_active >= 3
    for p, a in zip(prompts, answers):
        ids = engine.encode_chat([{"role": "user", "content": p}])
        want = engine.generate(ids, SamplingParams(max_tokens=48))
        assert a["prompt_token_ids"] == ids
        assert a["choices"][0]["token_ids"] == want.output_ids
        got = [t["logprob"] for t in a["choices"][0]["logprobs"]["content"]]
        assert got == pytest.approx(want.logprobs, abs=1e-3)


def test_client_disconnect_stops_a_stream(start_server):
    srv = start_server(max_tokens=4096)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 4000, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as r:
        # The role chunk is sent before the job is admitted; wait for generated text, so the job is decoding.
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break
        assert _wait(lambda: srv.worker.active == 1)  # (the count can lag the first text by a scheduler round)
    assert _wait(lambda: srv.worker.cancelled == 1), "generation went on after the client left"
    assert srv.worker.active == 0


def test_client_disconnect_stops_a_non_streamed_request(start_server):
    srv = start_server(max_tokens=4096)
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 4000,
                       "temperature": 0})
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    assert _wait(lambda: srv.worker.active == 1)
    s.close()
    assert _wait(lambda: srv.worker.cancelled == 1), "generation went on after the client left"
    assert srv.worker.active == 0


def test_a_slow_reader_does_not_stall_others(start_server):
    srv = start_server(max_tokens=4096)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "slow"}], "max_tokens": 1200, "stream": True,
            "temperature": 0,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as slow:
        lines = slow.iter_lines()
        next(lines)  # then read nothing while another client is served
        t0 = time.monotonic()
        fast = chat(srv.url, "fast", max_tokens=20)
        assert time.monotonic() - t0 < 10
        assert fast["usage"]["completion_tokens"] == 20
        rest = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert rest[-1]["usage"]["completion_tokens"] == 1200  # the unread stream was generated in full meanwhile


def test_same_session_requests_wait_for_each_other(start_server):
    srv = start_server()
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: chat(srv.url, "same conversation", max_tokens=6, session="shared"),
                                range(3)))
    cached = sorted(a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers)
    assert cached[0] == 0 and cached[1] == cached[2] == answers[0]["usage"]["prompt_tokens"] - 1
    assert len({tuple(a["choices"][0]["token_ids"]) for a in answers}) == 1


def test_unbatched_mode_gives_the_same_answers(start_server, engine):
    srv = start_server(batching=False)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: chat(srv.url, f"question {i}", max_tokens=10), range(3)))
    assert srv.worker.peak_active == 0
    for i, a in enumerate(answers):
        want = engine.generate(engine.encode_chat([{"role": "user", "content": f"question {i}"}]),
                               SamplingParams(max_tokens=10))
        assert a["choices"][0]["token_ids"] == want.output_ids
