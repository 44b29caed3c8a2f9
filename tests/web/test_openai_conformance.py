"""The OpenAI surface answers what OpenAI's schema allows and accepts what it allows: absent (not null) tool
calls, `logprobs.refusal`, explicit nulls, `top_p: 0`, the legacy `functions` form, refusal parts,
`response_format` with tools, prompt logprobs (`echo` + `logprobs`), and clear 400s for the rest.
Real server on 127.0.0.1, raw httpx and the real `openai` SDK."""
import json

import httpx
import mlx.core as mx
import openai
import pytest

from tinygpt.runtime.models import load
from tinygpt.runtime.scoring import prompt_logprobs

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_FN = {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                             "required": ["city"], "additionalProperties": False}}
ANSWER = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
          "additionalProperties": False}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model(tiny_model):
    return load(str(tiny_model)).model


def chat(http, **body):
    r = http.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, **body})
    assert r.status_code == 200, r.text
    return r.json()


def sse(text: str) -> list[dict]:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# ---- response shapes ----------------------------------------------------------------------------------------
def test_an_answer_without_calls_has_no_tool_calls_key_and_null_refusal(http):
    body = chat(http, max_tokens=3, temperature=0, logprobs=True)
    msg, lp = body["choices"][0]["message"], body["choices"][0]["logprobs"]
    assert "tool_calls" not in msg and "function_call" not in msg
    assert msg["refusal"] is None and isinstance(msg["content"], str)
    assert lp["refusal"] is None and len(lp["content"]) == 3


# ---- nulls and ranges the schema allows -------------------------------------------------------------------
def test_explicit_nulls_for_nullable_fields_are_accepted(http):
    nulls = dict.fromkeys(["n", "stream", "logprobs", "top_logprobs", "max_completion_tokens", "temperature",
                           "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
                           "stream_options", "parallel_tool_calls", "response_format", "tools", "tool_choice"])
    body = chat(http, max_tokens=None, **nulls)
    assert body["choices"][0]["message"]["role"] == "assistant"
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once", **dict.fromkeys(
        ["n", "stream", "logprobs", "max_tokens", "echo", "best_of", "suffix", "temperature", "top_p", "seed"])})
    assert r.status_code == 200, r.text
    assert 1 <= r.json()["usage"]["completion_tokens"] <= 16  # null max_tokens is OpenAI's default, 16


def test_a_null_prompt_is_the_document_start(http):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": None, "max_tokens": 2, "temperature": 0,
                                           "return_token_ids": True})
    assert r.status_code == 200, r.text
    by_text = http.post("/v1/completions", json={"model": "tiny", "prompt": "<|endoftext|>", "max_tokens": 2,
                                                 "temperature": 0, "return_token_ids": True}).json()
    assert r.json()["prompt_token_ids"] == by_text["prompt_token_ids"]


def test_top_p_zero_keeps_only_the_most_likely_token(http):
    greedy = chat(http, max_tokens=8, temperature=0, return_token_ids=True)
    nucleus0 = chat(http, max_tokens=8, temperature=1.5, top_p=0, seed=7, return_token_ids=True)
    assert nucleus0["choices"][0]["token_ids"] == greedy["choices"][0]["token_ids"]


@pytest.mark.parametrize("key", ["²", "٣", "1.5", " 3", "-1"])
def test_a_logit_bias_key_that_is_not_a_token_id_is_a_400_naming_it(http, key):
    r = http.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "logit_bias": {key: 1}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "logit_bias" and repr(key) in err["message"]


