"""The real `ollama` client against `tinygpt serve` on the same port as the OpenAI API."""
import json
import threading
import time

import httpx
import ollama
import pytest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                   "required": ["city"], "additionalProperties": False}}}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url, timeout=60)


def test_root_and_version(server):
    assert httpx.get(server.url + "/").text == "Ollama is running"
    assert httpx.get(server.url + "/api/version").json()["version"].count(".") == 2


def test_list_show_ps(client, tiny_model):
    m, embedded = client.list().models
    assert embedded.model == "default:latest"  # the embedded default is always servable
    assert m.model == f"{tiny_model.name}:latest" and m.size > 0 and len(m.digest) == 64
    assert m.details.family == "qwen3" and m.details.format == "safetensors"
    shown = client.show(tiny_model.name)
    assert shown.modelinfo["qwen3.context_length"] == 40960
    assert shown.modelinfo["general.parameter_count"] > 0
    assert set(shown.capabilities) == {"completion", "tools"}
    assert "<tool_call>" in shown.template and 'stop "<|im_end|>"' in shown.parameters
    (running,) = client.ps().models
    assert running.model == m.model and running.expires_at.year == 9999


def test_generate_returns_context_and_continues_from_it(client):
    r = client.generate(model="tiny", prompt="Once upon a time", options=GREEDY)
    assert r.done and r.done_reason == "length" and r.eval_count == 8
    assert len(r.context) == r.prompt_eval_count + r.eval_count
    r2 = client.generate(model="tiny", prompt="and then", context=r.context, options=GREEDY)
    assert r2.prompt_eval_count > len(r.context)
    streamed = "".join(p.response for p in client.generate(model="tiny", prompt="Once upon a time",
                                                             options=GREEDY, stream=True))
    assert streamed == r.response


def test_chat_streaming_with_tools_gives_object_arguments(client):
    parts = list(client.chat(model="tiny", messages=USER, tools=[WEATHER], stream=True,
                             options={"temperature": 0, "num_predict": 60}))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    text = "".join(p.message.content or "" for p in parts)
    assert "<tool_call>" not in text
    for call in calls:  # auto: a random model may or may not call; a call it makes is well-formed
        assert call.function.name == "get_weather"
        assert call.function.arguments in ({"city": "Paris"}, {"city": "Oslo"})


def test_chat_tool_call_round_trip_non_streaming(client, server):
    # Ollama has no tool_choice; drive a call through the OpenAI side, then continue on the Ollama side.
    body = {"model": "tiny", "messages": USER, "tools": [WEATHER], "tool_choice": "required",
            "parallel_tool_calls": False, "max_tokens": 60, "temperature": 0}
    call = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()[
        "choices"][0]["message"]["tool_calls"][0]["function"]
    history = USER + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": call["name"], "arguments": json.loads(call["arguments"])}}]},
        {"role": "tool", "content": "sunny", "tool_name": call["name"]}]
    r = client.chat(model="tiny", messages=history, tools=[WEATHER], options=GREEDY, stream=False)
    assert r.done and r.message.role == "assistant"
    assert r.prompt_eval_count > 0


def test_format_schema_is_enforced(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    r = client.chat(model="tiny", messages=USER, format=schema, options={"temperature": 0, "num_predict": 30})
    assert r.done_reason == "stop"
    assert isinstance(json.loads(r.message.content)["ok"], bool)


def test_unknown_model_raises_response_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        list(client.chat(model="nope", messages=USER, stream=True))
    assert e.value.status_code == 404 and "nope" in e.value.error


def test_bad_option_is_a_400_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="tiny", messages=USER, options={"temperature": "hot"})
    assert e.value.status_code == 400 and "temperature" in e.value.error


def test_keep_alive_unloads_and_loads(start_server):
    srv = start_server()
    c = ollama.Client(host=srv.url, timeout=60)
    r = c.chat(model="tiny", messages=[], keep_alive=0)
    assert r.done_reason == "unload" and c.ps().models == [] and not srv.worker.loaded
    r = c.chat(model="tiny", messages=[], keep_alive="10m")
    assert r.done_reason == "load" and srv.worker.loaded
    remaining = (c.ps().models[0].expires_at.timestamp() - time.time())
    assert 590 < remaining <= 600
    r = c.generate(model="tiny", prompt="hi", keep_alive=0, options=GREEDY)
    assert r.done
    deadline = time.monotonic() + 5
    while srv.worker.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not srv.worker.loaded
    assert c.generate(model="tiny", prompt="hi", options=GREEDY).load_duration > 0  # loads again on demand


def test_an_error_after_streaming_started_is_an_error_line(start_server):
    srv = start_server(max_tokens=4096)
    c = ollama.Client(host=srv.url, timeout=60)
    stream = c.chat(model="tiny", messages=USER, stream=True, options={"temperature": 0, "num_predict": 4000})
    first = next(stream)
    assert not first.done
    threading.Thread(target=srv.worker.stop).start()  # the server shuts down mid-answer
    with pytest.raises(ollama.ResponseError) as e:
        for _ in stream:
            pass
    assert "shutting down" in e.value.error


def test_keep_alive_values(server):
    from tinygpt.web.errors import ApiError
    from tinygpt.web.ollama_api import keep_alive_seconds

    assert keep_alive_seconds("5m") == 300 and keep_alive_seconds("1h30m") == 5400
    assert keep_alive_seconds(10) == 10 and keep_alive_seconds("-1") == -1 and keep_alive_seconds("0") == 0
    assert keep_alive_seconds(1e300) == -1 and keep_alive_seconds("99999999h") == -1  # forever, no overflow
    with pytest.raises(ApiError):
        keep_alive_seconds("soon")
    r = httpx.post(server.url + "/api/chat", json={"model": "tiny", "messages": [], "keep_alive": 1e300})
    assert r.json()["done_reason"] == "load"
    assert httpx.post(server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "options": {
        "num_predict": 2}}, timeout=30).json()["eval_count"] == 2  # the worker is still serving
