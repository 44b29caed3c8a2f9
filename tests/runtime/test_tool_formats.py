"""Tool-call formats as plugins (runtime/tool_formats/): each format's own text round-trips through the parser and
the stream splitter (string arguments holding every format's markers and closers included), however the text is
cut into stream pieces; faults and cut-offs are reported, never returned as calls; names resolve or fail with
the known names listed. Detection on the real chat templates is in test_tool_format_templates.py."""
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.runtime import tool_formats
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.runtime.tool_formats.split import CallArgs, CallStart, CallStream, Content

FORMATS = list(tool_formats.FORMATS)
JSON_FORMATS = [n for n in FORMATS if tool_formats.own_syntax(tool_formats.get(n)) is None]  # pythonic: its own file
TOOLS = [
    {"type": "function", "function": {"name": "echo", "parameters": {
        "type": "object", "properties": {"s": {"type": "string"}, "t": {"type": "array", "items": {"type": "string"}}},
        "required": ["s"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pwd", "parameters": {"type": "object", "properties": {}}}},
]
# every format's markers and closers, JSON's own delimiters, and what a lenient reader might trip on
MARKERS = sorted({m for f in tool_formats.all_formats() for m in (f.trigger, *f.markers, f.call[1], f.section[1],
                                                                 *f.prefixes) if m})
PIECES = st.sampled_from(MARKERS + ['"', "\\", '\\"', "\n", "}", "]", "{", "[", ", ", "é", "\u2028", "日本"])
STRINGS = st.lists(PIECES | st.text(st.characters(blacklist_categories=("Cs",)), max_size=3), max_size=6).map(
    lambda parts: unicodedata.normalize("NFC", "".join(parts)))
CALLS = st.one_of(
    st.tuples(st.just("echo"), st.fixed_dictionaries({"s": STRINGS}, optional={"t": st.lists(STRINGS, max_size=2)})
              .map(lambda d: {k: d[k] for k in ("s", "t") if k in d})),
    st.tuples(st.just("pwd"), st.just({})))
IDS = st.text("abcXYZ019", min_size=9, max_size=9)


def cuts(text: str, points: list[int]) -> list[str]:
    idx = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in zip(idx, idx[1:])]


def answer(fmt, calls, ids, content):
    if not fmt.parallel:
        calls = calls[:1]
    triples = [(n, a, i) for (n, a), i in zip(calls, ids)]
    return fmt.render(triples, content if fmt.lead is not None else ""), triples


def streamed(fmt, text, points, stopped=True):
    cs = CallStream(fmt)
    pieces = [p for part in cuts(text, points) for p in cs.feed(part)] + cs.finish(stopped)
    content = "".join(p.text for p in pieces if isinstance(p, Content))
    starts = [p for p in pieces if isinstance(p, CallStart)]
    args: dict[int, str] = {}
    for p in pieces:
        if isinstance(p, CallArgs):
            assert any(s.index == p.index for s in starts[: [*pieces].index(p) + 1]), "arguments before their start"
            args[p.index] = args.get(p.index, "") + p.text
    return content, starts, args


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=60, deadline=None)
@given(calls=st.lists(CALLS, min_size=1, max_size=3), ids=st.lists(IDS, min_size=3, max_size=3, unique=True),
       content=st.sampled_from(["", "Sure.", "a <b> [c] {d}"]), points=st.lists(st.integers(0, 400), max_size=12))
def test_every_answer_a_format_writes_parses_and_streams_back_to_itself(name, calls, ids, content, points):
    fmt = tool_formats.get(name)
    text, triples = answer(fmt, calls, ids, content)
    out = parse_tool_calls(text, None, TOOLS, tool_format=name, finish_reason="stop")
    assert out.error is None and not out.truncated
    assert out.content == (content if fmt.lead is not None else "")
    assert [(c.name, c.arguments) for c in out.calls] == [(n, a) for n, a, _ in triples]
    if fmt.id_key:  # the model's own ids are the calls' ids
        assert [c.id for c in out.calls] == [i for _, _, i in triples]
    got_content, starts, args = streamed(fmt, text, points)
    assert got_content == out.content
    assert [(s.index, s.name) for s in starts] == [(i, c.name) for i, c in enumerate(out.calls)]
    assert [json.loads(args[i]) for i in range(len(starts))] == [c.arguments for c in out.calls]
    assert [args[i] for i in range(len(starts))] == [json.dumps(a, ensure_ascii=False) for _, a, _ in triples]


@pytest.mark.parametrize("name", FORMATS)
def test_a_string_argument_holding_the_closing_marker_round_trips(name):
    fmt = tool_formats.get(name)
    tricky = "".join(MARKERS) + fmt.tail("abcdefghi") + fmt.call[1] + fmt.sep + fmt.section[1] + '"}'
    text, triples = answer(fmt, [("echo", {"s": tricky}), ("pwd", {})], ["abcdefghi", "ABCDEFGHI"], "")
    out = parse_tool_calls(text, None, TOOLS, tool_format=name, finish_reason="stop")
    assert out.error is None and [(c.name, c.arguments) for c in out.calls] == [(n, a) for n, a, _ in triples]
    written = json.dumps(tricky, ensure_ascii=False)
    cut = parse_tool_calls(text[: text.index(written) + len(written) // 2], None, TOOLS, tool_format=name,
                           finish_reason="length")
    assert cut.truncated and cut.calls == [] and cut.error is None


@pytest.mark.parametrize("name", FORMATS)
def test_text_that_is_not_a_call_is_content_and_a_partial_trigger_is_held_then_released(name):
    fmt = tool_formats.get(name)
    for text in ["hello", "x " + fmt.trigger[:-1], fmt.trigger[:-1], "{}"]:
        out = parse_tool_calls(text, None, TOOLS, tool_format=name, finish_reason="stop")
        assert out == type(out)(content=text, calls=[], truncated=False, error=None)
        cs = CallStream(fmt)
        assert "".join(p.text for p in cs.feed(text) + cs.finish()) == text


@pytest.mark.parametrize("name", JSON_FORMATS)
def test_faults_are_errors_and_never_calls(name):
    fmt = tool_formats.get(name)
    good, _ = answer(fmt, [("pwd", {})], ["abcdefghi"], "")
    cases = {
        "unknown tool 'rm'": good.replace('"pwd"', '"rm"'),
        "do not match its schema": answer(fmt, [("echo", {"s": 1})], ["abcdefghi"], "")[0],
        "not valid JSON": good.replace("{}", "{,}"),
    }
    if fmt.id_key:
        cases[f"{fmt.id_key} of a call to pwd must match"] = good.replace("abcdefghi", "abc")
    for why, text in cases.items():
        out = parse_tool_calls(text, None, TOOLS, tool_format=name, finish_reason="stop")
        assert out.calls == [] and not out.truncated and why in out.error, (text, out.error)
    short = good[:good.index("{}") + 1]  # cut inside the call
    cut = parse_tool_calls(short, None, TOOLS, tool_format=name, finish_reason="length")
    assert cut.calls == [] and cut.truncated and cut.error is None
    stopped = parse_tool_calls(short, None, TOOLS, tool_format=name, finish_reason="stop")
    assert stopped.calls == [] and not stopped.truncated and stopped.error


def test_llama3_reads_the_python_tag_prefix_it_never_writes():
    text = '<|python_tag|>{"name": "pwd", "parameters": {}}'
    out = parse_tool_calls(text, None, TOOLS, tool_format="llama3", finish_reason="stop")
    assert out.error is None and [c.name for c in out.calls] == ["pwd"]
    assert tool_formats.get("llama3").render([("pwd", {}, None)]) == text[len("<|python_tag|>"):]


def test_mistral_ids_are_nine_alphanumerics_and_other_ids_are_call_ids():
    assert all(len(i) == 9 and i.isalnum() for i in {tool_formats.get("mistral").new_id() for _ in range(50)})
    assert tool_formats.get("hermes").new_id().startswith("call_")


def test_names_resolve_and_an_unknown_name_lists_the_known_ones():
    assert tool_formats.resolve("llama3", None).name == "llama3"
    assert tool_formats.resolve(None, None).name == tool_formats.resolve("auto", None).name == "json"
    with pytest.raises(tool_formats.ToolFormatError) as err:
        tool_formats.resolve("qwen", None)
    assert "'qwen'" in str(err.value) and all(n in str(err.value) for n in tool_formats.FORMATS)


def test_the_grammar_refuses_an_unknown_format_as_a_grammar_error(bpe_engine):
    from tinygpt.runtime import grammar as G

    with pytest.raises(G.GrammarError, match="unknown tool format 'nope'; known: hermes, llama3, mistral, json"):
        G.compile_tools(bpe_engine.tokenizer, TOOLS, tool_format="nope")
