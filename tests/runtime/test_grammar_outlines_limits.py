"""The outlines backend refuses, before it builds anything, a schema whose length/count bounds or pattern
quantifiers it would spell out into an automaton too large to compile in about a second (it used to hang on
maxLength 1e9, growing memory); llguidance compiles the same schemas. The refusal names the limit for the
vocabulary and suggests llguidance."""
import pytest

from tinygpt.runtime import grammar as G
from tinygpt.runtime import grammar_outlines as O

BIG = 10**9


def obj(a):
    return {"type": "object", "properties": {"a": a}, "required": ["a"]}


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if outlines-core is asked to build a regex or an index."""
    def built(*args, **kwargs):
        raise AssertionError("outlines-core was asked to build a grammar that should be refused first")
    monkeypatch.setattr(O, "build_regex_from_schema", built)
    monkeypatch.setattr(O, "Index", built)


def limit(tokenizer):
    return O.MAX_WORK // len(G.hf_tokenizer(tokenizer))


CASES = {  # name: (schema, what the refusal names)
    "maxLength": (obj({"type": "string", "maxLength": BIG}), f"schema.a: maxLength {BIG} would make"),
    "minLength": (obj({"type": "string", "minLength": BIG}), f"schema.a: minLength {BIG} would make"),
    "maxItems": (obj({"type": "array", "items": {"type": "integer"}, "maxItems": BIG}), f"schema.a: maxItems {BIG}"),
    "minItems": (obj({"type": "array", "minItems": BIG}), f"schema.a: minItems {BIG}"),
    "nested bounds multiply": (obj({"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 100}),
                               "schema.a: maxItems 100 would make the outlines backend spell out about 10000"),
    "pattern quantifier": (obj({"type": "string", "pattern": "^a{0,1000000000}$"}),
                           "schema.a: pattern '^a{0,1000000000}$' would make"),
    "nested pattern quantifiers": (obj({"type": "string", "pattern": "^(?:ab{10}){0,1000}$"}),
                                   "schema.a: pattern '^(?:ab{10}){0,1000}$' would make the outlines backend spell "
                                   "out about 10000"),
    "siblings add up": ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 500}
                                                          for i in range(10)}}, "schema: its parts together"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outlines_refuses_big_bounds_before_building_anything(case, bpe_engine, nothing_built):
    schema, names = CASES[case]
    with pytest.raises(G.GrammarError) as err:
        G.compile_json(bpe_engine.tokenizer, schema, backend="outlines")
    message = str(err.value)
    assert message.startswith(names) and len(message.splitlines()) == 1
    assert f"past its limit of {limit(bpe_engine.tokenizer)} for a 690-token vocabulary" in message
    assert message.endswith("use backend='llguidance' (the default), which has no such limit")


def test_tool_parameters_share_one_budget(bpe_engine, monkeypatch):
    monkeypatch.setattr(O, "Index", None)  # refused before the index is built (the first tool's regex may be)
    half = limit(bpe_engine.tokenizer) // 2 + 1
    tools = [{"name": n, "parameters": obj({"type": "string", "maxLength": half})} for n in ("f", "g")]
    G.compile_tools(bpe_engine.tokenizer, tools[:1], backend="llguidance")
    with pytest.raises(G.GrammarError, match=f"schema.a: maxLength {half} would make the outlines backend"):
        G.compile_tools(bpe_engine.tokenizer, tools, backend="outlines")


def test_a_bound_at_the_limit_compiles_and_one_past_it_is_refused(bpe_engine):
    n = limit(bpe_engine.tokenizer)
    assert 1000 < n < 2000  # ~0.3 s to compile here; a 151,669-token vocabulary gets 7
    grammar = G.compile_json(bpe_engine.tokenizer, obj({"type": "string", "maxLength": n}), backend="outlines")
    assert grammar.compile_s < 5
    with pytest.raises(G.GrammarError, match=f"maxLength {n + 1} would make"):
        G.compile_json(bpe_engine.tokenizer, obj({"type": "string", "maxLength": n + 1}), backend="outlines")


@pytest.mark.parametrize("case", ["maxLength", "maxItems", "nested bounds multiply", "siblings add up"])
def test_llguidance_compiles_the_same_bounds(case, bpe_engine):
    grammar = G.compile_json(bpe_engine.tokenizer, CASES[case][0], backend="llguidance")
    assert grammar.compile_s < 5
