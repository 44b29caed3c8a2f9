"""Streaming text pieces: stop strings (runtime/stop_text.py) and tool-call splitting (toolstream.py) give the same
answer however the text is cut into pieces."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.runtime.stop_text import StopScanner
from tinygpt.web.toolstream import CallArgs, CallStart, Content, ToolStream


def cuts(text: str, points: list[int]) -> list[str]:
    idx = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in zip(idx, idx[1:])]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab<>/x", max_size=40), st.lists(st.integers(0, 50), max_size=12),
       st.lists(st.text(alphabet="ab<>", min_size=1, max_size=4), max_size=3))
def test_stop_scanner_releases_exactly_the_text_before_the_first_stop(text, points, stops):
    sc = StopScanner(stops)
    out = "".join(sc.push(p) for p in cuts(text, points)) + sc.flush()
    ends = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    assert out == (text[: min(ends)[1]] if ends else text)
    assert sc.stopped == bool(ends)


def test_stop_scanner_holds_back_a_possible_stop_prefix():
    sc = StopScanner(["END"])
    assert sc.push("abcE") == "abc"
    assert sc.push("N") == ""
    assert sc.push("x") == "ENx"
    assert sc.push("yEND tail") == "y" and sc.stopped
    assert sc.text == "abcENxy"


CALLS = ('Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "n": {"a": [1, "}"]}}}\n'
         '</tool_call>\n<tool_call>\n{"name": "f\\"2", "arguments": {}}\n</tool_call>')


def _collect(pieces):
    content = "".join(p.text for p in pieces if isinstance(p, Content))
    names = [(p.index, p.name) for p in pieces if isinstance(p, CallStart)]
    args: dict[int, str] = {}
    for p in pieces:
        if isinstance(p, CallArgs):
            args[p.index] = args.get(p.index, "") + p.text
    return content, names, args


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(CALLS)), max_size=30))
def test_tool_stream_is_independent_of_how_text_is_cut(points):
    ts = ToolStream()
    pieces = [p for part in cuts(CALLS, points) for p in ts.feed(part)] + ts.finish()
    content, names, args = _collect(pieces)
    assert content == "Sure."
    assert names == [(0, "get_weather"), (1, 'f"2')]
    assert json.loads(args[0]) == {"city": "Paris", "n": {"a": [1, "}"]}} and args[1] == "{}"
    starts = [i for i, p in enumerate(pieces) if isinstance(p, CallStart)]
    assert all(not (isinstance(p, CallArgs) and p.index == 0) for p in pieces[: starts[0]])


def test_tool_stream_text_without_calls_and_a_truncated_call():
    ts = ToolStream()
    assert _collect(ts.feed("a <tool") + ts.feed("box> b") + ts.finish())[0] == "a <toolbox> b"
    ts = ToolStream()
    pieces = ts.feed('<tool_call>\n{"name": "f", "arguments": {"x": 1') + ts.finish()
    assert _collect(pieces) == ("", [(0, "f")], {0: '{"x": 1'})


def test_tool_stream_gives_back_a_call_without_a_head_as_text():
    ts = ToolStream()
    pieces = ts.feed("<tool_call>\nnot json\n</tool_call> ok") + ts.finish()
    assert _collect(pieces) == ("<tool_call>\nnot json\n</tool_call> ok", [], {})


MARKED = ('<tool_call>\n{"name": "write", "arguments": {"text": "a </tool_call> b <tool_call> \\"}\\" </tool_call"}}\n'
          '</tool_call>\n<tool_call>\n{"name": "write", "arguments": {"text": "</tool_call>"}}\n</tool_call>')
WRITE = [{"type": "function", "function": {"name": "write", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(MARKED)), max_size=30))
def test_tool_stream_agrees_with_the_parser_when_strings_hold_the_markers(points):
    from tinygpt.runtime.tool_calls import parse_tool_calls

    parsed = parse_tool_calls(MARKED, None, WRITE, finish_reason="stop")
    texts = ['a </tool_call> b <tool_call> "}" </tool_call', "</tool_call>"]
    assert [c.arguments["text"] for c in parsed.calls] == texts
    ts = ToolStream()
    content, names, args = _collect([p for part in cuts(MARKED, points) for p in ts.feed(part)] + ts.finish())
    assert content == parsed.content == ""
    assert names == [(i, c.name) for i, c in enumerate(parsed.calls)]
    assert [json.loads(args[i]) for i in range(len(parsed.calls))] == [c.arguments for c in parsed.calls]
