"""Each backend either refuses a schema at compile time with a clear GrammarError, or every output it lets a
random model finish validates against the schema. One case per way outlines-core used to compile a schema
and then break it (and the same case on llguidance)."""
import json

import pytest

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def obj(a):
    return {"type": "object", "properties": {"a": a}, "required": ["a"]}


REFUSED_LLG = "llguidance rejected the grammar"
CASES = {  # name: (schema, {backend: None (compiles, outputs validate) or the start of the refusal}, bad texts)
    "pattern+maxLength": (obj({"type": "string", "pattern": "^a+$", "maxLength": 2}),
                          {"llguidance": None, "outlines": "schema.a: the outlines backend cannot enforce pattern "
                                                           "together with minLength/maxLength"}, ['{"a": "aaa"}']),
    "integer minimum > maximum": (obj({"type": "integer", "minimum": 5, "maximum": 3}),
                                  {"llguidance": REFUSED_LLG, "outlines": "schema.a: no integer lies between"}, []),
    "number minimum > maximum": (obj({"type": "number", "minimum": 5, "maximum": 3}),
                                 {"llguidance": REFUSED_LLG, "outlines": "schema.a: the outlines backend cannot "
                                                                         "enforce minimum/maximum on non-integers"}, []),
    "fractional integer bounds": (obj({"type": "integer", "minimum": 1.5, "maximum": 3.5}),
                                  {"llguidance": None, "outlines": None}, ['{"a": 1}', '{"a": 4}']),
    "required not in properties": ({**obj({"type": "integer"}), "required": ["a", "b"]},
                                   {"llguidance": REFUSED_LLG, "outlines": "schema: the outlines backend cannot "
                                    "enforce required names 'b', which 'properties' lacks"}, ['{"a": 1}']),
    "overlapping oneOf": (obj({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
                          {b: "response_format schema.properties.a: oneOf branches that may overlap cannot be "
                              "enforced" for b in ("llguidance", "outlines")}, ['{"a": 1}']),
    "\\d is ASCII": (obj({"type": "string", "pattern": "^\\d{1,3}$"}), {"llguidance": None, "outlines": None},
                     ['{"a": "١"}', '{"a": "x"}']),
    ". never breaks the JSON string": (obj({"type": "string", "pattern": "^.{2}$"}),
                                       {"llguidance": None, "outlines": None}, ['{"a": "\\""}', '{"a": "a"}']),
    "minLength > maxLength": (obj({"type": "string", "minLength": 3, "maxLength": 2}),
                              {"llguidance": REFUSED_LLG, "outlines": "outlines-core cannot turn this schema into a regex: "
                                                                          "maxLength must be"}, []),
    "allOf of two": (obj({"allOf": [{"type": "string", "maxLength": 2}, {"type": "string", "minLength": 2}]}),
                     {"llguidance": None, "outlines": "schema.a: the outlines backend cannot enforce allOf of more"},
                     ['{"a": "a"}', '{"a": "abc"}']),
    "anchors inside a pattern": (obj({"type": "string", "pattern": "a|^b"}),
                                 {"llguidance": None, "outlines": "schema.a: the outlines backend cannot enforce "
                                                                  "pattern 'a|^b' exactly"}, ['{"a": "c"}']),
    "integers past 64 bits": (obj({"type": "integer", "minimum": 10**30, "maximum": 10**30 + 2}),
                              {"llguidance": "llguidance rejected the grammar: Value is not JSON serializable",
                               "outlines": "schema.a: the outlines backend cannot enforce integers beyond"}, []),
    "regex only Python reads": (obj({"type": "string", "pattern": "a{"}),
                                {"llguidance": "llguidance rejected the grammar: regex parse error: a{ ^ error",
                                 "outlines": "outlines-core could not build an index"}, []),
    "minItems > maxItems": (obj({"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 2}),
                            {"llguidance": REFUSED_LLG, "outlines": "outlines-core could not build an index"}, []),
    "const of another type": (obj({"type": "integer", "const": "x"}),
                              {b: "response_format schema.properties.a: const 'x' fails the rest of its schema "
                                  "(value: expected integer" for b in ("llguidance", "outlines")}, ['{"a": "x"}']),
    "enum of another type": (obj({"type": "integer", "enum": ["x", "y"]}),
                             {b: "response_format schema.properties.a: every enum member (['x', 'y']) fails the "
                                 "rest of its schema" for b in ("llguidance", "outlines")}, ['{"a": "x"}']),
    "enum partly of another type": (obj({"type": "integer", "enum": [1, "x"]}),
                                    {"llguidance": None, "outlines": None}, ['{"a": "x"}', '{"a": 2}']),
    "const past maxLength": (obj({"type": "string", "const": "abcdef", "maxLength": 2}),
                             {b: "response_format schema.properties.a: const 'abcdef' fails the rest of its schema "
                                 "(value: longer than maxLength 2)" for b in ("llguidance", "outlines")},
                             ['{"a": "abcdef"}']),
    "format date + maxLength": (obj({"type": "string", "format": "date", "maxLength": 3}),
                                {"llguidance": REFUSED_LLG, "outlines": "schema.a: the outlines backend cannot "
                                 "enforce format together with minLength/maxLength"}, ['{"a": "abc"}']),
    "format email + maxLength": (obj({"type": "string", "format": "email", "maxLength": 5}),
                                 {"llguidance": None, "outlines": "schema.a: the outlines backend cannot enforce "
                                  "format together with minLength/maxLength"}, ['{"a": "abcde"}', '{"a": "a@bc.de"}']),
    "format uri spells quotes": (obj({"type": "string", "format": "uri"}),
                                 {"llguidance": None, "outlines": "schema.a: the outlines backend cannot enforce "
                                  "format 'uri' (only date, date-time, time, uuid are exact"},
                                 ['{"a": "http://ab.com#"x"}', '{"a": "x"}']),
    "format date": (obj({"type": "string", "format": "date"}), {"llguidance": None, "outlines": None},
                    ['{"a": "2020-13-01"}', '{"a": "x"}']),
}


def accepts(grammar, tokenizer, text):
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return grammar.processor().accepted(ids + [grammar.eos_ids[0]])


def finished_outputs(engine, grammar, n, max_tokens=24):
    """The texts of those of n sampled generations that ended on EOS; every one must satisfy the grammar."""
    prompt = engine.encode_chat([{"role": "user", "content": "go"}])
    texts = []
    for seed in range(n):
        proc = grammar.processor()
        r = engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed),
                            logits_processors=[proc])
        assert proc.error is None
        text, ended = decode_output(r.output_ids, engine.tokenizer)
        if ended:
            texts.append(text)
    return texts


@pytest.mark.parametrize("backend", ["llguidance", "outlines"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_schema_is_refused_clearly_or_every_output_validates(case, backend, bpe_engine):
    schema, expected, bad = CASES[case]
    tok = bpe_engine.tokenizer
    refusal = expected[backend]
    if refusal is not None:
        with pytest.raises(G.GrammarError) as err:
            G.compile_json(tok, schema, backend=backend)
        assert str(err.value).startswith(refusal) and len(str(err.value).splitlines()) == 1
        return
    grammar = G.compile_json(tok, schema, backend=backend)
    assert [accepts(grammar, tok, t) for t in bad] == [False] * len(bad)  # values that fail the schema
    for text in finished_outputs(bpe_engine, grammar, 6):
        assert validate(json.loads(text), schema) is None, text


def test_draft4_boolean_exclusive_minimum_is_refused_before_any_backend(bpe_engine):
    with pytest.raises(G.GrammarError, match="'exclusiveMinimum' must be a finite number"):
        G.compile_json(bpe_engine.tokenizer, obj({"type": "number", "minimum": 0, "exclusiveMinimum": True}))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, float("-inf")]])
def test_non_json_numbers_in_enum_or_const_are_refused(value, bpe_engine):
    with pytest.raises(G.GrammarError, match="'const' must be JSON values"):
        G.compile_json(bpe_engine.tokenizer, obj({"const": value}))


def test_refs_that_multiply_are_refused_by_outlines_and_compiled_by_llguidance(bpe_engine):
    defs = {f"D{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"},
                                                        "b": {"$ref": f"#/$defs/D{i + 1}"}}} for i in range(40)}
    schema = {"$defs": {**defs, "D40": {"type": "integer"}}, "type": "object",
              "properties": {"x": {"$ref": "#/$defs/D0"}}}  # 2**40 subschemas once inlined
    with pytest.raises(G.GrammarError, match="grows past 2000 subschemas once its \\$refs are inlined"):
        G.compile_json(bpe_engine.tokenizer, schema, backend="outlines")
    grammar = G.compile_json(bpe_engine.tokenizer, schema)
    assert accepts(grammar, bpe_engine.tokenizer, '{"x": {"a": {"b": {}}}}')
    assert not accepts(grammar, bpe_engine.tokenizer, '{"x": {"a": 1}}')


def test_a_const_that_spells_the_pattern_placeholder_stays_a_literal(bpe_engine):
    schema = obj({"anyOf": [{"const": "tinygptpattern0"}, {"type": "string", "pattern": "^b$"}]})
    with pytest.raises(G.GrammarError, match="reserved text"):
        G.compile_json(bpe_engine.tokenizer, schema, backend="outlines")
