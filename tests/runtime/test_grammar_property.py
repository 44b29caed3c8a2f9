"""Property tests over random schemas (half of them with every property behind a local $ref, some with a
pattern): what a grammar lets a random model write always validates (soundness), and every valid value in
json.dumps layout is accepted by both backends (the grammar is not too strict)."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output, parse_tool_calls
from tinygpt.runtime.tool_formats import hermes


def call_text(name: str, arguments: dict) -> str:
    """One call as the Hermes format (tinygpt's own chat template) writes it."""
    return hermes.FORMAT.render([(name, arguments, None)])


pytestmark = pytest.mark.usefixtures("one_blas_thread")
CHARS = st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t\"\\")
NAMES = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)


def leaf_schemas():
    return st.one_of(
        st.integers(1, 6).map(lambda n: {"type": "string", "maxLength": n}),
        st.lists(st.text(CHARS, max_size=4), min_size=1, max_size=3, unique=True).map(lambda e: {"enum": e}),
        st.tuples(st.integers(-20, 20), st.integers(0, 30)).map(
            lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}),
        st.just({"type": "boolean"}),
        st.just({"type": "string", "pattern": "^[a-c]{1,2}\\d?$"}),
        st.just({"type": "null"}),
        st.integers(1, 3).map(lambda n: {"type": "array", "items": {"type": "string", "maxLength": 3},
                                         "maxItems": n}),
    )


@st.composite
def object_schemas(draw, depth=1):
    child = leaf_schemas() if depth == 0 else st.one_of(leaf_schemas(), object_schemas(depth=0))
    props = draw(st.dictionaries(NAMES, child, min_size=0, max_size=3))
    required = [k for k in props if draw(st.booleans())]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def values(schema):
    """A strategy for values that conform to `schema` (of the shapes drawn above)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "string" and "pattern" in schema:
        return st.from_regex("[a-c]{1,2}[0-9]?", fullmatch=True)
    if kind == "string":
        return st.text(CHARS, max_size=schema["maxLength"])
    if kind == "integer":
        return st.integers(schema["minimum"], schema["maximum"])
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=schema["maxItems"])
    return st.fixed_dictionaries({k: values(s) for k, s in schema["properties"].items() if k in schema["required"]},
                                 optional={k: values(s) for k, s in schema["properties"].items()
                                           if k not in schema["required"]}).map(
        lambda d: {k: d[k] for k in schema["properties"] if k in d})  # schema order, as the grammar writes


def with_refs(schema):
    """The same schema with each property's subschema moved under $defs and named by a local $ref."""
    defs = {f"P{i}": s for i, s in enumerate(schema["properties"].values())}
    props = {k: {"$ref": f"#/$defs/P{i}"} for i, k in enumerate(schema["properties"])}
    return {**schema, "properties": props, "$defs": defs}


@st.composite
def schema_and_value(draw):
    schema = draw(object_schemas())
    value = draw(values(schema))
    return (with_refs(schema) if draw(st.booleans()) else schema), value


def accepts(grammar, tokenizer, text):
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return grammar.processor().accepted(ids + [grammar.eos_ids[0]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sv=schema_and_value(), backend=st.sampled_from(["llguidance", "outlines"]))
def test_every_valid_value_is_accepted_as_json_and_as_a_call(sv, backend, bpe_engine):
    schema, value = sv
    assert validate(value, schema) is None  # the strategy itself is right
    tok = bpe_engine.tokenizer
    assert accepts(G.compile_json(tok, schema, backend=backend), tok, json.dumps(value, ensure_ascii=False))
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    assert accepts(G.compile_tools(tok, tools, tool_choice="required", backend=backend), tok, call_text("f", value))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=object_schemas().flatmap(lambda s: st.sampled_from([s, with_refs(s)])),
       seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(["llguidance", "outlines"]))
def test_what_the_grammar_lets_a_random_model_write_always_validates(schema, seed, backend, bpe_engine):
    tok = bpe_engine.tokenizer
    prompt = bpe_engine.encode_chat([{"role": "user", "content": "go"}])
    grammar = G.compile_json(tok, schema, backend=backend)
    proc = grammar.processor()
    r = bpe_engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=48, seed=seed),
                            logits_processors=[proc])
    assert proc.error is None
    text, ended = decode_output(r.output_ids, tok)
    if ended:
        value = json.loads(text)
        assert validate(value, schema) is None and json.dumps(value, ensure_ascii=False) == text
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    proc = G.compile_tools(tok, tools, tool_choice="required", backend=backend).processor()
    r = bpe_engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=64, seed=seed),
                            logits_processors=[proc])
    parsed = parse_tool_calls(r.output_ids, tok, tools)
    assert proc.error is None and parsed.error is None
    assert all(validate(c.arguments, schema) is None for c in parsed.calls)
    assert parsed.calls or parsed.truncated or r.finish_reason == "length"
