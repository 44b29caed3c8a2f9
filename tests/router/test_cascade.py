"""The cascade: a failing model's events move the turn one enabled tier up."""
import pytest

from tinygpt.router.cascade import CascadeLimits, escalate, failing, next_tier
from tinygpt.router.registry import Registry, Target
from tinygpt.runtime.agent_events import TurnEnd
from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult


def call(*names):
    return ModelCall(prompt_token_ids=None, output_token_ids=None, text="", finish_reason="stop", latency_s=0.0,
                     token_exact=False, tool_calls=[ToolCall(id=f"c{i}", name=n) for i, n in enumerate(names)])


def result(error=True, name="ls", call_id="c0"):
    return ToolResult(call_id=call_id, name=name, content="Error" if error else "ok", is_error=error)


def invalid():
    return ToolResult(call_id="", name="invalid_call", content="Error: could not be used", is_error=True)


def test_repeated_tool_errors_invalid_calls_and_the_step_limit_are_failures():
    assert failing([call("ls"), result(), call("ls"), result(), call("ls"), result()]) == "3 tool errors in a row"
    assert failing([call("ls"), result(), call("ls"), result(error=False), call("ls"), result()]) is None
    assert failing([call(), invalid(), call(), invalid()]) == "2 tool calls that could not be used"
    assert failing([call("ls"), TurnEnd(reason="max_steps", steps=8)]) == "no answer within the step limit (8 steps)"
    assert failing([call("ls"), TurnEnd(reason="answer", steps=1)]) is None
    steps = [call("ls"), result(error=False)] * 4
    assert failing(steps, CascadeLimits(max_steps=4)) == "no answer after 4 model calls"
    assert failing(steps + [call()], CascadeLimits(max_steps=4)) is None  # it answered


def test_a_new_user_turn_starts_the_count_again():
    events = [call("ls"), result(), call("ls"), result(), Message(role="user", content="again"), call("ls"), result()]
    assert failing(events) is None


def test_escalation_goes_one_enabled_tier_up_and_stops_at_the_top():
    remote_off = Target(name="cluster", kind="remote")
    cloud_on = Target(name="claude", kind="cloud", enabled=True)
    reg = Registry(generalist="base", targets=(remote_off, cloud_on))
    bad = [call("ls"), result(), call("ls"), result(), call("ls"), result()]
    e = escalate(bad, "specialist", reg)
    assert (e.route, e.kind) == ("base", "generalist") and e.reason.startswith("3 tool errors in a row: from")
    assert next_tier("generalist", reg) == ("claude", "cloud")  # the remote tier is off: skipped
    assert escalate(bad, "cloud", reg) is None
    assert escalate(bad, "generalist", Registry(targets=(remote_off,))) is None  # nothing on above it
    assert escalate([call()], "specialist", reg) is None
    with pytest.raises(ValueError, match="unknown route kind"):
        next_tier("teacher", reg)
