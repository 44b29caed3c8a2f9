"""The project's own HTTP fuzzing, on real servers on 127.0.0.1, for the OpenAI and Ollama routes: deep nesting,
odd Unicode in every string-keyed map, huge lists in every list field, slow and short bodies, and cross-site
simple requests. Nothing may get a 5xx (or an in-band "internal error") and nothing may hang (every request has
a timeout). Bounded and deterministic: hypothesis derandomized, a fixed number of examples per property.
Schema-driven fuzzing of the published spec is in test_openapi_fuzz.py; this file aims at what a spec does not
describe."""
import copy
import json
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

@pytest.fixture(scope="module")
def fuzz(start_server, tmp_path_factory):
    """One server for every property here: a tiny model with a 1,024-token context (a huge list makes a prompt
    over the context, refused at once, rather than a long prefill), bodies due within 2 s."""
    from tinygpt.runtime.presets import InitSpec, init_model

    model = init_model(tmp_path_factory.mktemp("fuzz") / "tiny", InitSpec(preset="tiny", max_position_embeddings=1024))
    return start_server(model=str(model), max_tokens=4, request_timeout_s=2.0)


SETTINGS = dict(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
TOOL = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {
    "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}
USER = {"role": "user", "content": "hi"}
OAI_CHAT = {"model": "tiny", "messages": [USER], "max_tokens": 1}
OAI_COMPLETION = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
OLL_CHAT = {"model": "tiny", "messages": [USER], "stream": False, "options": {"num_predict": 1}}
OLL_GENERATE = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}

# (route, base body, path to a list or map in it, an element of it)
LISTS = [
    ("/v1/chat/completions", OAI_CHAT, ("messages",), USER),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
     ("messages", 0, "content"), {"type": "text", "text": "a"}),
    ("/v1/chat/completions", {**OAI_CHAT, "tools": [TOOL]}, ("tools",), TOOL),
    ("/v1/chat/completions", {**OAI_CHAT, "tools": [TOOL]}, ("tools", 0, "function", "parameters", "required"), "a"),
    ("/v1/chat/completions", {**OAI_CHAT, "stop": ["x"]}, ("stop",), "x"),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": [USER, {"role": "assistant", "tool_calls": [CALL]}]},
     ("messages", 1, "tool_calls"), CALL),
    ("/v1/chat/completions", {**OAI_CHAT, "functions": [TOOL["function"]]}, ("functions",), TOOL["function"]),
    ("/v1/chat/completions", {**OAI_CHAT, "tools": [TOOL]},
     ("tools", 0, "function", "parameters", "properties", "a", "enum"), "v"),
    ("/v1/chat/completions", {**OAI_CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "r", "schema": SCHEMA}}}, ("response_format", "json_schema", "schema", "properties", "a", "enum"), "v"),
    ("/v1/completions", OAI_COMPLETION, ("prompt",), 1),
    ("/v1/completions", {**OAI_COMPLETION, "prompt": ["hi"]}, ("prompt",), "hi"),
    ("/v1/completions", {**OAI_COMPLETION, "stop": ["x"]}, ("stop",), "x"),
    ("/api/chat", OLL_CHAT, ("messages",), USER),
    ("/api/chat", {**OLL_CHAT, "tools": [TOOL]}, ("tools",), TOOL),
    ("/api/chat", {**OLL_CHAT, "options": {"stop": ["x"]}}, ("options", "stop"), "x"),
    ("/api/chat", {**OLL_CHAT, "messages": [{**USER, "images": ["aGk="]}]}, ("messages", 0, "images"), "aGk="),
    ("/api/chat", {**OLL_CHAT, "messages": [USER, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {}}}]}]}, ("messages", 1, "tool_calls"),
     {"function": {"name": "f", "arguments": {}}}),
    ("/api/chat", {**OLL_CHAT, "format": SCHEMA}, ("format", "properties", "a", "enum"), "v"),
    ("/api/generate", {**OLL_GENERATE, "context": [1]}, ("context",), 1),
    ("/api/generate", {**OLL_GENERATE, "images": ["aGk="]}, ("images",), "aGk="),
    ("/api/generate", {**OLL_GENERATE, "format": {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}}}}, ("format", "required"), "a"),
]
MAPS = [
    ("/v1/chat/completions", {**OAI_CHAT, "junk": {}}, ("junk",), 1),
    ("/v1/chat/completions", {**OAI_CHAT, "logit_bias": {}}, ("logit_bias",), 1),
    ("/v1/chat/completions", {**OAI_CHAT, "tools": [TOOL]}, ("tools", 0, "function", "parameters", "properties"),
     {"type": "string"}),
    ("/v1/chat/completions", {**OAI_CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "r", "schema": SCHEMA}}}, ("response_format", "json_schema", "schema", "properties"),
     {"type": "integer"}),
    ("/v1/completions", {**OAI_COMPLETION, "logit_bias": {}}, ("logit_bias",), -1),
    ("/api/chat", {**OLL_CHAT, "tools": [TOOL]}, ("tools", 0, "function", "parameters", "properties"),
     {"type": "string"}),
    ("/api/chat", OLL_CHAT, ("options",), 1),
    ("/api/chat", {**OLL_CHAT, "format": SCHEMA}, ("format", "properties"), {"type": "boolean"}),
    ("/api/chat", {**OLL_CHAT, "messages": [USER, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {}}}]}]}, ("messages", 1, "tool_calls", 0, "function", "arguments"),
     "v"),
    ("/api/generate", OLL_GENERATE, ("options",), "x"),
    ("/api/show", {"model": "tiny", "junk": {}}, ("junk",), None),
]
# Keys no client should send but any may: control characters, NUL, lone surrogates (JSON escapes), bidi
# overrides, astral and combining characters, very long keys, the empty key.
ODD_KEY = st.one_of(
    st.text(st.characters(codec=None, categories=("Cc", "Cs", "Cf", "Mn", "So", "Co", "Zs", "Lo")), max_size=12),
    st.sampled_from(["", "\x00", "\ud800", "\udfff\ud800", "\u202e\u2066", "𝔘𝔫𝔦", "a\u0301" * 50, "k" * 10_000,
                     "__proto__", "$ref", "stop", "type"]))


