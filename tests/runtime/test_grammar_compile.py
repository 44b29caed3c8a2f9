"""Compiling grammars: which texts each mode accepts (both backends, both trigger spellings), errors, the
compile cache, and the logits mask (vocabulary padding, EOS)."""
import re

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_outlines import no_substring
from tinygpt.runtime.tool_formats import hermes


def call_text(name: str, arguments: dict) -> str:
    """One call as the Hermes format (tinygpt's own chat template) writes it."""
    return hermes.FORMAT.render([(name, arguments, None)])


TOOLS = [
    {"type": "function", "function": {"name": "cp", "parameters": {
        "type": "object", "properties": {"source": {"type": "string", "maxLength": 8},
                                         "destination": {"type": "string", "maxLength": 8}},
        "required": ["source", "destination"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ls", "parameters": {
        "type": "object", "properties": {"a": {"type": "boolean"}}}}},
]
CP = call_text("cp", {"source": "a", "destination": "b"})
LS = call_text("ls", {"a": True})
CASES = {  # text -> which grammars accept it (complete, then EOS)
    "": {"none", "auto", "auto1"},
    "hello <tool": {"none", "auto", "auto1"},
    "hi <tool_call> x": set(),
    CP: {"auto", "auto1", "required", "required1"},
    "Sure.\n" + CP: {"auto", "auto1"},
    "Sure." + CP: set(),  # the template puts "\n" between content and a call
    "\n" + CP: set(),  # ... and no "\n" before a call when there is no content
    "\n\n" + CP: {"auto", "auto1"},  # content "\n"
    CP + "\n" + LS: {"auto", "required"},
    call_text("ls", {}): {"auto", "auto1", "required", "required1", "named"},
    LS: {"auto", "auto1", "required", "required1", "named"},
    LS.replace('": true', '":true'): set(),  # compact separator
    LS.replace("{", "{ ", 1): set(),  # free whitespace
    CP + "\nmore": set(),
    CP.replace('"a"', '"\\u0061"'): set(),  # only json.dumps' short escapes
    call_text("cp", {"source": "a\nb", "destination": "é"}): {"auto", "auto1", "required", "required1"},
}
GRAMMARS = {"none": ("none", True), "auto": ("auto", True), "auto1": ("auto", False),
            "required": ("required", True), "required1": ("required", False),
            "named": ({"type": "function", "function": {"name": "ls"}}, True)}


def accepts(grammar, tokenizer, text):
    """Feed the text's ids (special-token text becomes its id) to a fresh processor, then EOS."""
    ids = list(tokenizer.encode(text, add_special_tokens=False)) if text else []
    proc = grammar.processor()
    return proc.accepted(ids + [grammar.eos_ids[0]])


@pytest.mark.parametrize("backend", ["llguidance", "outlines"])
@pytest.mark.parametrize("engine_name", ["bpe_engine", "texttag_engine"])
def test_each_mode_accepts_exactly_its_outputs(backend, engine_name, request):
    tok = request.getfixturevalue(engine_name).tokenizer
    grammars = {k: G.compile_tools(tok, TOOLS, tool_choice=c, parallel_tool_calls=p, backend=backend)
                for k, (c, p) in GRAMMARS.items()}
    got = {text: {k for k, g in grammars.items() if accepts(g, tok, text)} for text in CASES}
    assert got == CASES


@pytest.mark.parametrize("backend", ["llguidance", "outlines"])
def test_json_grammar_takes_one_value_in_dumps_layout(backend, bpe_engine):
    tok = bpe_engine.tokenizer
    if backend == "llguidance":  # outlines unrolls a free-form object into a huge regex: seconds to compile
        free = G.compile_json(tok, None, backend=backend)
        assert [accepts(free, tok, t) for t in ('{"a": 1, "b": [true, null]}', '{"a":1}', "[1]", "{} ")] == \
            [True, False, False, False]
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}},
              "required": ["n"]}
    g = G.compile_json(tok, schema, backend=backend)
    assert [accepts(g, tok, '{"n": %d}' % n) for n in (0, 1, 3, 4)] == [False, True, True, False]
    assert not accepts(g, tok, '{"n": 1, "m": 2}')  # strict: no keys beyond the listed properties


def test_named_tool_choice_is_one_call_even_when_parallel(bpe_engine):
    g = G.compile_tools(bpe_engine.tokenizer, TOOLS, tool_choice={"type": "function", "function": {"name": "ls"}})
    assert g.choice == "named:ls" and g.spec.parallel is False and [t.name for t in g.spec.tools] == ["ls"]
    assert not accepts(g, bpe_engine.tokenizer, LS + "\n" + LS)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tool_choice="any"), "tool_choice 'any' is not one of none, auto, required"),
    (dict(tool_choice={"type": "function", "function": {"name": "rm"}}), "tool_choice names 'rm', which is not"),
    (dict(tool_choice={"function": "ls"}), "a named tool_choice must be"),
    (dict(backend="xgrammar"), "unknown grammar backend 'xgrammar'; choose one of llguidance, outlines"),
])
def test_bad_arguments_raise_grammar_error(kwargs, message, bpe_engine):
    with pytest.raises(G.GrammarError) as err:
        G.compile_tools(bpe_engine.tokenizer, TOOLS, **kwargs)
    assert str(err.value).startswith(message)


