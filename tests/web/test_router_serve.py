"""Model "auto" (tinygpt serve --router DIR): each chat request is routed by the saved router to a store model
(a shipped specialist, or the generalist: the served model) or to an enabled backend; the decision comes back in
the x-tinygpt-route header and the body's `tinygpt.route`, on the OpenAI and Ollama surfaces, whole and streamed,
through the real openai and ollama clients. Privacy: a socket-level guard sees no connection but to the server
itself during a routed session with a backend configured but disabled; with it enabled, only its host:port.
Without --router, "auto" is a 404 that says how to turn it on."""
import json
import socket
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tinygpt.router.registry import Target
from tinygpt.router.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
from wire_server import WireServer, openai_reply  # noqa: E402

FILE_TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} a file",
                                                 "parameters": {"type": "object", "properties": {}}}}
              for n in ("ls", "mv")]
OTHER_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
               for n in ("lookup", "summon")]  # no domain of the router offers these: unsure
FILES = [{"role": "user", "content": "word3 word7 word9"}]
UNSURE = [{"role": "user", "content": "hello there, who are you"}]  # no tools, unseen words: low confidence
SETTINGS = Settings(ship=0.5, escalate_below=0.9, targets=[Target(name="cluster", kind="remote", enabled=True,
                                                                  low_confidence=True)])
BACKENDS = """
[backends.cluster]
kind = "openai-compatible"
model = "big-model"
base_url = "{url}/v1"
retries = 0
{enabled}
"""


@pytest.fixture(scope="module")
def store_root(tiny_model, tmp_path_factory):
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    root = tmp_path_factory.mktemp("routed")
    store = ModelStore(root / "models")
    store.add("files-spec", init_adapter(tiny_model, root / "adapter", rank=4, seed=5), base=str(tiny_model))
    store.set_status("files-spec", "shipped")
    store.describe("files-spec", domain="fileops", tools=["ls", "mv"])
    return str(root / "models")


def routed_server(start_server, store_root, router_dir, backends: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_BACKENDS", str(backends))
        return start_server(store=store_root, router=str(router_dir), max_tokens=8)


@pytest.fixture(scope="module")
def cluster():
    server = WireServer([])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private(start_server, store_root, saved_router, cluster, tmp_path_factory):
    """A routed server whose only backend is configured but disabled."""
    path = tmp_path_factory.mktemp("b") / "backends.toml"
    path.write_text(BACKENDS.format(url=cluster.url, enabled=""))
    return routed_server(start_server, store_root, saved_router(SETTINGS), path)


@pytest.fixture(scope="module")
def escalating(start_server, store_root, saved_router, cluster, tmp_path_factory):
    """A routed server whose backend `cluster` is enabled: low-confidence requests go to it."""
    path = tmp_path_factory.mktemp("b") / "backends.toml"
    path.write_text(BACKENDS.format(url=cluster.url, enabled="enabled = true"))
    return routed_server(start_server, store_root, saved_router(SETTINGS), path)


@pytest.fixture
def outbound(monkeypatch):
    """Every (host, port) the process connects to or looks up from now on."""
    seen = []
    real = socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo

    def record(address):
        seen.append(tuple(address[:2]) if isinstance(address, tuple) else address)

    monkeypatch.setattr(socket.socket, "connect", lambda self, a: (record(a), real[0](self, a))[1])
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, a: (record(a), real[1](self, a))[1])
    monkeypatch.setattr(socket, "create_connection", lambda a, *k, **kw: (record(a), real[2](a, *k, **kw))[1])
    monkeypatch.setattr(socket, "getaddrinfo", lambda h, p, *k, **kw: (record((h, p)), real[3](h, p, *k, **kw))[1])
    return seen


def clients(srv):
    return (openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60),
            ollama.Client(host=srv.url, timeout=60))