def _at(body: dict, path: tuple, value):
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _deep(depth: int) -> str:
    return "[" * depth + "{}" + "]" * depth


def _post(server, path: str, content: bytes) -> httpx.Response:
    return httpx.post(server.url + path, content=content, headers={"content-type": "application/json"},
                      timeout=120)


def _check(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    assert "internal error" not in r.text, f"{what}: {r.text[:300]}"


HUGE = dict(case=st.sampled_from(LISTS + MAPS), n=st.sampled_from([1_000, 20_000, 100_000]))


@settings(max_examples=12, **SETTINGS)
@given(**HUGE)
def test_huge_lists_and_maps(fuzz, case, n):
    _huge(fuzz, case, n)


@pytest.mark.slow
@settings(max_examples=150, **SETTINGS)
@given(**HUGE)
def test_huge_lists_and_maps_more(fuzz, case, n):
    _huge(fuzz, case, n)


def _huge(fuzz, case, n):
    path_, base, at, element = case
    if isinstance(element, dict):
        n = min(n, 20_000)  # structured elements: keep the body under the 8 MiB limit
    if (path_, base, at, element) in LISTS:  # strings distinct (enum values must be), the rest repeated
        value = [f"{element}{i}" for i in range(n)] if isinstance(element, str) else [element] * n
    else:
        value = {f"k{i}": element for i in range(n)}
    body = json.dumps(_at(base, at, value)).encode()
    _check(_post(fuzz, path_, body), f"{path_} {at} x{n}")


@settings(max_examples=60, **SETTINGS)
@given(case=st.sampled_from(MAPS), keys=st.lists(ODD_KEY, min_size=1, max_size=6), stream=st.booleans())
def test_odd_unicode_keys_in_every_map(fuzz, case, keys, stream):
    _odd_keys(fuzz, case, keys, stream)


@pytest.mark.slow
@settings(max_examples=600, **SETTINGS)
@given(case=st.sampled_from(MAPS), keys=st.lists(ODD_KEY, min_size=1, max_size=6), stream=st.booleans())
def test_odd_unicode_keys_in_every_map_more(fuzz, case, keys, stream):
    _odd_keys(fuzz, case, keys, stream)


def _odd_keys(fuzz, case, keys, stream):
    path_, base, at, element = case
    body = _at(base, at, {k: element for k in keys})
    if path_ != "/api/show":
        body["stream"] = stream  # a failure after a stream starts is in-band: _check reads the whole stream
    body = json.dumps(body).encode()  # ensure_ascii: lone surrogates are sent as JSON escapes
    _check(_post(fuzz, path_, body), f"{path_} {at} keys={keys!r}")


@settings(max_examples=40, **SETTINGS)
@given(case=st.sampled_from(LISTS + MAPS), depth=st.integers(60, 3_000))
def test_deep_nesting_anywhere(fuzz, case, depth):
    path_, base, at, _ = case
    text = json.dumps(_at(base, at, "__DEEP__")).replace('"__DEEP__"', _deep(depth)).encode()
    r = _post(fuzz, path_, text)
    _check(r, f"{path_} {at} depth {depth}")
    if len(at) + depth + 1 > 64:  # the containers on the path, then depth arrays around an object
        assert r.status_code == 400 and "nests more than 64 levels" in r.text


# ---- cross-site simple requests -----------------------------------------------------------------------------
ORIGINS = ["https://evil.example", "null", "http://localhost.evil.example", "http://127.0.0.1.evil.example",
           "http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443", None]
ALLOWED = {"http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443", None}
MEDIA = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
         "multipart/form-data; boundary=zz", "application/json", None]
