"""The OpenAI surface against OpenAI's own published OpenAPI spec (vendored subset, tests/web/data/README.md):
schemathesis generates requests for createChatCompletion, createCompletion, listModels and retrieveModel
from OpenAI's request schemas; every answer — JSON body, each stream chunk, each error — must validate
against OpenAI's response schemas (jsonschema_rs, which schemathesis itself uses), and nothing is a 5xx.
Hand-written valid requests make sure every success shape (plain, stream, usage chunk, tool calls, legacy
function calls, logprobs, prompt logprobs) is validated too, whatever the generator happens to produce.

Where the spec is read as OpenAI's service behaves (each marked `# spec:` below): the OpenAPI 3.0 keyword
`nullable: true`, which this 3.1 document still uses, allows null; streamed completion chunks (the spec
publishes no stream schema for them) are CreateCompletionResponse with `finish_reason` null until the last;
an echoed prompt's first token has a null logprob. Bounded and deterministic: derandomized, few examples.
"""
import copy
import json
from pathlib import Path

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

DATA = Path(__file__).parent / "data" / "openai-openapi-subset.json"
REF = "#/components/schemas/"
MAX_EXAMPLES = 12


def _nullable(node):
    """`nullable: true` (OpenAPI 3.0) as JSON Schema: the schema or null."""  # spec: 3.0 keyword in a 3.1 doc
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out


def _spec() -> dict:
    spec = _nullable(json.loads(DATA.read_text()))
    schemas = spec["components"]["schemas"]
    choice = schemas["CreateCompletionResponse"]["properties"]["choices"]["items"]["properties"]
    lp = choice["logprobs"]["anyOf"][0]["properties"]
    lp["token_logprobs"]["items"] = {"anyOf": [{"type": "number"}, {"type": "null"}]}  # spec: echoed first token
    lp["top_logprobs"]["items"] = {"anyOf": [lp["top_logprobs"]["items"], {"type": "null"}]}
    chunk = copy.deepcopy(schemas["CreateCompletionResponse"])
    reason = chunk["properties"]["choices"]["items"]["properties"]["finish_reason"]
    chunk["properties"]["choices"]["items"]["properties"]["finish_reason"] = {"anyOf": [reason, {"type": "null"}]}
    schemas["CompletionStreamChunk"] = chunk  # spec: no stream schema is published for completions
    return spec


SPEC = _spec()
ANSWERS = {  # operationId: (JSON body schema, stream chunk schema)
    "createChatCompletion": ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse"),
    "createCompletion": ("CreateCompletionResponse", "CompletionStreamChunk"),
    "listModels": ("ListModelsResponse", None),
    "retrieveModel": ("Model", None),
}
_validators: dict[str, jsonschema_rs.Validator] = {}


def problems(name: str, value) -> list[str]:
    """Why `value` is not a valid `name` of OpenAI's spec (empty: it is)."""
    if name not in _validators:
        _validators[name] = jsonschema_rs.validator_for({"$ref": REF + name, "components": SPEC["components"]})
    return [f"{name}: {e.message} at {list(e.instance_path)}" for e in _validators[name].iter_errors(value)]


def check_answer(op_id: str, status: int, content_type: str, text: str) -> list[str]:
    """Every problem with one answer: a 5xx, or a body or stream event that OpenAI's schema rejects."""
    if status >= 500:
        return [f"{op_id}: status {status}: {text[:300]}"]
    if status >= 400:
        return problems("ErrorResponse", json.loads(text))
    body, chunk = ANSWERS[op_id]
    if not content_type.startswith("text/event-stream"):
        return problems(body, json.loads(text))
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return [f"{op_id}: the stream does not end with [DONE]"]
    out = []
    for e in events[:-1]:
        value = json.loads(e)
        out += problems("ErrorResponse" if "error" in value else chunk, value)
    return out


