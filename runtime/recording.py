"""Record the agent's event stream as `.atraj` episodes, passing every event through: one conversation, one episode.

This is the only glue between the agent loop and the trajectory format (tinygpt.traces). `ConversationRecorder`
opens an episode at a conversation's first user turn (header from the engine and agent; a loaded conversation's
history first), appends the Message / ModelCall / ToolResult events of every turn as they are (they are the
`.atraj` records), and `end`s it when the conversation ends (the REPL: /reset, /load, /bye, end of input). So the
episode's calls concatenate to every id the engine consumed in the conversation, in order, tool results of a turn
that stopped at max_steps included (they open the next call's prompt). `mark` / `rollback` drop an exchange the
user interrupted from the file as from the transcript; a crash leaves a resumable `.part`. `record_episode` is
the one-turn case: the episode ends at the turn's end, with the reward and verdict a `judge` gives (none: reward
0 from "unjudged").
Conventions on top of traces/FORMAT.md: messages appended together are one run of ids carried by the last of
them (a system message with the first user message; a step's tool results; a loaded history); a call the model
wrote that could not be used is a tool_result named "invalid_call" with an empty call_id; logprobs are
log-softmax of the logits after logits processors (the grammar mask) and before temperature, i.e. of the
constrained distribution.
Model fields of the header: `model` is the name the model was loaded under (registry name, alias, hub id, or a
local directory's name), `model_fingerprint` its identity key (models.Identity.key: the base fingerprint, plus
"+<adapter fingerprint>" for a specialist) and `adapter_version` the adapter's fingerprint (None for a base).
For a message-level (remote) model (`engine` None): `model` is the name it is asked for, `model_fingerprint`
"remote:<base URL>#<model>" (remote_policy.remote_fingerprint: where it ran, as its weights are unknown here),
`adapter_version` None and `tokenizer_hash` / `chat_template_hash` "" (no local tokenizer or template took part).
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import msgspec

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import sampling_record
from tinygpt.traces.atraj import (Header, Message, ModelCall, Reward, RouteDecision, ToolCall, ToolResult, ToolSpec,
                                  Verdict)
from tinygpt.traces.recorder import Recorder

Judge = Callable[[list], tuple[Reward, Verdict | None]]
UNJUDGED = Reward(value=0.0, source="unjudged")


def make_header(engine, agent, *, task_id: str, split: str, episode_id: str | None = None,
                labels: dict[str, str] | None = None, route: RouteDecision | None = None) -> Header:
    """The `.atraj` header for an episode run by `agent` on `engine` (None: on the agent's message-level policy);
    `route`: why the router sent the episode to this model (None: nothing routed it)."""
    tools = [ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                      parameters=t["function"].get("parameters", {})) for t in agent.tools]
    tools_hash = hashlib.sha256(json.dumps(agent.tools, sort_keys=True).encode()).hexdigest()[:16]
    return Header(
        episode_id=episode_id or uuid.uuid4().hex, task_id=task_id, split=split, created_at=time.time(),
        **_model_fields(engine, agent),
        tools=tools, tools_hash=tools_hash, labels=labels or {}, route=route,
        sampling=sampling_record(agent.config.sampling),
    )


def _model_fields(engine, agent) -> dict:
    """The header's model fields: the loaded model's, or (no engine) the agent's message-level policy's."""
    if engine is None:
        policy = agent.policy
        return dict(model=policy.model, model_fingerprint=policy.fingerprint, adapter_version=None,
                    tokenizer_hash="", chat_template_hash="")
    loaded = engine.loaded
    return dict(model=loaded.name, model_fingerprint=loaded.fingerprint, adapter_version=loaded.identity.adapter,
                tokenizer_hash=loaded.tokenizer_hash, chat_template_hash=loaded.chat_template_hash)


def history_records(transcript) -> list[Message | ToolResult]:
    """The records of a conversation an episode starts from (a loaded chat): one per message, the last carrying
    all of its ids. Its assistant messages were sampled before this episode, so they are context here."""
    records: list[Message | ToolResult] = []
    for m in transcript.messages:
        if m["role"] == "tool":
            records.append(ToolResult(call_id=m.get("tool_call_id") or "", name=m.get("name") or "",
                                      content=m.get("content") or ""))
            continue
        calls = [ToolCall(id=c.get("id") or "", name=c["function"]["name"],
                          arguments=_arguments(c["function"].get("arguments"))) for c in m.get("tool_calls") or ()]
        records.append(Message(role=m["role"], content=m.get("content") or "", tool_calls=calls))
    if records:
        ids = None if transcript.ids is None else list(transcript.ids)  # None: a remote conversation's
        records[-1] = msgspec.structs.replace(records[-1], token_ids=ids)
    return records


def _arguments(value) -> dict:
    """A history call's arguments as an object: a local transcript holds them parsed, a message-level one as the
    JSON text the model wrote; text that is no JSON object (a call the agent refused) is kept as {"_text": ...}."""
    if not isinstance(value, str):
        return value or {}
    try:
        parsed = json.loads(value or "{}")
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_text": value}


class ConversationRecorder:
    """Records `agent`'s conversations under `directory`, one episode each, opened lazily at the first turn."""

    def __init__(self, directory: str | Path, engine, agent, *, task_id: str, split: str, fsync: str = "event",
                 labels: dict[str, str] | None = None, episode_id: str | None = None,
                 route: RouteDecision | None = None):
        self.directory, self.engine, self.agent, self.route = directory, engine, agent, route
        self.task_id, self.split, self.fsync, self.labels = task_id, split, fsync, labels
        self._next_id = episode_id  # the first episode's id (later ones get fresh ones)
        self._rec: Recorder | None = None

    @property
    def path(self) -> Path | None:
        """The open episode's file (None between conversations)."""
        return self._rec.path if self._rec is not None else None

    def record(self, events: Iterator[ev.AgentEvent]) -> Iterator[ev.AgentEvent]:
        """Yield one user turn's `events` unchanged while appending them to the conversation's episode."""
        if self._rec is None:
            self._open()
        rec = self._rec
        for event in events:
            if isinstance(event, (Message, ModelCall, ToolResult)):
                rec.record(event)
            yield event

    def _open(self) -> None:
        transcript = self.agent.transcript
        if transcript.output_end:
            raise ValueError("an episode starts where its conversation starts (or is loaded): this one already has "
                             "model output, so its first call would not hold the whole prompt")
        header = make_header(self.engine, self.agent, task_id=self.task_id, split=self.split,
                             episode_id=self._next_id, labels=self.labels, route=self.route)
        rec = Recorder(self.directory, header, fsync=self.fsync)
        self._next_id = None
        try:
            for record in history_records(transcript):
                rec.record(record)
        except BaseException:
            rec.discard()
            raise
        self._rec = rec

    def mark(self):
        """A point to roll back to before a turn (None: no episode is open yet)."""
        return self._rec.mark() if self._rec is not None else None

    def rollback(self, mark) -> None:
        """Drop what was recorded since `mark` (an interrupted exchange); an episode opened since is removed."""
        if self._rec is None:
            return
        if mark is None:
            rec, self._rec = self._rec, None
            rec.discard()
        else:
            self._rec.rollback(mark)

    def end(self, status: str, reward: Reward = UNJUDGED, verdict: Verdict | None = None) -> Path | None:
        """Finish the open episode (`status`: why the conversation ended); its final path, or None if none was
        open."""
        if self._rec is None:
            return None
        rec, self._rec = self._rec, None
        return rec.end(reward, verdict, status)

    def close(self) -> None:
        """Stop without finishing: an open episode stays a `.part` (readable, resumable, not exported)."""
        if self._rec is not None:
            rec, self._rec = self._rec, None
            rec.close()


def record_episode(events: Iterator[ev.AgentEvent], directory, *, engine, agent, task_id: str, split: str,
                   judge: Judge | None = None, fsync: str = "event", episode_id: str | None = None,
                   labels: dict[str, str] | None = None) -> Iterator[ev.AgentEvent]:
    """Yield one turn's `events` unchanged while writing them to `directory/<episode_id>.atraj`, ended (and
    judged) at the turn's end with its reason as status. Stopped early, the episode stays a `.part` file."""
    conversation = ConversationRecorder(directory, engine, agent, task_id=task_id, split=split, fsync=fsync,
                                        labels=labels, episode_id=episode_id)
    seen: list = []
    try:
        for event in conversation.record(events):
            if not isinstance(event, (ev.Token, ev.TextDelta)):
                seen.append(event)
            if isinstance(event, ev.TurnEnd):
                reward, verdict = judge(seen) if judge else (UNJUDGED, None)
                conversation.end(event.reason, reward, verdict)
            yield event
    finally:
        conversation.close()