UNLOADS = [("/api/generate", {"model": "tiny", "keep_alive": 0}), ("/api/chat", {"model": "tiny", "keep_alive": 0}),
           ("/v1/chat/completions", OAI_CHAT), ("/api/show", {"model": "tiny"})]


@settings(max_examples=40, **SETTINGS)
@given(route=st.sampled_from(UNLOADS), origin=st.sampled_from(ORIGINS), media=st.sampled_from(MEDIA))
def test_cross_site_simple_requests_are_refused(fuzz, route, origin, media):
    path_, body = route
    headers = {k: v for k, v in (("Origin", origin), ("Content-Type", media)) if v is not None}
    loaded = fuzz.worker.loaded
    r = httpx.post(fuzz.url + path_, content=json.dumps(body).encode(), headers=headers, timeout=120)
    _check(r, f"{path_} {headers}")
    if origin not in ALLOWED:
        assert r.status_code == 403 and fuzz.worker.loaded == loaded, headers
    elif origin is None and media is not None and media.split(";")[0] in ("text/plain", "multipart/form-data"):
        assert r.status_code == 415 and fuzz.worker.loaded == loaded, headers
    else:
        assert r.status_code == 200, (headers, r.text[:200])


# ---- slow and short bodies ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def impatient(start_server):
    return start_server(max_tokens=2, request_timeout_s=0.5)


@settings(max_examples=6, **SETTINGS)
@given(route=st.sampled_from([("/v1/chat/completions", OAI_CHAT), ("/api/generate", OLL_GENERATE),
                              ("/api/chat", OLL_CHAT)]),
       cut=st.floats(0, 1), pieces=st.integers(1, 5))
def test_slow_and_short_bodies(impatient, route, cut, pieces):
    path_, body = route
    data = json.dumps(body).encode()
    sent = data[: int(len(data) * cut)]
    head = (f"POST {path_} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=60) as s:
        s.sendall(head)
        step = max(1, len(sent) // pieces)
        for i in range(0, len(sent), step):
            s.sendall(sent[i: i + step])
        answer = b""
        while part := s.recv(65536):  # the server must answer and close: a hang fails on the timeout
            answer += part
    status = int(answer.split(b" ", 2)[1])
    assert status == (200 if len(sent) == len(data) else 408), answer[:300]
