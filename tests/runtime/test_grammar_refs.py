"""The schemas the OpenAI SDK sends for pydantic models ($defs/$ref, strict objects, nullable fields,
discriminated unions, recursion) compile on both backends or are refused clearly, and what a random model
writes under them parses, validates and loads back into the pydantic model."""
import json
from typing import Literal, Optional, Union

import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output, parse_tool_calls

pytestmark = pytest.mark.usefixtures("one_blas_thread")
BACKENDS = ["llguidance", "outlines"]


class Addr(BaseModel):
    street: str = Field(max_length=3)
    zip: Optional[str] = Field(default=None, max_length=2)


class Person(BaseModel):
    age: int = Field(ge=0, le=9)
    home: Addr
    others: list[Addr] = Field(default=[], max_length=1)
    kind: Literal["a", "b"]


class Node(BaseModel):
    v: bool
    kids: list["Node"] = Field(default=[], max_length=1)


class Cat(BaseModel):
    t: Literal["cat"]
    m: bool


class Dog(BaseModel):
    t: Literal["dog"]
    b: Optional[bool]


class Pet(BaseModel):
    p: Union[Cat, Dog] = Field(discriminator="t")


def generate(engine, grammar, seeds, max_tokens, tools=None):
    prompt = engine.encode_chat([{"role": "user", "content": "go"}], tools=tools)
    for seed in seeds:
        proc = grammar.processor()
        r = engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed),
                            logits_processors=[proc])
        assert proc.error is None
        yield r


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", [Person, Pet])
def test_pydantic_function_tools_compile_and_every_call_loads(model, backend, bpe_engine):
    tool = openai.pydantic_function_tool(model)
    assert "$defs" in tool["function"]["parameters"]  # the nested form, with refs
    tok = bpe_engine.tokenizer
    grammar = G.compile_tools(tok, [tool], tool_choice="required", parallel_tool_calls=False, backend=backend)
    calls = 0
    for r in generate(bpe_engine, grammar, range(4), 80, tools=[tool]):
        parsed = parse_tool_calls(r.output_ids, tok, [tool])
        assert parsed.error is None  # parsed calls were validated against the schema, refs followed
        for call in parsed.calls:
            model.model_validate(call.arguments)
            calls += 1
    assert calls >= 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schema_of", [lambda m: m.model_json_schema(), to_strict_json_schema],
                         ids=["model_json_schema", "strict"])
def test_response_format_schemas_of_nested_models_validate(schema_of, backend, bpe_engine):
    schema = schema_of(Person)
    grammar = G.compile_json(bpe_engine.tokenizer, schema, backend=backend)
    done = 0
    for r in generate(bpe_engine, grammar, range(4), 64):
        text, ended = decode_output(r.output_ids, bpe_engine.tokenizer)
        if ended:
            value = json.loads(text)
            assert validate(value, schema) is None
            Person.model_validate(value)
            done += 1
    assert done >= 1


def test_recursive_models_compile_on_llguidance_and_are_refused_clearly_by_outlines(bpe_engine):
    tool = openai.pydantic_function_tool(Node)
    tok = bpe_engine.tokenizer
    with pytest.raises(G.GrammarError, match="recursive; the outlines backend cannot enforce a recursive schema"):
        G.compile_tools(tok, [tool], tool_choice="required", backend="outlines")
    grammar = G.compile_tools(tok, [tool], tool_choice="required", parallel_tool_calls=False)
    ids = tok.encode('<tool_call>\n{"name": "Node", "arguments": {"v": true, "kids": [{"v": false, "kids": '
                     '[{"v": true, "kids": []}]}]}}\n</tool_call>', add_special_tokens=False)
    assert grammar.processor().accepted(ids + [grammar.eos_ids[0]])
    calls = 0
    for r in generate(bpe_engine, grammar, range(4), 64, tools=[tool]):
        parsed = parse_tool_calls(r.output_ids, tok, [tool])
        assert parsed.error is None
        calls += len(parsed.calls)
        for call in parsed.calls:
            Node.model_validate(call.arguments)
    assert calls >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_strict_nullable_forms_compile(backend, bpe_engine):
    schema = {"type": "object", "additionalProperties": False, "required": ["a", "b"],
              "properties": {"a": {"type": ["string", "null"], "maxLength": 2},
                             "b": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 3}, {"type": "null"}]}}}
    tool = {"type": "function", "function": {"name": "f", "strict": True, "parameters": schema}}
    tok = bpe_engine.tokenizer
    grammar = G.compile_tools(tok, [tool], tool_choice="required", backend=backend)
    for args, ok in (({"a": None, "b": 2}, True), ({"a": "xy", "b": None}, True), ({"a": None}, False),
                     ({"a": 1, "b": None}, False)):
        text = '<tool_call>\n{"name": "f", "arguments": ' + json.dumps(args) + "}\n</tool_call>"
        ids = tok.encode(text, add_special_tokens=False)
        assert grammar.processor().accepted(ids + [grammar.eos_ids[0]]) is ok, args
