"""Fixtures for the traces tests: headers and whole synthetic tool-use episodes recorded with the real Recorder."""
import random
import time

import pytest

from tinygpt.traces.atraj import Header, Reward, Sampling, ToolSpec, Verdict
from tinygpt.traces.recorder import Recorder

TOOLS = [ToolSpec(name="ls", description="list a directory", parameters={"type": "object"})]


def make_header(episode_id: str = "ep1", **overrides) -> Header:
    fields = dict(
        episode_id=episode_id, task_id=f"task-{episode_id}", split="train", created_at=time.time(),
        model="tiny", model_fingerprint="fp-tiny", tokenizer_hash="tok-1", chat_template_hash="tpl-1",
        tools=TOOLS, tools_hash="tools-1", sampling=Sampling(temperature=0.7, seed=7),
    )
    fields.update(overrides)
    return Header(**fields)


def record_episode(directory, episode_id: str = "ep1", *, user: str = "list my files please",
                   steps: int = 2, seed: int = 0, passed: bool = True, reward: float = 1.0,
                   fsync: str = "none", **header):
    """Record a tool-use episode (system, user, `steps` tool calls, a final answer); return (path, calls).

    `calls` is the list of (prompt_ids, output_ids) actually recorded, for exactness checks.
    """
    rng = random.Random(seed)
    ids = lambda n: [rng.randrange(1000) for _ in range(n)]  # noqa: E731
    calls = []
    with Recorder(directory, make_header(episode_id, **header), fsync=fsync) as rec:
        system, user_ids = ids(8), ids(5)
        rec.message("system", "You are a file agent.", system)
        rec.message("user", user, user_ids)
        prompt = system + user_ids + [900, 901]
        for step in range(steps):
            out = ids(6)
            rec.model_call(prompt_token_ids=prompt, output_token_ids=out, logprobs=[-0.25] * len(out),
                           text=f"calling ls {step}", tool_calls=[{"id": f"c{step}", "name": "ls",
                                                                    "arguments": {"path": f"/d{step}"}}],
                           finish_reason="tool_calls", latency_s=0.01)
            calls.append((prompt, out))
            result = ids(4)
            rec.tool_result(call_id=f"c{step}", name="ls", content=f"file{step}.txt", token_ids=result)
            prompt = [902] + result + [903]
        out = ids(5)
        rec.model_call(prompt_token_ids=prompt, output_token_ids=out, text=f"done: {user}",
                       finish_reason="stop", latency_s=0.01)
        calls.append((prompt, out))
        path = rec.end(Reward(value=reward, source="test"), Verdict(passed=passed, checker="unit"))
    return path, calls


@pytest.fixture(scope="session")
def header_factory():
    return make_header


@pytest.fixture(scope="session")
def episode_factory():
    return record_episode
