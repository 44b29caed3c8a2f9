"""The server writes and streams tool calls in each model's format: tiny Llama 3 and Mistral models (real vocabulary,
special tokens, chat template) answer under the grammar, the streamed tool-call deltas assemble to exactly the
calls that the final parse of the same output ids gives (Mistral's ids are the model's own), and a server started
with `tool_format` writes every model's calls in that format instead."""
import json

import httpx
import pytest

from tinygpt.runtime import tool_formats
from tinygpt.runtime.models import load
from tinygpt.runtime.presets import InitSpec, init_model
from tinygpt.runtime.tool_calls import parse_tool_calls

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1,
                                                                                   "maximum": 7}},
    "required": ["city"], "additionalProperties": False}}}]


def sse(text: str) -> list[dict]:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.fixture(scope="module", params=["llama3", "mistral"])
def family(request, tmp_path_factory, start_server):
    path = init_model(tmp_path_factory.mktemp("models") / f"srv-{request.param}",
                      InitSpec(preset="tiny", vocab=request.param))
    srv = start_server(model=str(path), serve_store=False)
    return request.param, srv, load(str(path)).tokenizer


def test_streamed_calls_are_the_calls_the_output_ids_parse_to(family):
    name, srv, tokenizer = family
    fmt = tool_formats.get(name)
    seen = 0
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        for seed in range(4):
            r = http.post("/v1/chat/completions", json={
                "model": f"srv-{name}", "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": TOOLS, "tool_choice": "required", "max_tokens": 48, "temperature": 1.0, "seed": seed,
                "stream": True, "return_token_ids": True})
            assert r.status_code == 200, r.text
            chunks = [c for c in sse(r.text) if c["choices"]]
            last = chunks[-1]["choices"][0]
            parsed = parse_tool_calls(last["token_ids"], tokenizer, TOOLS, tool_format=fmt,
                                      finish_reason=last["finish_reason"] if last["finish_reason"] == "stop" else None)
            deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
            starts = [d for d in deltas if "id" in d]
            args: dict[int, str] = {}
            for d in deltas:
                args[d["index"]] = args.get(d["index"], "") + d["function"].get("arguments", "")
            if last["finish_reason"] != "tool_calls":
                continue  # cut by max_tokens: nothing to compare
            seen += 1
            assert parsed.error is None and parsed.calls
            assert [s["function"]["name"] for s in starts] == [c.name for c in parsed.calls]
            assert [json.loads(args[i]) for i in range(len(starts))] == [c.arguments for c in parsed.calls]
            if fmt.id_key:
                assert [s["id"] for s in starts] == [c.id for c in parsed.calls]
            assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert seen >= 1


def test_a_server_tool_format_overrides_the_template(start_server, tiny_model):
    srv = start_server(tool_format="json", serve_store=False)
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        body = http.post("/v1/chat/completions", json={
            "model": tiny_model.name, "messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_tokens": 40,
            "temperature": 0, "return_token_ids": True}).json()
    tokenizer = load(str(tiny_model)).tokenizer
    text = tokenizer.decode(body["choices"][0]["token_ids"], skip_special_tokens=False)
    assert text.startswith('{"name": "get_weather", "arguments": {')
    if body["choices"][0]["finish_reason"] == "tool_calls":
        assert json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])["city"] in (
            "Paris", "Oslo")