def _fuzz(url: str, model: str, max_examples: int) -> list[str]:
    schema = schemathesis.openapi.from_dict(SPEC)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        op_id = op.definition.raw["operationId"]
        calls = [0]

        @given(case=op.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, derandomize=True)
        def check(case):
            calls[0] += 1
            if isinstance(case.body, dict):
                case.body = {**case.body, "model": model}  # a random model name only ever gets the 404
            if case.path_parameters and calls[0] % 2:
                case.path_parameters = {**case.path_parameters, "model": model}
            r = case.call(base_url=url + "/v1", timeout=60)
            ctype = r.headers.get("content-type") or [""]
            failures.extend(check_answer(op_id, r.status_code, ctype[0] if isinstance(ctype, list) else ctype,
                                         r.text))

        check()
    return failures


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}}, "required": ["city"]}}}
USER = [{"role": "user", "content": "Weather in Paris?"}]
VALID = [  # (operationId, method, path, body)
    ("listModels", "GET", "/v1/models", None),
    ("retrieveModel", "GET", "/v1/models/{model}", None),
    ("retrieveModel", "GET", "/v1/models/nope", None),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "max_tokens": 3}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "max_tokens": 3, "logprobs": True,
                                                              "top_logprobs": 2, "stream": True,
                                                              "stream_options": {"include_usage": True}}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "logprobs": True, "max_tokens": 2}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "tools": [TOOL], "max_tokens": 30,
                                                              "tool_choice": "required"}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "tools": [TOOL], "max_tokens": 30,
                                                              "tool_choice": "required", "stream": True}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "functions": [TOOL["function"]],
                                                              "function_call": {"name": "get_weather"},
                                                              "max_tokens": 30}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "functions": [TOOL["function"]],
                                                              "function_call": {"name": "get_weather"},
                                                              "max_tokens": 30, "stream": True}),
    ("createChatCompletion", "POST", "/v1/chat/completions", {"messages": USER, "n": 3}),
    ("createCompletion", "POST", "/v1/completions", {"prompt": "Once upon", "max_tokens": 3, "logprobs": 2}),
    ("createCompletion", "POST", "/v1/completions", {"prompt": "Once upon", "max_tokens": 2, "echo": True,
                                                     "logprobs": 1}),
    ("createCompletion", "POST", "/v1/completions", {"prompt": "Once upon", "max_tokens": 2, "echo": True,
                                                     "logprobs": 1, "stream": True,
                                                     "stream_options": {"include_usage": True}}),
    ("createCompletion", "POST", "/v1/completions", {"prompt": [[1, 2, 3]], "max_tokens": 0, "echo": True,
                                                     "logprobs": 0}),
]


@pytest.fixture(scope="module")
def spec_server(start_server):
    return start_server(max_tokens=4, max_body_bytes=1 << 20)


@pytest.mark.parametrize("op_id, method, path, body", VALID, ids=[f"{v[0]}-{i}" for i, v in enumerate(VALID)])
def test_answers_to_valid_requests_follow_openais_schema(spec_server, tiny_model, op_id, method, path, body):
    import httpx

    url = spec_server.url + path.replace("{model}", tiny_model.name)
    r = httpx.request(method, url, json={"model": tiny_model.name, **body} if body else None, timeout=60)
    assert r.status_code < 500
    assert check_answer(op_id, r.status_code, r.headers.get("content-type", ""), r.text) == []


def test_the_validator_rejects_what_the_spec_forbids():
    """The checks above can fail: yesterday's shapes (null tool_calls, logprobs without refusal) are caught."""
    msg = {"role": "assistant", "content": "hi", "refusal": None}
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "message": msg, "logprobs": None}]}
    assert problems("CreateChatCompletionResponse", answer) == []
    bad_calls = copy.deepcopy(answer)
    bad_calls["choices"][0]["message"]["tool_calls"] = None
    assert problems("CreateChatCompletionResponse", bad_calls)
    bad_lp = copy.deepcopy(answer)
    bad_lp["choices"][0]["logprobs"] = {"content": []}
    assert problems("CreateChatCompletionResponse", bad_lp)


def test_generated_requests_get_answers_that_follow_openais_schema(spec_server, tiny_model):
    assert _fuzz(spec_server.url, tiny_model.name, MAX_EXAMPLES) == []


@pytest.mark.slow
def test_generated_requests_harder(spec_server, tiny_model):
    assert _fuzz(spec_server.url, tiny_model.name, 150) == []
