"""The front door under hostile or odd clients: deep JSON, slow and short bodies, cross-site simple requests,
oversized bodies sent whole before reading (urllib), plus /health, /api/show's `name`, no CDN /docs, and the
random-init notice. Real servers on 127.0.0.1, raw sockets where a client library would hide the behaviour."""
import json
import socket
import time
import urllib.error
import urllib.request

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.web.guard import json_too_deep

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
GEN = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}


def nested(depth: int) -> str:
    """JSON text nested `depth` levels (objects and arrays alternating), built as text: json.dumps would
    itself hit the recursion limit."""
    return "".join('{"k":' if i % 2 else "[" for i in range(depth)) + "1" + "".join(
        "}" if i % 2 else "]" for i in reversed(range(depth)))


def deep_schema(depth: int) -> str:
    return '{"type":"object","properties":{"x":' * depth + '{"type":"string"}' + "}}" * depth


def tool(params: str) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": params}}


DEEP = "__DEEP__"
DEEP_BODIES = [
    ("/v1/chat/completions", {**CHAT, "junk": DEEP}, nested(1500)),
    ("/v1/chat/completions", {**CHAT, "tools": [tool(DEEP)]}, deep_schema(500)),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": DEEP}}}, deep_schema(800)),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 1, "logit_bias": DEEP}, nested(3000)),
    ("/api/chat", {**CHAT, "stream": False, "format": DEEP}, deep_schema(1200)),
    ("/api/chat", {**CHAT, "stream": False, "tools": [tool(DEEP)]}, deep_schema(500)),
    ("/api/generate", {**GEN, "junk": DEEP}, nested(5000)),
    ("/api/show", {"model": "tiny", "junk": DEEP}, nested(2000)),
]


def with_deep(body: dict, deep: str) -> bytes:
    return json.dumps(body).replace(f'"{DEEP}"', deep).encode()


@pytest.mark.parametrize("path,body,deep", DEEP_BODIES, ids=[f"{p}-{i}" for i, (p, *_) in enumerate(DEEP_BODIES)])
def test_deeply_nested_json_is_a_400_naming_the_problem(server, path, body, deep):
    r = httpx.post(server.url + path, content=with_deep(body, deep),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    message = err["message"] if path.startswith("/v1") else err
    assert "nests more than 64 levels" in message


def test_moderate_nesting_is_still_served(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=with_deep({**CHAT, "junk": DEEP}, nested(60)),
                   timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text("[]{}\"\\ab"),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text("[]{}\"\\a"), kids, max_size=3),
                    max_leaves=40)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(value=JSON, limit=st.integers(0, 8))
def test_depth_scan_agrees_with_the_parsed_depth(value, limit):
    text = json.dumps(value, ensure_ascii=False).encode()
    assert json_too_deep(text, limit) == (_depth(value) > limit)


# ---- slow, short and oversized bodies ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def strict(start_server):
    return start_server(request_timeout_s=0.5, max_body_bytes=4096)


