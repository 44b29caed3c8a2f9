"""Raw HTTP against the server: error shapes, API key, Host allow-list, body limit (with and without
Content-Length), CORS, and that nothing a client sends gets a 5xx."""
import json
import socket

import httpx
import pytest

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def guarded(start_server):
    return start_server(api_key="s3cret", max_body_bytes=4096)


def test_malformed_json_is_400_in_each_api_shape(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": ')
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json" and "JSON" in err["message"]
    r = httpx.post(server.url + "/api/chat", content=b"[1,")
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_invalid_field_names_the_field(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={**CHAT, "max_tokens": "many"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(server.url + "/v1/chat/completions", json={**CHAT, "messages": [{"role": "robot"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "options": {"top_k": -1}})
    assert r.status_code == 400 and "top_k" in r.json()["error"]


def test_unknown_model_is_404(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(server.url + "/api/show", json={"model": "gpt-9"})
    assert r.status_code == 404 and "gpt-9" in r.json()["error"]


def test_unknown_route_and_method(server):
    assert httpx.get(server.url + "/v1/nothing").json()["error"]["type"] == "not_found_error"
    r = httpx.get(server.url + "/api/nothing")
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    assert httpx.get(server.url + "/v1/chat/completions").status_code == 405


def test_prompt_over_the_context_is_400(server):
    ids = [1] * 40960
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": ids, "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": [999999]})
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"]


def test_api_key_is_required_on_every_route(guarded):
    for method, path in [("GET", "/"), ("GET", "/v1/models/tiny"), ("GET", "/api/tags"), ("GET", "/openapi.json"),
                         ("POST", "/v1/chat/completions"), ("POST", "/api/chat")]:
        r = httpx.request(method, guarded.url + path, json=CHAT)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
    # the one exception, for readiness probes: a model list asked for with no key at all is empty (bfcl_compat)
    assert httpx.get(guarded.url + "/v1/models").json()["data"] == []
    assert httpx.get(guarded.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.post(guarded.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2


def test_foreign_host_header_is_refused_on_loopback(server):
    r = httpx.get(server.url + "/api/tags", headers={"Host": "attacker.example:11434"})
    assert r.status_code == 403 and "attacker.example" in r.json()["error"]
    for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
        assert httpx.get(server.url + "/api/tags", headers={"Host": host}).status_code == 200


def test_extra_allowed_host(start_server):
    srv = start_server(allowed_hosts=("mybox.lan",))
    assert httpx.get(srv.url + "/api/tags", headers={"Host": "mybox.lan:8080"}).status_code == 200
    assert httpx.get(srv.url + "/api/tags", headers={"Host": "other.lan"}).status_code == 403


def _raw(port: int, head: bytes, chunks: list[bytes]) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body was all sent
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 10:
            part = s.recv(65536)
            if not part:
                break
            data += part
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_body_over_the_limit_is_413_with_content_length(guarded):
    body = json.dumps({**CHAT, "pad": "x" * 8000}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    status, payload = _raw(guarded.port, head, [body])
    assert status == 413 and b"limit is 4096 bytes" in payload


def test_chunked_body_over_the_limit_is_413(guarded):
    head = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 1000
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(8)] + [b"0\r\n\r\n"]
    status, payload = _raw(guarded.port, head, chunks)
    assert status == 413 and b'"error"' in payload


def test_chunked_body_under_the_limit_is_served(guarded):
    body = json.dumps(CHAT).encode()

    def gen():
        yield body[:10]
        yield body[10:]

    r = httpx.post(guarded.url + "/v1/chat/completions", content=gen(), headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and 1 <= r.json()["usage"]["completion_tokens"] <= 2  # sampled: EOS may come first


def test_cors_allows_localhost_pages_only(server):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = httpx.options(server.url + "/v1/chat/completions", headers={"Origin": "http://localhost:3000", **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    bad = httpx.options(server.url + "/v1/chat/completions", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in bad.headers
    r = httpx.get(server.url + "/api/tags", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_openapi_spec_is_published_with_request_schemas(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert "messages" in spec["components"]["schemas"]["ChatCompletionRequest"]["required"]
    assert {"/api/chat", "/api/generate", "/api/show", "/api/tags", "/v1/completions"} <= set(spec["paths"])


def test_out_of_range_token_ids_with_echo_are_400_not_500(server):
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": [2 ** 40], "echo": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