def test_a_routed_session_with_the_backend_disabled_contacts_nothing_but_the_server(private, cluster, tiny_model,
                                                                                     outbound):
    oai, oll = clients(private)
    assert [m.id for m in oai.models.list()][-1] == "auto" and oai.models.retrieve("auto").id == "auto"
    assert "auto:latest" in [m.model for m in oll.list().models]
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=FILES, tools=FILE_TOOLS,
                                                        max_tokens=4, temperature=0)
    r = raw.parse()
    assert raw.headers["x-tinygpt-route"].startswith("files-spec (specialist); domain=fileops; score=")
    route = r.model_extra["tinygpt"]["route"]
    assert r.model == "files-spec" and route["route"] == "files-spec" and route["kind"] == "specialist"
    assert route["score"] >= route["threshold"] == 0.5 and route["policy"].startswith("router:")
    # unsure, and the backend that takes unsure requests is off: the generalist, the model the server was started with
    unsure = oai.chat.completions.create(model="auto", messages=UNSURE, max_tokens=4, temperature=0)
    assert unsure.model == tiny_model.name and unsure.model_extra["tinygpt"]["route"]["kind"] == "generalist"
    chunks = list(oai.chat.completions.create(model="auto", messages=FILES, tools=FILE_TOOLS, max_tokens=4,
                                              temperature=0, stream=True))
    assert chunks[0].model_extra["tinygpt"]["route"]["route"] == "files-spec"
    assert {c.model for c in chunks} == {"files-spec"} and chunks[-1].choices[0].finish_reason
    chat = oll.chat(model="auto", messages=FILES, tools=FILE_TOOLS, options={"num_predict": 4})
    assert chat.model == "files-spec:latest"
    gen = httpx.post(private.url + "/api/generate", json={"model": "auto", "prompt": "hello there", "stream": False,
                                                          "options": {"num_predict": 3}})
    assert gen.status_code == 200 and gen.json()["tinygpt"]["route"]["kind"] == "generalist"
    assert "generalist" in gen.headers["x-tinygpt-route"]
    lines = [json.loads(x) for x in httpx.post(private.url + "/api/chat", json={
        "model": "auto", "messages": FILES, "tools": FILE_TOOLS, "options": {"num_predict": 3}}).text.splitlines()]
    assert lines[-1]["done"] and lines[-1]["tinygpt"]["route"]["route"] == "files-spec"
    assert cluster.requests == []
    assert outbound and set(outbound) <= {("127.0.0.1", private.port)}, outbound


