"""The cascade: start on the routed (local) model and move one tier up when it keeps failing.

`failing(events, limits)` reads the agent's events of the current turn (a user message starts a new turn) and
says why the model is failing, or None: `tool_errors` tool results in a row that are errors, `invalid_calls`
calls that could not be used, `max_steps` model calls without an answer, or the turn ending at the step limit.
`escalate` adds where to go: specialist -> the generalist -> an enabled remote target -> an enabled cloud
target; None when no tier is left (or every higher one is off). Pure functions over values: the agent or the
server calls them between steps; nothing here runs a model or sends anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tinygpt.router.registry import Registry
from tinygpt.runtime.agent_events import TurnEnd
from tinygpt.traces.atraj import Message, ModelCall, ToolResult

TIERS = ("specialist", "generalist", "local", "remote", "cloud")  # local: a configured local target


@dataclass(frozen=True)
class CascadeLimits:
    tool_errors: int = 3            # consecutive tool results that are errors
    invalid_calls: int = 2          # calls that could not be used, in the turn
    max_steps: int | None = None    # model calls in the turn with no answer yet (None: only the agent's limit)


@dataclass(frozen=True)
class Escalation:
    """Move the rest of the turn to `route` (of `kind`), because of `reason`."""

    route: str
    kind: str
    reason: str


def failing(events: Iterable, limits: CascadeLimits = CascadeLimits()) -> str | None:
    """Why the model is failing in the current turn, or None."""
    errors_in_a_row = invalid = steps = 0
    answered = False
    for event in events:
        if isinstance(event, Message) and event.role == "user":
            errors_in_a_row = invalid = steps = 0
            answered = False
        elif isinstance(event, ModelCall):
            steps += 1
            answered = not event.tool_calls
        elif isinstance(event, ToolResult):
            invalid += event.name == "invalid_call" and not event.call_id
            errors_in_a_row = errors_in_a_row + 1 if event.is_error else 0
        elif isinstance(event, TurnEnd) and event.reason == "max_steps":
            return f"no answer within the step limit ({event.steps} steps)"
    if errors_in_a_row >= limits.tool_errors:
        return f"{errors_in_a_row} tool errors in a row"
    if invalid >= limits.invalid_calls:
        return f"{invalid} tool calls that could not be used"
    if limits.max_steps is not None and steps >= limits.max_steps and not answered:
        return f"no answer after {steps} model calls"
    return None


def next_tier(kind: str, registry: Registry) -> tuple[str, str] | None:
    """(name, kind) of the tier above `kind`, skipping tiers with nothing enabled; None at the top."""
    if kind not in TIERS:
        raise ValueError(f"unknown route kind {kind!r}; one of {', '.join(TIERS)}")
    if kind == "specialist":
        return registry.generalist, "generalist"
    for higher in TIERS[TIERS.index(kind) + 1:]:
        target = next((t for t in registry.targets if t.enabled and t.kind == higher), None)
        if target is not None:
            return target.name, target.kind
    return None


def escalate(events: Iterable, kind: str, registry: Registry, limits: CascadeLimits = CascadeLimits()
             ) -> Escalation | None:
    """Where the turn should go next, if the model of route kind `kind` is failing and a higher tier is on."""
    reason = failing(events, limits)
    if reason is None:
        return None
    above = next_tier(kind, registry)
    if above is None:
        return None
    return Escalation(route=above[0], kind=above[1], reason=f"{reason}: from {kind} to {above[1]} {above[0]}")
