"""Streaming text pieces: stop strings (runtime/stop_text.py) give the same answer however the text is cut into
pieces (tool-call splitting: tests/runtime/test_tool_formats.py)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.runtime.stop_text import StopScanner


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