def test_required_without_tools_and_bad_schemas_raise(bpe_engine):
    tok = bpe_engine.tokenizer
    with pytest.raises(G.GrammarError, match="'required' needs at least one tool"):
        G.compile_tools(tok, [], tool_choice="required")
    with pytest.raises(G.GrammarError, match=r"tools\[0\] \(f\) parameters.properties.x: unknown type 'dict'"):
        G.compile_tools(tok, [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "dict"}}}}])
    with pytest.raises(G.GrammarError, match="response_format schema uses unsupported keyword"):
        G.compile_json(tok, {"not": {}})
    with pytest.raises(G.GrammarError, match="llguidance rejected the grammar"):
        G.compile_json(tok, {"type": "string", "format": "no-such-format"})
    with pytest.raises(G.GrammarError, match="outlines backend cannot enforce minimum/maximum on non-integers"):
        G.compile_json(tok, {"type": "number", "maximum": 2}, backend="outlines")


def test_auto_without_tools_is_none(bpe_engine):
    g = G.compile_tools(bpe_engine.tokenizer, [], tool_choice="auto")
    assert g.spec.mode == "none" and not accepts(g, bpe_engine.tokenizer, CP)


def test_compiles_are_cached_per_tokenizer_tools_and_mode(bpe_engine, texttag_engine):
    tok = bpe_engine.tokenizer
    a = G.compile_tools(tok, TOOLS, tool_choice="required")
    assert G.compile_tools(tok, TOOLS, tool_choice="required").compiled is a.compiled
    assert G.compile_tools(tok, TOOLS, tool_choice="required", parallel_tool_calls=False).compiled is not a.compiled
    assert G.compile_tools(tok, TOOLS[:1], tool_choice="required").compiled is not a.compiled
    assert G.compile_tools(texttag_engine.tokenizer, TOOLS, tool_choice="required").compiled is not a.compiled


def test_mask_disallows_padding_ids_and_allows_eos_only_where_complete(qwen_engine):
    tok = qwen_engine.tokenizer
    g = G.compile_tools(tok, TOOLS, tool_choice="required")
    assert g.n_tokens == 151669 and g.eos_ids == (151645,) and g.other_eos_ids == (151643,)  # <|im_end|> ends
    proc = g.processor()
    logits = mx.zeros((1, 151936))
    first = np.array(proc(mx.array([1]), logits))[0]
    assert np.isfinite(first).nonzero()[0].tolist() == [151657]  # only <tool_call>
    ids = tok.encode(call_text("ls", {}), add_special_tokens=False)
    for prev in ids:
        out = np.array(proc(mx.array([prev]), logits))[0]
    allowed = np.isfinite(out).nonzero()[0].tolist()
    assert allowed == [198, 151645]  # "\n" (another call) or <|im_end|>; never <|endoftext|> or an id >= 151669
    auto = G.compile_tools(tok, TOOLS, tool_choice="auto").processor()
    free = np.isfinite(np.array(auto(mx.array([1]), logits))[0])
    assert free[:151643].sum() > 150_000 and not free[151669:].any() and free[151657]


def test_processor_reports_truncation_and_refuses_foreign_ids(bpe_engine):
    tok = bpe_engine.tokenizer
    g = G.compile_tools(tok, TOOLS, tool_choice="required")
    ids = tok.encode(CP, add_special_tokens=False)
    assert g.processor().accepted(ids[:-3]) is False
    proc = g.processor()
    proc(mx.array([1]), mx.zeros((1, 690)))
    proc(mx.array([ids[0]]), mx.zeros((1, 690)))
    with pytest.raises(ValueError, match="output_ids differ"):
        proc.accepted([ids[1]])
    bad = g.processor()
    assert bad.accepted([5]) is False and "not allowed" in bad.error or "doesn't satisfy" in bad.error


def py_regex(rust: str) -> str:
    return re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: re.escape(chr(int(m.group(1), 16))), rust)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<tol_ca>x\n#", max_size=30))
def test_no_substring_regex_is_exactly_strings_without_the_word(text):
    free = "<tool_call>" not in text
    assert bool(re.fullmatch(py_regex(no_substring("<tool_call>")), text)) == free
    nonempty = py_regex(no_substring("<tool_call>", nonempty=True, banned="#"))
    assert bool(re.fullmatch(nonempty, text)) == (free and text != "" and "#" not in text)
