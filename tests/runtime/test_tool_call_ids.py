"""Call ids a model writes itself (Mistral): two calls of one answer with the same id are an unusable call (its
result could not be paired): the usable call runs (as on the remote path), the other is shown to the model, which
gets another step; an id reused in a later step is fine (results follow their calls) and the conversation and its
export stay exact."""
import json

import pytest

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime import tool_formats
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.recording import ConversationRecorder
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.tools.registry import Toolset
from tinygpt.traces.atraj import ModelCall, ToolResult
from tinygpt.traces.export import chat_record, training_row
from tinygpt.traces.reader import read_episode

pytestmark = pytest.mark.usefixtures("one_blas_thread")
MISTRAL = tool_formats.get("mistral")
SAME = "aB3dE5gH9"


def ls(path: str) -> dict:
    """List a directory.

    Args:
        path: the directory
    """
    return {"files": [path + "/a.txt"]}


def answer(*paths_and_ids: tuple[str, str]) -> str:
    return MISTRAL.render([("ls", {"path": p}, i) for p, i in paths_and_ids])


@pytest.mark.parametrize("ids, calls", [([SAME, SAME], 1), (["x1x1x1x1x", SAME, "x1x1x1x1x"], 2),
                                        ([SAME, "Zz9Zz9Zz9"], 2)])
def test_two_calls_of_one_answer_may_not_share_an_id(ids, calls):
    tools = Toolset([ls], timeout_s=None).schemas()
    parsed = parse_tool_calls(answer(*[(f"d{n}", i) for n, i in enumerate(ids)]), None, tools,
                              tool_format="mistral", finish_reason="stop")
    assert [c.id for c in parsed.calls] == list(dict.fromkeys(ids)) and len(parsed.calls) == calls
    if calls < len(ids):
        assert parsed.error == (f"two calls of one answer have the id {ids[-1]!r}; give each call its own id so its "
                                "result can be paired with it")
    else:
        assert parsed.error is None


def test_a_repeated_id_is_an_unusable_call_and_a_reused_one_is_fine(mistral_engine, forced_policy, tmp_path):
    replies = [answer(("a", SAME), ("b", SAME)),  # step 1: one id for two calls: shown to the model
               answer(("a", SAME)),               # step 2: the id again, in a later step: runs
               "Done.", "Bye."]                   # step 3 answers; turn 2 answers
    policy = forced_policy(mistral_engine, replies)
    agent = Agent(mistral_engine, Toolset([ls], timeout_s=None), AgentConfig(), policy=policy)
    conversation = ConversationRecorder(tmp_path, mistral_engine, agent, task_id="ids", split="test")
    events = list(conversation.record(agent.run("list a")))
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert len(errors) == 1 and f"two calls of one answer have the id {SAME!r}" in errors[0].message
    assert [e.arguments for e in events if isinstance(e, ev.ToolCall)] == [{"path": "a"}, {"path": "a"}]
    calls = [e for e in events if isinstance(e, ModelCall)]
    assert [[c.id for c in m.tool_calls] for m in calls[:2]] == [[SAME], [SAME]]  # the usable call, recorded and run
    assert events[-1].reason == "answer" and events[-1].steps == 3
    ran, invalid, again = [m for m in agent.transcript.messages if m["role"] == "tool"]
    assert invalid["name"] == "invalid_call" and MISTRAL.valid_id(invalid["tool_call_id"])  # the template checks it
    assert ran["tool_call_id"] == again["tool_call_id"] == SAME
    shown = mistral_engine.tokenizer.decode(agent.transcript.segments[2].ids)
    content = errors[0].message  # what the model is shown, after the usable call's result
    assert shown == (f'[TOOL_RESULTS]{{"content": {ran["content"]}, "call_id": "{SAME}"}}[/TOOL_RESULTS]'
                     f'[TOOL_RESULTS]{{"content": {content}, "call_id": "{invalid["tool_call_id"]}"}}[/TOOL_RESULTS]')
    assert list(conversation.record(agent.run("thanks")))[-1].reason == "answer"
    assert agent.session.ids == agent.transcript.ids
    episode = read_episode(conversation.end("done"))
    results = [e for e in episode.events if isinstance(e, ToolResult)]
    assert [(r.call_id, r.name, r.is_error) for r in results] == [(SAME, "ls", False), ("", "invalid_call", True),
                                                                  (SAME, "ls", False)]
    row = training_row(episode)
    assert row.input_ids == agent.transcript.ids
    masked = training_row(episode, mask_error_turns=True).loss_mask
    calls = [e for e in episode.events if isinstance(e, ModelCall)]
    first = len(calls[0].prompt_token_ids)
    assert masked[first:first + len(calls[0].output_token_ids)] == [0] * len(calls[0].output_token_ids)
    assert sum(masked) == sum(len(c.output_token_ids) for c in calls[1:])
    tool_messages = [m for m in chat_record(episode).messages if m.role == "tool"]
    assert [json.loads(m.content) for m in tool_messages[::2]] == [{"files": ["a/a.txt"]}] * 2
