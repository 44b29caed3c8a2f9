"""The one place evals touch the agent loop's event types and the model's tool-call text.

`play` runs a task's user turns through an agent while recording them as `.atraj` and checking each turn;
`summarize(events)` turns one turn's events into a `TurnSummary` (the final answer, the calls made, steps,
tokens, how the turn ended) — checkers and result rows read only that; `reply_text(step, tokenizer)` writes a
gold step as the assistant text a scripted policy replays. The agent loop is being reworked (events become the
`.atraj` records: prompt_ids -> prompt_token_ids, call dicts -> ToolCall structs; tool-call syntax moves to
runtime/tool_formats/; one conversation becomes one episode): each function here reads either form, so
following that change touches only this file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tinygpt.evals.suite import Call, Check, Step
from tinygpt.runtime import agent_events as ev
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


def _ids(event, new: str, old: str) -> list:
    value = getattr(event, new, None)
    return list(value if value is not None else getattr(event, old, None) or [])


def _call(c) -> Call:
    return Call(c["name"], dict(c["arguments"])) if isinstance(c, dict) else Call(c.name, dict(c.arguments))


def summarize(events: list) -> TurnSummary:
    """The summary of one user turn's events (a list ending with TurnEnd)."""
    model_calls = [e for e in events if isinstance(e, ev.ModelCall)]
    end = next((e.reason for e in reversed(events) if isinstance(e, ev.TurnEnd)), "")
    last = model_calls[-1] if model_calls else None
    answer = (last.content or "") if last is not None and not last.tool_calls else ""
    return TurnSummary(
        answer=answer, calls=[_call(c) for m in model_calls for c in m.tool_calls], steps=len(model_calls),
        prompt_tokens=sum(len(_ids(m, "prompt_token_ids", "prompt_ids")) for m in model_calls),
        output_tokens=sum(len(_ids(m, "output_token_ids", "output_ids")) for m in model_calls), end=end)


def reply_text(step: Step, tokenizer) -> str:
    """The assistant text of a gold step: its calls as the model family writes them (the tool-call format of
    `tokenizer`'s chat template, which the agent's grammar and parser use too), or the answer itself."""
    if isinstance(step, str):
        return step
    try:
        from tinygpt.runtime import tool_formats
    except ImportError:  # before the tool-call format plugins land: the one (Qwen/Hermes) format
        from tinygpt.runtime.tool_calls import call_text

        return "\n".join(call_text(c.name, c.arguments) for c in step)
    fmt = tool_formats.resolve(None, tokenizer)
    return fmt.render([(c.name, c.arguments, fmt.new_id() if fmt.id_key else None) for c in step])


def verdict_of(checks: list[Check], checker: str) -> tuple[Reward, Verdict]:
    """An episode's reward (the share of turns passed) and verdict (passed when every turn passed)."""
    failed = next((c for c in checks if not c.passed), None)
    why = failed.reason if failed else "ok"
    return (Reward(value=sum(c.passed for c in checks) / len(checks), source=checker, reason=why),
            Verdict(passed=failed is None, checker=checker, details=why))


def play(engine, agent, turns: tuple[str, ...], directory: Path, *, episode_id: str, task_id: str, split: str,
         labels: dict[str, str], check: Callable[[int, TurnSummary], Check],
         checker: str) -> tuple[list[tuple[TurnSummary, Check]], list[Path]]:
    """Run `turns` through `agent`, recorded under `directory` and checked turn by turn; (outcomes, .atraj paths).
    One conversation is one episode where the recorder records conversations; before that, one per turn."""
    from tinygpt.runtime import recording

    outcomes: list[tuple[TurnSummary, Check]] = []
    if hasattr(recording, "ConversationRecorder"):
        conversation = recording.ConversationRecorder(directory, engine, agent, task_id=task_id, split=split,
                                                      fsync="episode", labels=labels, episode_id=episode_id)
        try:
            for i, user in enumerate(turns):
                summary = summarize([e for e in conversation.record(agent.run(user)) if not isinstance(e, ev.Token)])
                outcomes.append((summary, check(i, summary)))
            reward, verdict = verdict_of([c for _, c in outcomes], checker)
            return outcomes, [conversation.end(outcomes[-1][0].end, reward, verdict)]
        finally:
            conversation.close()
    paths = []
    for i, user in enumerate(turns):
        def judge(events: list, i: int = i) -> tuple[Reward, Verdict]:
            summary = summarize(events)
            outcomes.append((summary, check(i, summary)))
            return verdict_of([outcomes[-1][1]], checker)

        for _ in recording.record_episode(agent.run(user), directory, engine=engine, agent=agent, task_id=task_id,
                                          split=split, judge=judge, fsync="episode", episode_id=f"{episode_id}.t{i}",
                                          labels=labels):
            pass
        paths.append(directory / f"{episode_id}.t{i}.atraj")
    return outcomes, paths
