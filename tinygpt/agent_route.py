"""`tinygpt agent --router DIR`: the REPL's conversation when a saved router picks the model it runs on.

The first user message of each conversation (with the system text and the offered tools) is routed once; the whole
conversation then stays on that target, so its trajectory is one model's record (token-exact on a local model).
A new conversation (/reset) is routed again at its first message; later messages, and tool results above all,
never reach the router, so a file's text cannot move the conversation to another model. The decision goes into
the trajectory header's `route`. A store model is loaded once and kept for later conversations; a remote or cloud
target is the guarded policy of its enabled backend (router/serve_route.py). `RoutedAgent` stands in for the Agent
the REPL drives (tinygpt/repl.py): `transcript` is a view whose `mark` before the first message means "a new
conversation", which `rollback` undoes by starting it over. Not here: printing (cli_agent.py).
"""
from __future__ import annotations

import json
from typing import Callable

NEW = "new conversation"  # the mark taken before a conversation's first message


class _TranscriptView:
    """The current conversation's transcript as the REPL sees it (marks and rollbacks go through the router's
    conversation, which may not have a model yet)."""

    def __init__(self, routed: "RoutedAgent"):
        self.routed = routed

    @property
    def messages(self) -> list:
        return self.routed.agent.transcript.messages if self.routed.agent else []

    @property
    def ids(self):
        return self.routed.agent.transcript.ids if self.routed.agent else []

    def mark(self):
        return self.routed.agent.transcript.mark() if self.routed.open else NEW

    def rollback(self, mark) -> None:
        self.routed.rollback(mark)


class RoutedAgent:
    """Conversations routed by `router` (a RequestRouter); `make_agent(decision)` builds the (engine, Agent) that
    serves a decision (engine None for a backend's policy), all sharing `config` (the AgentConfig: /set changes
    every conversation's)."""

    routed = True  # the REPL routes each new conversation (tinygpt/cli_agent.py)
    # what /save and /load say here (tinygpt/repl.py): a saved chat is one model's KV, and the next conversation
    # may run on another model
    no_save = ("error: /save and /load keep one model's KV cache with the chat; with --router each conversation "
               "may run on another model, so they are off")

    def __init__(self, router, make_agent: Callable, tools: list[dict], config):
        self.router, self.make_agent, self.tools, self.config = router, make_agent, tools, config
        self.agent = None
        self.engine = None
        self.decision = None
        self._served: dict[str, tuple] = {}  # route -> (engine, agent): a target's model loads once
        self.transcript = _TranscriptView(self)

    @property
    def open(self) -> bool:
        """Whether a conversation is under way (it has messages): then its target is fixed."""
        return self.agent is not None and bool(self.agent.transcript.messages)

    @property
    def session(self):
        return None  # rewinding the KV after an interrupted exchange is done here (rollback), on the right engine

    def begin(self, message: str):
        """Before a user message: route the conversation if `message` is its first (the Decision; the
        conversation's agent is set), else None (an open conversation stays where it was routed)."""
        if self.open:
            return None
        messages = ([{"role": "system", "content": self.config.system}] if self.config.system else []) + [
            {"role": "user", "content": message}]
        decision = self.router.decide(messages, self.tools)
        if decision.route not in self._served:
            self._served[decision.route] = self.make_agent(decision)
        self.engine, self.agent = self._served[decision.route]
        self.agent.reset()
        self.decision = decision
        return decision

    def run(self, line: str):
        if self.agent is None:
            raise ValueError("route the conversation first (RoutedAgent.begin)")
        return self.agent.run(line)

    def reset(self) -> None:
        """End the conversation: the next message is routed again."""
        if self.agent is not None:
            self.agent.reset()

    def rollback(self, mark) -> None:
        """Drop what was appended since `mark` (an interrupted exchange), and rewind the local KV to match."""
        if self.agent is None:
            return
        if mark == NEW:
            self.agent.reset()  # the exchange was the whole conversation: it starts over, routed again
            return
        self.agent.transcript.rollback(mark)
        if self.agent.session is not None:
            self.engine.rewind(self.agent.session, self.agent.transcript.ids)

    def stuck(self, events: list):
        """After a turn on a local model: an `Escalation` to the enabled backend above it when the model keeps
        failing (router/cascade.py: tool errors in a row, unusable calls, the step limit), else None. It is only
        offered; the user decides (/escalate), so a tool result, which a file can dictate, never moves the
        conversation by itself."""
        from tinygpt.router.cascade import Escalation, failing, next_tier

        if self.agent is None or self.agent.remote or self.decision is None:
            return None
        reason = failing(events)
        above = next_tier("generalist", self.router.registry) if reason else None
        if above is None or above[0] not in self.router.policies:
            return None
        return Escalation(route=above[0], kind=above[1], reason=f"{reason}: from {self.decision.kind} "
                                                                f"{self.decision.route} to {above[1]} {above[0]}")

    def escalate(self, escalation):
        """Continue the conversation on `escalation`'s backend, from its messages so far (a new conversation, so a
        new episode: the backend's turns are not token-exact); the Decision that records why."""
        import msgspec

        history = remote_messages(self.agent.transcript.messages)
        decision = msgspec.structs.replace(self.decision, route=escalation.route, kind=escalation.kind,
                                           threshold=None, reason=escalation.reason)
        if decision.route not in self._served:
            self._served[decision.route] = self.make_agent(decision)
        self.engine, self.agent = self._served[decision.route]
        self.agent.reset()
        self.agent.transcript.messages.extend(history)
        self.decision = decision
        return decision

    def __getattr__(self, name: str):
        # what else the REPL reads (tool_choice, grammar, ...) is the current agent's
        agent = self.__dict__.get("agent")
        if agent is None:
            raise AttributeError(f"{name}: no conversation has been routed yet")
        return getattr(agent, name)


def remote_messages(messages: list[dict]) -> list[dict]:
    """A local conversation's messages as a backend takes them: call arguments as JSON text, and a tool result
    that answers no call of the message before it (a call the model wrote that could not be used) as a user
    message saying so (an API refuses a tool message without its call)."""
    out, ids = [], set()
    for m in messages:
        m = dict(m)
        if m["role"] == "assistant":
            calls = m.get("tool_calls") or []
            if calls:
                m["tool_calls"] = [{**c, "function": {"name": c["function"]["name"],
                                                      "arguments": json.dumps(c["function"]["arguments"])}}
                                   for c in calls]
            ids = {c["id"] for c in calls}
        elif m["role"] == "tool" and m.get("tool_call_id") not in ids:
            m = {"role": "user", "content": f"(result of a tool call that could not be used) {m['content']}"}
        out.append(m)
    return out