@pytest.mark.parametrize("body, param", [
    ({"n": 2}, "n"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]}, "messages[0].content"),
    ({"functions": [WEATHER_FN], "tools": [{"type": "function", "function": WEATHER_FN}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
])
def test_what_a_local_model_cannot_do_is_a_clear_400(http, body, param):
    r = http.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "max_tokens": 2, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


# ---- legacy functions, refusal parts --------------------------------------------------------------------------
def test_legacy_functions_answer_with_function_call(client):
    r = client.chat.completions.create(model="tiny", messages=USER, functions=[WEATHER_FN], max_tokens=40,
                                       function_call={"name": "get_weather"}, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments)["city"] in ("Paris", "Oslo")
    raw = choice.message.model_dump(exclude_unset=True)
    assert "tool_calls" not in raw


def test_legacy_functions_stream_function_call_deltas(http):
    r = http.post("/v1/chat/completions", json={
        "model": "tiny", "messages": USER, "functions": [WEATHER_FN], "function_call": {"name": "get_weather"},
        "max_tokens": 40, "temperature": 0, "stream": True})
    chunks = [c for c in sse(r.text) if c["choices"]]
    fcs = [c["choices"][0]["delta"]["function_call"] for c in chunks if "function_call" in c["choices"][0]["delta"]]
    assert fcs[0] == {"name": "get_weather", "arguments": ""}
    assert all("name" not in f for f in fcs[1:])
    assert json.loads("".join(f["arguments"] for f in fcs))["city"] in ("Paris", "Oslo")
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


def _prompt_ids(http, messages, **body) -> list[int]:
    return chat(http, messages=messages, max_tokens=1, temperature=0, return_token_ids=True,
                **body)["prompt_token_ids"]


def test_legacy_history_renders_as_the_tool_call_and_result_it_stands_for(http):
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    legacy = USER + [{"role": "assistant", "content": None, "function_call": call},
                     {"role": "function", "name": "get_weather", "content": "sunny"}]
    current = USER + [{"role": "assistant", "content": None,
                       "tool_calls": [{"id": "", "type": "function", "function": call}]},
                      {"role": "tool", "tool_call_id": "", "name": "get_weather", "content": "sunny"}]
    assert _prompt_ids(http, legacy, functions=[WEATHER_FN]) == \
        _prompt_ids(http, current, tools=[{"type": "function", "function": WEATHER_FN}])


def test_assistant_refusal_parts_are_its_text(http):
    parts = USER + [{"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
                    {"role": "user", "content": "ok"}]
    field = USER + [{"role": "assistant", "content": None, "refusal": "I can't."}, {"role": "user", "content": "ok"}]
    text = USER + [{"role": "assistant", "content": "I can't."}, {"role": "user", "content": "ok"}]
    assert _prompt_ids(http, parts) == _prompt_ids(http, text) == _prompt_ids(http, field)


# ---- response_format with tools ----------------------------------------------------------------------------
def test_response_format_with_tools_gives_a_call_or_json_that_follows_the_format(http):
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}
    tools = [{"type": "function", "function": WEATHER_FN}]
    for seed in range(8):  # on the tiny test model, both kinds of answer occur here
        body = chat(http, tools=tools, response_format=fmt, max_tokens=40, temperature=1.0, seed=seed)
        choice = body["choices"][0]
        assert choice["finish_reason"] in ("stop", "tool_calls"), choice
        if choice["finish_reason"] == "tool_calls":
            assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])["city"] in ("Paris",
                                                                                                       "Oslo")
        else:
            assert set(json.loads(choice["message"]["content"])) == {"ok"}
    required = chat(http, tools=tools, tool_choice="required", response_format=fmt, max_tokens=40)
    assert required["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    none = chat(http, tools=tools, tool_choice="none", response_format=fmt, max_tokens=40, temperature=0)
    assert json.loads(none["choices"][0]["message"]["content"]).keys() == {"ok"}


# ---- prompt logprobs ------------------------------------------------------------------------------------------
def _reference_logprobs(model, ids: list[int]) -> list[float]:
    """Each token's logprob given its prefix, from one uncached forward pass over the whole prompt."""
    logits = model(mx.array(ids)[None])[0].astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def test_echo_with_logprobs_scores_the_prompt(http, model):
    prompt = "Once upon a time there was"
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 2, "temperature": 0,
                                           "echo": True, "logprobs": 2, "return_token_ids": True})
    assert r.status_code == 200, r.text
    body = r.json()
    ids, choice = body["prompt_token_ids"], body["choices"][0]
    lp = choice["logprobs"]
    n = len(ids)
    assert choice["text"].startswith(prompt) and len(lp["tokens"]) == n + 2
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:n] == pytest.approx(_reference_logprobs(model, ids), abs=1e-4)
    assert all(len(t) <= 2 and max(t.values()) >= v - 1e-5
               for t, v in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:]))
    assert lp["text_offset"][:2] == [0, len(lp["tokens"][0])]
    assert lp["text_offset"][n] == len(prompt)  # the first generated token starts after the echoed prompt


def test_lm_eval_loglikelihood_request_shape(http, model):
    """What lm-evaluation-harness sends: token ids in a one-element list, echo, logprobs 1, max_tokens 0/1."""
    ids = http.post("/v1/completions", json={"model": "tiny", "prompt": "The cat sat on the mat", "max_tokens": 1,
                                             "return_token_ids": True}).json()["prompt_token_ids"]
    for max_tokens in (0, 1):
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": [ids], "max_tokens": max_tokens,
                                               "echo": True, "logprobs": 1, "temperature": 0})
        assert r.status_code == 200, r.text
        choice, usage = r.json()["choices"][0], r.json()["usage"]
        assert usage["completion_tokens"] == max_tokens and usage["prompt_tokens"] == len(ids)
        lps = choice["logprobs"]["token_logprobs"]
        assert len(lps) == len(ids) + max_tokens
        assert lps[1:len(ids)] == pytest.approx(_reference_logprobs(model, ids), abs=1e-4)
    assert choice["finish_reason"] == "length"


def test_streamed_echo_with_logprobs_sends_the_scored_prompt_first(http):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once upon", "max_tokens": 3,
                                           "temperature": 0, "echo": True, "logprobs": 0, "stream": True})
    chunks = [c for c in sse(r.text) if c["choices"]]
    first = chunks[0]["choices"][0]
    assert first["text"] == "Once upon" and first["logprobs"]["token_logprobs"][0] is None
    whole = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once upon", "max_tokens": 3,
                                               "temperature": 0, "echo": True, "logprobs": 0}).json()
    streamed = [v for c in chunks for v in (c["choices"][0]["logprobs"] or {}).get("token_logprobs", [])]
    want = whole["choices"][0]["logprobs"]["token_logprobs"]
    assert streamed[0] is None and want[0] is None
    assert streamed[1:] == pytest.approx(want[1:], abs=1e-4)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