def _read_all(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            return data  # the server closed the connection
        data += part


def test_short_bodies_get_408_and_their_connections_close(strict):
    head = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"model\":")
    socks = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(20)]
    try:
        for s in socks:
            s.sendall(head)
        answers = [_read_all(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    for data in answers:
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert b"did not arrive within 0.5 s" in data


def test_a_trickled_chunked_body_gets_408(strict):
    with socket.create_connection(("127.0.0.1", strict.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        t0 = time.monotonic()
        s.settimeout(0.1)
        data = b""
        while not data and time.monotonic() - t0 < 10:
            s.sendall(b"1\r\n \r\n")  # one byte at a time, never the end
            try:
                data = s.recv(65536)
            except TimeoutError:
                pass
        data += _read_all(s)
    assert data.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in data


def test_late_request_heads_and_silent_connections_are_closed(strict):
    socks = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(10)]
    try:
        for s in socks[:5]:
            s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head never ends
        answers = [_read_all(s) for s in socks]  # 10 s at most each; the deadline is 0.5 s
    finally:
        for s in socks:
            s.close()
    for data in answers[:5]:
        assert data.startswith(b"HTTP/1.1 408 ") and b"request head did not arrive" in data
    assert answers[5:] == [b""] * 5  # nothing was asked: closed without an answer


def test_keep_alive_connections_still_serve_several_requests(strict):
    with httpx.Client(base_url=strict.url) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
        time.sleep(0.8)  # longer than the head deadline: an idle kept-alive connection may be closed, not broken
        assert client.get("/health").status_code == 200


def test_urllib_sending_an_oversized_body_reads_the_413(strict):
    body = json.dumps({**CHAT, "pad": "x" * (2 << 20)}).encode()
    for path in ("/v1/chat/completions", "/api/chat"):
        req = urllib.request.Request(strict.url + path, data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 413 and b"limit is 4096 bytes" in e.value.read()


def test_urllib_sending_an_oversized_chunked_body_reads_the_413(strict):
    chunks = (b"x" * 65536 for _ in range(32))
    req = urllib.request.Request(strict.url + "/api/generate", data=chunks,
                                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413


# ---- cross-site requests -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site_server(start_server):
    return start_server(cors_origins=("https://app.example",))


def test_a_foreign_page_cannot_unload_the_model(site_server):
    unload = json.dumps({"model": "tiny", "keep_alive": 0})
    for headers in ({"Origin": "https://evil.example", "Content-Type": "text/plain"},
                    {"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
                    {"Origin": "null", "Content-Type": "text/plain"},
                    {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}):
        r = httpx.post(site_server.url + "/api/generate", content=unload, headers=headers)
        assert r.status_code == 403 and "--cors-origin" in r.json()["error"], headers
    r = httpx.post(site_server.url + "/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert site_server.worker.loaded


def test_text_plain_and_form_bodies_are_refused_without_origin(site_server):
    for media in ("text/plain", "multipart/form-data; boundary=x", "Text/Plain; charset=utf-8"):
        r = httpx.post(site_server.url + "/api/generate", content=json.dumps(GEN), headers={"Content-Type": media})
        assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert site_server.worker.loaded


def test_real_clients_and_allowed_pages_pass(site_server):
    body = json.dumps(GEN).encode()
    raw = (b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
           % (len(body), body))
    with socket.create_connection(("127.0.0.1", site_server.port)) as s:  # no Content-Type at all
        s.sendall(raw)
        assert _read_all(s, 60).startswith(b"HTTP/1.1 200 ")
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"},  # curl -d
                    {"Origin": "http://localhost:5173", "Content-Type": "text/plain"},
                    {"Origin": "https://app.example"},
                    {"Origin": f"http://127.0.0.1:{site_server.port}"}):  # a page served by this host itself
        r = httpx.post(site_server.url + "/api/generate", content=body, headers=headers, timeout=60)
        assert r.status_code == 200 and r.json()["done"], headers
    r = httpx.get(site_server.url + "/api/tags", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200  # reading is harmless: CORS keeps the page from seeing the answer


# ---- small routes -------------------------------------------------------------------------------------------
def test_health(server):
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "model": "tiny", "loaded": True}


def test_docs_are_off_but_the_spec_is_served(server):
    assert httpx.get(server.url + "/docs").status_code == 404
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/health" in spec["paths"] and "name" in spec["components"]["schemas"]["ShowRequest"]["properties"]


def test_show_accepts_name_like_ollama(server):
    r = httpx.post(server.url + "/api/show", json={"name": "tiny:latest"})
    assert r.status_code == 200 and r.json()["model_info"]["general.architecture"] == "qwen3"
    r = httpx.post(server.url + "/api/show", json={})
    assert r.status_code == 400 and "model" in r.json()["error"]
    assert httpx.post(server.url + "/api/show", json={"name": "other"}).status_code == 404


def test_show_says_the_model_is_random_init(server):
    shown = httpx.post(server.url + "/api/show", json={"model": "tiny"}).json()
    assert shown["model_info"]["tinygpt.random_init"] is True
    assert "random weights" in shown["modelfile"]
