"""The grammar and the call parser agree: every call the grammar lets a model write (string arguments holding
`<tool_call>`, `</tool_call>`, quotes, backslashes, newlines, any unicode) parses back to exactly that call,
and a call cut off inside such a string is truncated, never an error."""
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygpt.runtime import grammar as G
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.runtime.tool_formats import hermes

CALL_OPEN, CALL_CLOSE = hermes.OPEN, hermes.CLOSE


def call_text(name: str, arguments: dict) -> str:
    return hermes.FORMAT.render([(name, arguments, None)])


TOOLS = [
    {"type": "function", "function": {"name": "echo", "parameters": {
        "type": "object", "properties": {"s": {"type": "string"}, "t": {"type": "array", "items": {"type": "string"}}},
        "required": ["s"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pwd", "parameters": {"type": "object", "properties": {}}}},
]
PIECES = st.sampled_from(["<tool_call>", "</tool_call>", "\n</tool_call>", '"', "\\", '\\"', "\n", "}", "{", "é",
                          "\u2028", "日本", "<", "/", "\t"])
# NFC: both test tokenizers normalize text to NFC (runtime/vocab.py), so e.g. U+F900 can never be spelled in ids
STRINGS = st.lists(PIECES | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=3), max_size=6).map(
    lambda parts: unicodedata.normalize("NFC", "".join(parts)))
# (other control characters need \\u escapes, which the grammar never writes)
CALLS = st.one_of(
    st.tuples(st.just("echo"), st.fixed_dictionaries({"s": STRINGS}, optional={"t": st.lists(STRINGS, max_size=2)})
              .map(lambda d: {k: d[k] for k in ("s", "t") if k in d})),  # schema order, as the grammar writes
    st.tuples(st.just("pwd"), st.just({})))


def test_a_string_argument_holding_the_close_marker_parses_to_that_call():
    text = call_text("echo", {"s": 'a</tool_call>b\n</tool_call>"'}) + "\n" + call_text("pwd", {})
    out = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="stop")
    assert out.error is None and not out.truncated
    assert [(c.name, c.arguments) for c in out.calls] == [("echo", {"s": 'a</tool_call>b\n</tool_call>"'}),
                                                          ("pwd", {})]


def test_a_call_cut_inside_a_string_holding_the_marker_is_truncated_not_an_error():
    text = call_text("echo", {"s": "x</tool_call>y, and more"})[:-20]
    assert CALL_CLOSE in text
    out = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="length")
    assert out.truncated and out.error is None and out.calls == []
    stopped = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="stop")
    assert not stopped.truncated and stopped.calls == [] and stopped.error.startswith("tool call is not valid JSON")


def test_markers_inside_strings_and_escaped_quotes_do_not_end_a_call():
    text = '<tool_call>\n{"name": "echo", "arguments": {"s": "\\"</tool_call>\\\\"}}\n</tool_call>'
    out = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="stop")
    assert out.error is None and [c.arguments for c in out.calls] == [{"s": '"</tool_call>\\'}]
    cut = parse_tool_calls('<tool_call>\n{"name": "echo", "arguments": {"s": "</tool_call>', None, TOOLS,
                           tool_format="hermes", finish_reason="length")
    assert cut.truncated and cut.calls == [] and cut.error is None


def test_a_malformed_call_that_stopped_still_ends_at_the_first_marker_and_the_next_call_is_kept():
    text = '<tool_call>\n{"name": "echo", "arguments": {"s": "x}\n</tool_call>\n' + call_text("pwd", {})
    out = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="stop")
    assert [c.name for c in out.calls] == ["pwd"] and out.error.startswith("tool call is not valid JSON")


def test_a_deeply_nested_call_body_is_a_model_fault_not_a_crash():
    text = '<tool_call>\n{"name": "echo", "arguments": {"s": "a", "t": ' + "[" * 100_000 + "]" * 100_000 + "}}\n</tool_call>"
    out = parse_tool_calls(text, None, TOOLS, tool_format="hermes", finish_reason="stop")
    assert out.calls == [] and out.error.startswith("tool call is nested too deeply")


@pytest.fixture(scope="module")
def grammars(bpe_engine, texttag_engine):
    """(tokenizer, required+parallel grammar) for the special-token and the text-marker tokenizers."""
    return [(e.tokenizer, G.compile_tools(e.tokenizer, TOOLS, tool_choice="auto")) for e in (bpe_engine, texttag_engine)]


def spelled(tok, content, calls):
    """Ids as a model writes them: the markers as their tokens where the vocabulary has them, and marker text
    inside arguments spelled with ordinary tokens (the grammar never lets a marker token into a string)."""
    hf = G.hf_tokenizer(tok)
    ids = hf.encode(content + "\n", add_special_tokens=False) if content else []
    for i, (name, args) in enumerate(calls):
        body = call_text(name, args)[len(CALL_OPEN):-len(CALL_CLOSE)]
        ids += hf.encode(("\n" if i else "") + CALL_OPEN, add_special_tokens=False)
        for piece in re.split("(</?tool_call>)", body):  # "<" alone never starts a marker token
            ids += [i for part in ([piece[:1], piece[1:]] if piece.endswith("tool_call>") else [piece])
                    for i in hf.encode(part, add_special_tokens=False)]
        ids += hf.encode(CALL_CLOSE, add_special_tokens=False)
    return ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(CALLS, min_size=1, max_size=3), content=st.sampled_from(["", "Sure.", "a <b> c"]))
def test_every_call_the_grammar_accepts_parses_back_to_itself(calls, content, grammars):
    text = (content + "\n" if content else "") + "\n".join(call_text(n, a) for n, a in calls)
    for tok, grammar in grammars:
        ids = spelled(tok, content, calls)
        assert tok.decode(ids, skip_special_tokens=False) == text
        assert grammar.processor().accepted(ids + [grammar.eos_ids[0]])  # the grammar can emit this text
        out = parse_tool_calls(ids + [grammar.eos_ids[0]], tok, TOOLS)
        assert out.error is None and not out.truncated and out.content == content
        assert [(c.name, c.arguments) for c in out.calls] == calls


def test_an_over_long_integer_argument_is_a_model_fault_not_a_crash():
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}}]
    text = '<tool_call>\n{"name": "f", "arguments": {"n": ' + "1" * 5000 + "}}\n</tool_call>"
    out = parse_tool_calls(text, None, tools, tool_format="hermes", finish_reason="stop")
    assert out.calls == [] and out.error.startswith("tool call is not valid JSON (Exceeds the limit")
    big = '<tool_call>\n{"name": "f", "arguments": {"n": 1' + "0" * 400 + "}}\n</tool_call>"
    # exact multipleOf on integers past the float range
    out = parse_tool_calls(big, None, tools, tool_format="hermes", finish_reason="stop")
    assert out.calls == [] and out.error.startswith("arguments of f do not match its schema: $.n: 1000")
    assert out.error.endswith("is not a multiple of 3")
