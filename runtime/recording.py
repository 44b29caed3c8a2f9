"""Record the agent's event stream as `.atraj` episodes (one per user turn), passing every event through.

This is the only glue between the agent loop and the trajectory format (tinygpt.traces): it builds the header
from the engine and agent, writes the Message / ModelCall / ToolResult events as they are (they are the `.atraj`
records), and ends the episode on TurnEnd with the reward and verdict a `judge` gives (none: reward 0 from
"unjudged").
If the consumer stops early or an exception escapes, the episode stays a `.part` file (readable, resumable).
Conventions on top of traces/FORMAT.md: a step's tool results are appended as one template turn, so the last
result of a step carries the ids of all of them (the others none); a call the model wrote that could not be used
is a tool_result named "invalid_call" with an empty call_id; logprobs are log-softmax of the logits after logits
processors (the grammar mask) and before temperature, i.e. of the constrained distribution.
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
from typing import Callable, Iterator

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import sampling_record
from tinygpt.traces.atraj import Header, Message, ModelCall, Reward, ToolResult, ToolSpec, Verdict
from tinygpt.traces.recorder import Recorder

Judge = Callable[[list], tuple[Reward, Verdict | None]]


def make_header(engine, agent, *, task_id: str, split: str, episode_id: str | None = None,
                labels: dict[str, str] | None = None) -> Header:
    """The `.atraj` header for an episode run by `agent` on `engine` (None: on the agent's message-level policy)."""
    tools = [ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                      parameters=t["function"].get("parameters", {})) for t in agent.tools]
    tools_hash = hashlib.sha256(json.dumps(agent.tools, sort_keys=True).encode()).hexdigest()[:16]
    return Header(
        episode_id=episode_id or uuid.uuid4().hex, task_id=task_id, split=split, created_at=time.time(),
        **_model_fields(engine, agent),
        tools=tools, tools_hash=tools_hash, labels=labels or {},
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


def record_episode(events: Iterator[ev.AgentEvent], directory, *, engine, agent, task_id: str, split: str,
                   judge: Judge | None = None, fsync: str = "event", episode_id: str | None = None,
                   labels: dict[str, str] | None = None) -> Iterator[ev.AgentEvent]:
    """Yield `events` unchanged while writing them to `directory/<episode_id>.atraj`."""
    header = make_header(engine, agent, task_id=task_id, split=split, episode_id=episode_id, labels=labels)
    seen: list = []
    with Recorder(directory, header, fsync=fsync) as rec:
        for event in events:
            if isinstance(event, (Message, ModelCall, ToolResult)):
                rec.record(event)
            if not isinstance(event, (ev.Token, ev.TextDelta)):
                seen.append(event)
            if isinstance(event, ev.TurnEnd):
                reward, verdict = judge(seen) if judge else (Reward(value=0.0, source="unjudged"), None)
                rec.end(reward, verdict, status=event.reason)
            yield event