def test_an_enabled_backend_answers_unsure_requests_and_only_its_host_is_contacted(escalating, cluster, outbound):
    oai, oll = clients(escalating)
    cluster.answers[:] = [openai_reply("hi from the cluster"),
                          openai_reply("", [("call_9", "lookup", '{"path": "."}')]),
                          openai_reply("streamed", [("call_8", "summon", '{"a": 1}')]),
                          openai_reply("", [("call_7", "lookup", '{"path": "x"}')])]
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=UNSURE, max_tokens=5)
    r = raw.parse()
    assert r.choices[0].message.content == "hi from the cluster" and r.usage.prompt_tokens == 40
    assert raw.headers["x-tinygpt-route"].startswith("cluster (remote)")
    assert r.model_extra["tinygpt"]["route"]["kind"] == "remote" and r.system_fingerprint == "fp_backend-cluster"
    sent = cluster.requests[0][2]
    assert sent["model"] == "big-model" and sent["messages"] == [{"role": "user", "content": UNSURE[0]["content"]}]
    assert sent["max_tokens"] == 5
    called = oai.chat.completions.create(model="auto", messages=UNSURE, tools=OTHER_TOOLS[:1], max_tokens=5)
    (call,) = called.choices[0].message.tool_calls
    assert called.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_9", "lookup", {"path": "."})
    chunks = list(oai.chat.completions.create(model="auto", messages=UNSURE, tools=OTHER_TOOLS, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].model_extra["tinygpt"]["route"]["route"] == "cluster"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert text == "streamed" and deltas[0].id == "call_8" and deltas[0].function.name == "summon"
    assert "".join(d.function.arguments for d in deltas) == '{"a": 1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == 9
    chat = oll.chat(model="auto", messages=UNSURE, tools=OTHER_TOOLS[:1])
    (tc,) = chat.message.tool_calls
    assert tc.function.name == "lookup" and tc.function.arguments == {"path": "x"}
    routed = oai.chat.completions.create(model="auto", messages=FILES, tools=FILE_TOOLS, max_tokens=3)
    assert routed.model == "files-spec" and len(cluster.requests) == 4  # a sure request stays local
    assert outbound and set(outbound) <= {("127.0.0.1", escalating.port), ("127.0.0.1", cluster.port)}
    assert ("127.0.0.1", cluster.port) in outbound


def test_ollama_streams_a_backends_reply_and_generate_goes_there_too(escalating, cluster):
    cluster.answers[:] = [openai_reply("thinking", [("call_5", "summon", '{"who": "x"}')]),
                          openai_reply("a generated answer")]
    lines = [json.loads(x) for x in httpx.post(escalating.url + "/api/chat", json={
        "model": "auto", "messages": UNSURE, "tools": OTHER_TOOLS}).text.splitlines()]
    assert "".join(x["message"]["content"] for x in lines) == "thinking" and lines[-1]["done"]
    assert lines[-1]["message"]["tool_calls"] == [{"id": "call_5", "function": {"name": "summon",
                                                                                "arguments": {"who": "x"}, "index": 0}}]
    assert lines[-1]["tinygpt"]["route"]["route"] == "cluster" and lines[-1]["model"] == "big-model:latest"
    gen = httpx.post(escalating.url + "/api/generate", json={"model": "auto", "prompt": UNSURE[0]["content"],
                                                             "system": "be brief", "stream": False})
    assert gen.json()["response"] == "a generated answer" and gen.headers["x-tinygpt-route"].startswith("cluster")
    assert cluster.requests[-1][2]["messages"] == [{"role": "system", "content": "be brief"}, UNSURE[0]]


def test_serve_refuses_a_missing_router_before_loading_anything(tiny_model, capsys):
    from tinygpt.cli_serve import main

    assert main(["--model", str(tiny_model), "--port", "0", "--router", "/nonexistent/router"]) == 2
    assert "no router at /nonexistent/router" in capsys.readouterr().err


def test_a_request_a_backend_cannot_honour_is_refused_before_anything_is_sent(escalating, cluster):
    n = len(cluster.requests)
    r = httpx.post(escalating.url + "/v1/chat/completions", json={"model": "auto", "messages": UNSURE,
                                                                  "logprobs": True})
    assert r.status_code == 400 and "logprobs" in r.json()["error"]["message"] and "cluster" in r.json()["error"][
        "message"]
    r = httpx.post(escalating.url + "/v1/completions", json={"model": "auto", "prompt": "hi"})
    assert r.status_code == 400 and "routes chat requests only" in r.json()["error"]["message"]
    r = httpx.post(escalating.url + "/api/generate", json={"model": "auto", "prompt": "hi", "raw": True})
    assert r.status_code == 400 and "raw" in r.json()["error"]
    assert len(cluster.requests) == n


def test_a_failing_backend_is_a_502_naming_the_route_streamed_or_not(escalating, cluster):
    cluster.answers[:] = [("status", 400, {"error": {"message": "no such model"}})] * 3
    r = httpx.post(escalating.url + "/v1/chat/completions", json={"model": "auto", "messages": UNSURE})
    assert r.status_code == 502 and "route cluster" in r.json()["error"]["message"]
    oai, oll = clients(escalating)
    with pytest.raises(openai.APIStatusError, match="route cluster") as err:  # before the stream starts
        list(oai.chat.completions.create(model="auto", messages=UNSURE, stream=True))
    assert err.value.status_code == 502
    with pytest.raises(ollama.ResponseError, match="route cluster"):
        list(oll.chat(model="auto", messages=UNSURE, stream=True))
    assert cluster.answers == []


def test_without_a_router_auto_is_a_404_that_says_how_to_enable_it(server):
    oai, oll = clients(server)
    assert "auto" not in [m.id for m in oai.models.list()]
    with pytest.raises(openai.NotFoundError, match="--router DIR"):
        oai.chat.completions.create(model="auto", messages=UNSURE)
    with pytest.raises(ollama.ResponseError, match="--router DIR"):
        oll.chat(model="auto", messages=UNSURE)


@pytest.fixture(scope="module")
def backup():
    server = WireServer([])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def falling_back(start_server, store_root, saved_router, cluster, backup, tmp_path_factory):
    """A routed server whose enabled backend `cluster` falls back to the enabled backend `backup`."""
    path = tmp_path_factory.mktemp("b") / "backends.toml"
    path.write_text(BACKENDS.format(url=cluster.url, enabled='enabled = true\nfallback = "backup"')
                    + BACKENDS.replace("cluster", "backup").replace("big-model", "small-model").format(
                        url=backup.url, enabled="enabled = true"))
    return routed_server(start_server, store_root, saved_router(SETTINGS), path)


def test_a_reply_the_fallback_gave_says_so_in_the_header_the_extension_and_the_log(falling_back, cluster, backup,
                                                                                   caplog):
    failed = ("status", 503, {"error": {"message": "overloaded"}})
    cluster.answers[:] = [failed] * 3
    backup.answers[:] = [openai_reply("from the backup"), openai_reply("streamed backup"), openai_reply("ollama")]
    oai, _ = clients(falling_back)
    with caplog.at_level("WARNING", logger="tinygpt.serve"):
        raw = oai.chat.completions.with_raw_response.create(model="auto", messages=UNSURE, max_tokens=5)
    r = raw.parse()
    assert r.choices[0].message.content == "from the backup"
    header = raw.headers["x-tinygpt-route"]
    assert header.startswith("cluster (remote)") and "; fallback=backend cluster failed" in header
    assert "answered by the fallback small-model" in header
    note = r.model_extra["tinygpt"]["route"]["fallback"]
    assert "backend cluster failed" in note and "overloaded" in note and "small-model" in note
    assert any("route cluster: backend cluster failed" in m for m in caplog.messages)
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=UNSURE, stream=True)
    chunks = list(raw.parse())
    assert "fallback=backend cluster failed" in raw.headers["x-tinygpt-route"]
    assert "small-model" in chunks[0].model_extra["tinygpt"]["route"]["fallback"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed backup"
    done = httpx.post(falling_back.url + "/api/chat", json={"model": "auto", "messages": UNSURE, "stream": False})
    assert done.json()["message"]["content"] == "ollama"
    assert "small-model" in done.json()["tinygpt"]["route"]["fallback"] and "fallback=" in done.headers[
        "x-tinygpt-route"]
    assert "127.0.0.1" not in done.headers["x-tinygpt-route"] + note  # backend names, never their URLs
    cluster.answers[:] = [openai_reply("no fallback needed")]
    r = oai.chat.completions.create(model="auto", messages=UNSURE)
    assert "fallback" not in r.model_extra["tinygpt"]["route"]


def test_serve_refuses_a_model_named_auto_with_a_router(tiny_model, saved_router, capsys):
    from tinygpt.cli_serve import main

    argv = ["--model", str(tiny_model), "--port", "0", "--router", str(saved_router(SETTINGS))]
    for name in ("auto", "auto:latest"):
        assert main([*argv, "--model-name", name]) == 2
        assert f"the served model is named '{name}', the name --router gives the router" in capsys.readouterr().err


def test_api_show_describes_auto_as_the_router(escalating):
    for name in ("auto", "auto:latest"):
        r = httpx.post(escalating.url + "/api/show", json={"model": name})
        assert r.status_code == 200 and r.json()["details"]["family"] == "router"
        info = r.json()["model_info"]
        assert info["general.architecture"] == "router" and info["tinygpt.router"].startswith("router:")
        assert "fileops" in info["tinygpt.router.domains"] and "tools" in r.json()["capabilities"]
