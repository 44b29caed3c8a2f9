"""Toolset.call: validation errors, exceptions, timeouts and oversized output all come back as data."""
import threading
import time
from typing import Literal, Optional

import msgspec
import pytest

from tinygpt.tools.registry import Toolset, cap_output, render
from tinygpt.traces.atraj import ToolResult


def tail(file_name: str, lines: int = 10) -> dict:
    """Last lines of a file.

    Args:
        file_name: Which file.
        lines: How many.
    """
    return {"file": file_name, "lines": lines}


def scale(x: float, mode: Literal["up", "down"] = "up", note: Optional[str] = None) -> list:
    """Scale a number."""
    return [x * (2 if mode == "up" else 0.5), note]


def boom() -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


def big() -> str:
    """A long answer."""
    return "x" * 1000


@pytest.fixture
def toolset():
    return Toolset([tail, scale, boom, big], timeout_s=None, max_output_chars=100)


def test_a_good_call_runs_and_renders_json(toolset):
    result = toolset.call("tail", {"file_name": "ü.txt"})
    assert result == ToolResult(call_id="", name="tail", content='{"file": "ü.txt", "lines": 10}',
                                latency_s=result.latency_s)
    assert not result.is_error and not result.truncated and result.latency_s >= 0
    assert toolset.call("tail", '{"file_name": "a", "lines": 3}').content == '{"file": "a", "lines": 3}'
    assert toolset.call("scale", {"x": 2}).content == "[4.0, null]"        # int accepted for float
    assert toolset.call("scale", {"x": 1.0, "mode": "down", "note": None}).content == "[0.5, null]"


@pytest.mark.parametrize("name, arguments, expected", [
    ("nope", {}, "Unknown tool 'nope'. Available tools: tail, scale, boom, big."),
    ("tail", {}, "Invalid arguments for 'tail': Object missing required field `file_name`. "
                 "Signature: tail(file_name: string, lines: integer = 10)."),
    ("tail", {"file_name": "a", "n": 1}, "Invalid arguments for 'tail': Object contains unknown field `n`."),
    ("tail", {"file_name": "a", "lines": "3"}, "Expected `int`, got `str` - at `$.lines`"),
    ("tail", {"file_name": "a", "lines": True}, "Expected `int`, got `bool` - at `$.lines`"),
    ("tail", {"file_name": None}, "Expected `str`, got `null` - at `$.file_name`"),
    ("tail", ["a"], "expected a JSON object, got list"),
    ("tail", '{"file_name": ', "not valid JSON"),
    ("tail", "[1]", "expected a JSON object, got list"),
    ("scale", {"x": 1, "mode": "sideways"},
     "Invalid enum value 'sideways' - at `$.mode`. Signature: "
     'scale(x: number, mode: one of "up", "down" = \'up\', note: string or null = None).'),
    ("scale", {"x": 1, "mode": "up", "note": 5}, "Expected `str | null`, got `int` - at `$.note`"),
    (None, {}, "Unknown tool None."),
])
def test_wrong_calls_are_error_results_not_exceptions(toolset, name, arguments, expected):
    result = toolset.call(name, arguments)
    assert result.is_error
    assert expected in result.content


def test_a_tools_exception_becomes_an_error_result(toolset):
    result = toolset.call("boom")
    assert result.is_error and result.content == "Error during execution: disk on fire"


def test_error_dicts_are_flagged_as_errors():
    def fail() -> dict:
        """Report a failure the FS way."""
        return {"error": "cat: 'x': No such file or directory"}
    result = Toolset([fail]).call("fail", {})
    assert result.is_error and result.content == '{"error": "cat: \'x\': No such file or directory"}'


def test_output_is_capped_with_a_marker(toolset):
    result = toolset.call("big", {})
    assert result.truncated and not result.is_error
    assert result.content == "x" * 100 + "\n[... output truncated: 900 more characters not shown ...]"
    assert cap_output("short", 100) == ("short", False)


def test_a_slow_tool_times_out_and_later_calls_say_why():
    release = threading.Event()

    def slow() -> str:
        """Wait for the test."""
        release.wait(5)
        return "done"

    ran = []

    def quick() -> str:
        """Answer at once."""
        ran.append(time.monotonic())
        return "ok"

    toolset = Toolset([slow, quick], timeout_s=0.2)
    start = time.monotonic()
    first = toolset.call("slow")
    assert first.is_error and "timed out after 0.2 s" in first.content
    assert "may still finish in the background" in first.content
    blocked = toolset.call("quick")          # the abandoned call still holds the toolset
    assert blocked.is_error and "could not start within 0.2 s" in blocked.content
    assert "It was not run" in blocked.content
    assert time.monotonic() - start < 2
    release.set()
    for _ in range(50):                      # once it finishes, calls run again
        result = toolset.call("quick")
        if not result.is_error:
            break
        time.sleep(0.05)
    assert result.content == "ok"
    assert len(ran) == 1                      # the call that could not start never ran later


def test_threaded_calls_return_results_and_exceptions():
    toolset = Toolset([tail, boom], timeout_s=5)
    assert toolset.call("tail", {"file_name": "a"}).content == '{"file": "a", "lines": 10}'
    assert toolset.call("boom").content == "Error during execution: disk on fire"


def test_base_exceptions_are_not_swallowed():
    def interrupt() -> str:
        """Simulate Ctrl-C inside a tool."""
        raise KeyboardInterrupt

    for timeout in (None, 5):
        with pytest.raises(KeyboardInterrupt):
            Toolset([interrupt], timeout_s=timeout).call("interrupt")


def test_render_rules():
    assert render("plain") == ("plain", False)
    assert render(None) == ("None", False)
    assert render(3) == ("3", False)
    assert render({"a": "é"}) == ('{"a": "é"}', False)
    assert render({"error": "bad"}) == ('{"error": "bad"}', True)
    text, is_error = render({"x": object()})
    assert is_error and "not JSON" in text


def test_toolset_surface_and_bad_construction():
    ts = Toolset([tail, scale])
    assert ts.names == ["tail", "scale"] and len(ts) == 2 and "tail" in ts
    assert [s["function"]["name"] for s in ts.schemas()] == ["tail", "scale"]
    assert ts.get("tail").name == "tail"
    with pytest.raises(KeyError, match="no tool named 'x'; available: tail, scale"):
        ts.get("x")
    with pytest.raises(ValueError, match="two tools are named 'tail'"):
        Toolset([tail, tail])
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        Toolset([tail], timeout_s=0)
    with pytest.raises(ValueError, match="max_output_chars"):
        Toolset([tail], max_output_chars=0)


def test_a_result_is_the_trajectory_record_bound_to_its_call_id():
    ts = Toolset([tail, big], timeout_s=None, max_output_chars=10)
    result = ts.call("tail", {"file_name": "a"}, call_id="call_7")
    assert type(result) is ToolResult and result.call_id == "call_7" and result.token_ids is None
    assert ts.call("nope", {}, call_id="call_8").call_id == "call_8"  # an error result answers its call too
    cut = ts.call("big", {}, call_id="call_9")
    assert cut.truncated and cut.call_id == "call_9"
    assert msgspec.json.decode(msgspec.json.encode(cut), type=ToolResult) == cut
