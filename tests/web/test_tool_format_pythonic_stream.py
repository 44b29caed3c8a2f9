"""A server started with `tool_format="pythonic"` writes calls as a Python list and streams them as OpenAI
tool-call deltas: each call starts with its name and its arguments arrive as JSON, assembling to exactly the
calls the final parse of the same output ids gives."""
import json

import httpx
import pytest

from tinygpt.runtime.models import load
from tinygpt.runtime.tool_calls import parse_tool_calls

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer"}},
    "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]


def sse(text: str) -> list[dict]:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_streamed_pythonic_calls_are_the_calls_the_output_ids_parse_to(start_server, tiny_model):
    srv = start_server(tool_format="pythonic", serve_store=False)
    tokenizer = load(str(tiny_model)).tokenizer
    seen = 0
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        for seed in range(6):
            r = http.post("/v1/chat/completions", json={
                "model": tiny_model.name, "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": TOOLS, "tool_choice": "required", "max_tokens": 40, "temperature": 1.0, "seed": seed,
                "stream": True, "return_token_ids": True})
            assert r.status_code == 200, r.text
            chunks = [c for c in sse(r.text) if c["choices"]]
            last = chunks[-1]["choices"][0]
            text = tokenizer.decode(last["token_ids"], skip_special_tokens=False)
            assert text.startswith("[get_weather(city=") or text.startswith("[now()")
            deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
            starts = [d for d in deltas if "id" in d]
            args: dict[int, str] = {}
            for d in deltas:
                args[d["index"]] = args.get(d["index"], "") + d["function"].get("arguments", "")
            if last["finish_reason"] != "tool_calls":
                continue  # cut by max_tokens: nothing to compare
            seen += 1
            parsed = parse_tool_calls(last["token_ids"], tokenizer, TOOLS, tool_format="pythonic",
                                      finish_reason="stop")
            assert parsed.error is None and parsed.calls
            assert [s["function"]["name"] for s in starts] == [c.name for c in parsed.calls]
            assert [json.loads(args[i]) for i in range(len(starts))] == [c.arguments for c in parsed.calls]
            assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        body = http.post("/v1/chat/completions", json={
            "model": tiny_model.name, "messages": [{"role": "user", "content": "time?"}], "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "now"}}, "max_tokens": 20}).json()
    assert seen >= 1
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == ("now", {})
