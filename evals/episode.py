"""The one place evals touch the agent loop's event types and the model's tool-call text.

`summarize(events)` turns one user turn's events into a `TurnSummary` (the final answer, the calls made, steps,
tokens, how the turn ended) — checkers and result rows read only that; `reply_text(step, tokenizer)` writes a
gold step as the assistant text a scripted policy replays, in the model family's tool format
(runtime/tool_formats/); `verdict_of` is an episode's reward and verdict from its turns' checks. Events are the
`.atraj` records (ModelCall, ToolCall) and agent_events'. Running and recording episodes is runner.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tinygpt.evals.suite import Call, Check, Step
from tinygpt.runtime import agent_events as ev
from tinygpt.runtime import tool_formats
from tinygpt.traces.atraj import Reward, Verdict


@dataclass(frozen=True)
class TurnSummary:
    """What happened in one user turn, as checkers and result rows see it."""

    answer: str  # the content of the final model reply if it made no calls, else ""
    calls: list[Call] = field(default_factory=list)
    steps: int = 0  # model calls
    prompt_tokens: int = 0  # ids appended to the context before each model call (the first: the whole prompt)
    output_tokens: int = 0
    end: str = ""  # TurnEnd.reason: answer | max_steps | length | truncated_call


def summarize(events: list) -> TurnSummary:
    """The summary of one user turn's events (a list ending with TurnEnd)."""
    model_calls = [e for e in events if isinstance(e, ev.ModelCall)]
    end = next((e.reason for e in reversed(events) if isinstance(e, ev.TurnEnd)), "")
    last = model_calls[-1] if model_calls else None
    answer = (last.content or "") if last is not None and not last.tool_calls else ""
    return TurnSummary(
        answer=answer, calls=[Call(c.name, dict(c.arguments)) for m in model_calls for c in m.tool_calls],
        steps=len(model_calls), prompt_tokens=sum(len(m.prompt_token_ids or ()) for m in model_calls),
        output_tokens=sum(len(m.output_token_ids or ()) for m in model_calls), end=end)


def reply_text(step: Step, tokenizer, tool_format: str = "") -> str:
    """The assistant text of a gold step: its calls as the model family writes them (`tool_format`, else the
    tool-call format of `tokenizer`'s chat template: what the agent's grammar and parser use too), or the answer
    itself."""
    if isinstance(step, str):
        return step
    fmt = tool_formats.resolve(tool_format or None, tokenizer)
    return fmt.render([(c.name, c.arguments, fmt.new_id() if fmt.id_key else None) for c in step])


def verdict_of(checks: list[Check], checker: str) -> tuple[Reward, Verdict]:
    """An episode's reward (the share of turns passed) and verdict (passed when every turn passed)."""
    failed = next((c for c in checks if not c.passed), None)
    why = failed.reason if failed else "ok"
    return (Reward(value=sum(c.passed for c in checks) / len(checks), source=checker, reason=why),
            Verdict(passed=failed is None, checker=checker, details=why))