def test_scoring_in_chunks_equals_one_pass(model):
    ids = list(range(5, 40))
    one = prompt_logprobs(model, ids, 3, chunk=len(ids))
    chunked = prompt_logprobs(model, ids, 3, chunk=4)
    assert one[0][0] is None and chunked[0][0] is None
    assert chunked[0][1:] == pytest.approx(one[0][1:], abs=1e-4)
    assert chunked[0][1:] == pytest.approx(_reference_logprobs(model, ids), abs=1e-4)
    assert [[i for i, _ in t] for t in chunked[1][1:]] == [[i for i, _ in t] for t in one[1][1:]]


# ---- nested pydantic models: $defs / $ref in tools and response_format ------------------------------------------
def _trip_model():
    from typing import Literal

    from pydantic import BaseModel

    class City(BaseModel):
        name: Literal["Paris", "Oslo"]

    class Trip(BaseModel):
        origin: City
        to: City

    return City, Trip


def test_parse_with_a_nested_pydantic_model_returns_that_model(client):
    city, trip = _trip_model()
    assert "$defs" in json.dumps(trip.model_json_schema())
    r = client.chat.completions.parse(model="tiny", messages=USER, response_format=trip, max_tokens=60,
                                      temperature=0)
    got = r.choices[0].message.parsed
    assert isinstance(got, trip) and isinstance(got.origin, city) and got.to.name in ("Paris", "Oslo")


def test_pydantic_function_tool_with_a_nested_model_is_called_with_valid_arguments(client):
    city, trip = _trip_model()
    tool = openai.pydantic_function_tool(trip, name="book")
    assert "$ref" in json.dumps(tool["function"]["parameters"])
    r = client.chat.completions.parse(model="tiny", messages=USER, tools=[tool], tool_choice="required",
                                      parallel_tool_calls=False, max_tokens=60, temperature=0)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "book" and isinstance(call.function.parsed_arguments, trip)


def test_union_of_grammars_allows_either_until_a_token_picks_one(tiny_model):
    import numpy as np

    from tinygpt.runtime.grammar import compile_json, compile_tools, hf_tokenizer
    from tinygpt.web.constraints import Union

    tok = load(str(tiny_model)).tokenizer
    calls = compile_tools(tok, [{"type": "function", "function": WEATHER_FN}], tool_choice="required",
                          parallel_tool_calls=False)
    js = compile_json(tok, ANSWER)
    logits = mx.zeros((1, len(hf_tokenizer(tok))))

    def allowed(out) -> set[int]:
        return set(np.nonzero(np.array(out[0]) > -np.inf)[0].tolist())

    only_calls, only_json = allowed(calls.processor()(None, logits)), allowed(js.processor()(None, logits))
    assert only_calls - only_json and only_json - only_calls
    for pick, grammar in ((min(only_json - only_calls), js), (min(only_calls - only_json), calls)):
        union = Union((calls, js)).processor()
        assert allowed(union(None, logits)) == only_calls | only_json
        alone = grammar.processor()
        alone(None, logits)
        after = union(mx.array([pick]), logits)
        assert [p.grammar for p in union.live] == [grammar]
        assert allowed(after) == allowed(alone(mx.array([pick]), logits))


def test_prompt_scoring_while_another_answer_streams_changes_neither(http, model):
    """A scored job arrives while another job decodes (alone or, once joined, in the batch): both stay exact."""
    args = {"model": "tiny", "messages": USER, "max_tokens": 64, "temperature": 0, "return_token_ids": True}
    alone = chat(http, **{k: v for k, v in args.items() if k != "model"})["choices"][0]["token_ids"]
    ids = list(range(7, 60))
    with http.stream("POST", "/v1/chat/completions", json={**args, "stream": True}) as stream:
        lines = stream.iter_lines()
        while '"content":"' not in (line := next(lines)) or '"content":""' in line:
            pass  # wait for generated text: the first job is decoding
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": ids, "max_tokens": 1, "echo": True,
                                               "logprobs": 0, "temperature": 0})
        rest = "\n".join([line, *lines])
    assert r.json()["choices"][0]["logprobs"]["token_logprobs"][1:len(ids)] == pytest.approx(
        _reference_logprobs(model, ids), abs=1e-4)
    final = [c for c in sse(rest + "\n") if c["choices"] and c["choices"][0].get("finish_reason")]
    assert final[0]["choices"][0]["token_ids"] == alone


@pytest.mark.parametrize("overrides", [{"batching": False}, {"solo": False}])
def test_prompt_logprobs_without_batching_or_solo(start_server, model, overrides):
    srv = start_server(**overrides)
    ids = list(range(3, 30))
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": ids, "max_tokens": 2,
                                                      "echo": True, "logprobs": 1, "temperature": 0}, timeout=60)
    lps = r.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert lps[0] is None and len(lps) == len(ids) + 2
    assert lps[1:len(ids)] == pytest.approx(_reference_logprobs(model, ids), abs=1e-4)
