"""The real `openai` SDK against `tinygpt serve` (tiny random model): plain, streaming, tool calls, usage,
response_format, logprobs, token ids, sessions, completions."""
import json

import openai
import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Time now",
    "parameters": {"type": "object", "properties": {"utc": {"type": "boolean"}}, "required": ["utc"],
                   "additionalProperties": False}}}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_list_names_the_served_model(client, tiny_model):
    assert [m.id for m in client.models.list()] == [tiny_model.name, "default"]  # and the embedded default
    assert client.models.retrieve(tiny_model.name).id == tiny_model.name


def test_plain_chat_matches_the_engine_greedy_ids_exactly(client, tiny_model):
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0,
                                       extra_body={"return_token_ids": True})
    engine = Engine(load(str(tiny_model)))
    prompt = engine.encode_chat(USER)
    want = engine.generate(prompt, SamplingParams(max_tokens=12))
    choice = r.model_extra["prompt_token_ids"], r.choices[0].model_extra["token_ids"]
    assert choice == (prompt, want.output_ids)
    assert r.choices[0].message.content == want.text
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(prompt), 12)


def test_streaming_text_equals_the_non_streamed_text(client):
    args = dict(model="tiny", messages=USER, max_tokens=20, temperature=0)
    whole = client.chat.completions.create(**args).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_include_usage_sends_one_final_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=USER, max_tokens=5, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 5


def test_repeated_prompt_reports_cached_tokens(client):
    msgs = [{"role": "user", "content": "a prompt long enough to be worth caching " * 3}]
    first = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=3, temperature=0)
    again = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=3, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    assert first.choices[0].message.content == again.choices[0].message.content


def test_required_tool_call_round_trip(client):
    r = client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER, TIME], tool_choice="required",
                                       parallel_tool_calls=False, max_tokens=60, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert (call.function.name, sorted(args)) in [("get_weather", ["city"]), ("get_time", ["utc"])]
    history = USER + [choice.message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    follow = client.chat.completions.create(model="tiny", messages=history, tools=[WEATHER, TIME],
                                            tool_choice="none", max_tokens=8, temperature=0)
    assert follow.choices[0].message.tool_calls is None
    assert follow.choices[0].finish_reason in ("stop", "length")
    assert follow.usage.prompt_tokens > r.usage.prompt_tokens


def test_named_tool_choice_calls_that_tool(client):
    r = client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER, TIME], max_tokens=60,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    assert isinstance(json.loads(call.function.arguments)["utc"], bool)


def test_streamed_tool_call_deltas_give_name_first_then_arguments(client):
    stream = client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER], tool_choice="required",
                                            parallel_tool_calls=False, max_tokens=60, temperature=0, stream=True)
    deltas = [(c.choices[0].delta, c.choices[0].finish_reason) for c in stream if c.choices]
    calls = [d.tool_calls[0] for d, _ in deltas if d.tool_calls]
    assert calls[0].id.startswith("call_") and calls[0].type == "function"
    assert calls[0].function.name == "get_weather" and not calls[0].function.arguments
    assert all(c.index == 0 and c.id is None and c.function.name is None for c in calls[1:])
    assert json.loads("".join(c.function.arguments for c in calls[1:])) in ({"city": "Paris"}, {"city": "Oslo"})
    assert deltas[-1][1] == "tool_calls"


def test_json_object_response_format_gives_a_json_object(client):
    r = client.chat.completions.create(model="tiny", messages=USER, response_format={"type": "json_object"},
                                       max_tokens=64, temperature=0)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        assert r.choices[0].message.content.startswith("{")


def test_json_schema_response_format_follows_the_schema(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "enum": [1, 2]}},
              "required": ["ok", "n"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool) and value["n"] in (1, 2)


def test_logprobs_and_top_logprobs(client):
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=4, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for tok in content:
        assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
        assert tok.top_logprobs[0].logprob == pytest.approx(tok.logprob, abs=1e-5)  # greedy = the top token


def test_seeded_sampling_repeats(client):
    args = dict(model="tiny", messages=USER, max_tokens=10, temperature=1.0, seed=1234,
                extra_body={"return_token_ids": True})
    a = client.chat.completions.create(**args).choices[0].model_extra["token_ids"]
    b = client.chat.completions.create(**args).choices[0].model_extra["token_ids"]
    assert a == b


def test_stop_string_ends_the_answer_before_it(client):
    base = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0)
    text = base.choices[0].message.content
    stop = text[3:5]
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[: text.index(stop)]


def test_session_keeps_the_kv_cache_across_calls(client):
    turn1 = USER
    r1 = client.chat.completions.create(model="tiny", messages=turn1, max_tokens=4, temperature=0,
                                        extra_body={"session": "s-1"})
    turn2 = turn1 + [{"role": "assistant", "content": r1.choices[0].message.content},
                     {"role": "user", "content": "and in Oslo?"}]
    r2 = client.chat.completions.create(model="tiny", messages=turn2, max_tokens=4, temperature=0,
                                        extra_body={"session": "s-1"})
    assert r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens - 1


def test_completions_with_text_and_with_token_ids(client):
    text = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0,
                                     extra_body={"return_token_ids": True})
    ids = text.model_extra["prompt_token_ids"]
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == text.choices[0].text
    assert text.usage.completion_tokens == 6
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == text.choices[0].text


def test_errors_come_back_as_sdk_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=USER)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, tool_choice="required")
    assert e.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=USER, tools=[{"type": "function", "function": {
            "name": "bad", "parameters": {"type": "string"}}}])


def test_unknown_extra_fields_are_tolerated(client):
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=2,
                                       extra_body={"reasoning_effort": "low", "metadata": {"a": 1}, "store": False})
    assert r.usage.completion_tokens == 2
