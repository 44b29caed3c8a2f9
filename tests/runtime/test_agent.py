"""The agent loop end to end: a scripted policy and a tiny random model, recorded token-exact."""
import pytest

from tinygpt.evals.world_tasks import TASKS, make_judge
from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.policy import ScriptedPolicy
from tinygpt.runtime.recording import ConversationRecorder, record_episode
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult
from tinygpt.traces.export import training_row
from tinygpt.traces.reader import list_traces, read_episode


def ids_from_events(events):
    out = []
    for e in events:
        if isinstance(e, ModelCall):
            out += e.prompt_token_ids + e.output_token_ids
    return out


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_scripted_policy_solves_each_task_and_the_trace_exports_the_exact_ids(tiny_engine, task, tmp_path):
    fs = open_filesystem("fs:virtual")
    agent = Agent(tiny_engine, fs_toolset(fs, timeout_s=None), AgentConfig(),
                  policy=ScriptedPolicy(tiny_engine, list(task.teacher)))
    events = list(record_episode(agent.run(task.prompt), tmp_path, engine=tiny_engine, agent=agent,
                                 task_id=task.id, split="train", judge=make_judge(task, fs)))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Message" and kinds[-1] == "TurnEnd"
    assert events[-1].reason == "answer" and events[-1].steps == len(task.teacher)
    results = [e for e in events if isinstance(e, ToolResult)]
    assert len(results) == len(task.teacher) - 1 and not any(r.is_error for r in results)
    assert ids_from_events(events) == agent.transcript.ids
    (path,) = list_traces(tmp_path)
    episode = read_episode(path)
    assert episode.end.verdict.passed
    # what the loop yielded is what the file holds: the same records, no conversion
    assert episode.events == [e for e in events if isinstance(e, (Message, ModelCall, ToolResult))]
    ran = [e for e in events if isinstance(e, ToolCall)]
    assert ran == [c for e in events if isinstance(e, ModelCall) for c in e.tool_calls]
    assert [r.call_id for r in results] == [c.id for c in ran]
    row = training_row(episode)
    assert row.input_ids == agent.transcript.ids
    sampled = [i for e in events if isinstance(e, ModelCall) for i in e.output_token_ids]
    assert [i for i, m in zip(row.input_ids, row.loss_mask) if m] == sampled


def test_tiny_model_with_required_calls_runs_tools_on_persistent_kv(tiny_engine):
    fs = open_filesystem("fs:virtual")
    cfg = AgentConfig(tool_choice="required", max_steps=3,
                      sampling=SamplingParams(temperature=1.0, max_tokens=96, seed=11))
    agent = Agent(tiny_engine, fs_toolset(fs, timeout_s=None), cfg)
    events = list(agent.run("look around"))
    calls = [e for e in events if isinstance(e, ModelCall)]
    assert calls, events
    for c in calls:
        assert c.finish_reason in ("tool_calls", "truncated")
        for tc in c.tool_calls:
            assert tc.name in agent.toolset.names and isinstance(tc.arguments, dict)
    ran = [e for e in events if isinstance(e, ToolCall)]
    assert len([e for e in events if isinstance(e, ToolResult)]) == len(ran)
    # later steps reuse the KV of everything before them
    assert all(c.cached_tokens > 0 for c in calls[1:])
    assert agent.session.ids == agent.transcript.ids[: len(agent.session.ids)]
    assert ids_from_events(events) == agent.transcript.ids
    end = events[-1]
    assert isinstance(end, ev.TurnEnd) and end.reason in ("max_steps", "truncated_call")


def test_tool_choice_none_never_calls_and_answers(tiny_engine):
    agent = Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None),
                  AgentConfig(tool_choice="none", sampling=SamplingParams(temperature=1.0, max_tokens=24, seed=2)))
    events = list(agent.run("hello"))
    assert not [e for e in events if isinstance(e, ToolCall)]
    assert events[-1].reason in ("answer", "length") and events[-1].steps == 1


def test_unknown_tool_choice_is_a_clear_error(tiny_engine):
    with pytest.raises(ValueError, match="not one of the tools"):
        Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual")), AgentConfig(tool_choice="rm_rf"))


def test_zero_drift_when_re_encoding_would_change_the_ids(tiny_engine, tmp_path, forced_policy):
    tok = tiny_engine.tokenizer
    canonical = tiny_engine.encode("the file")
    split = [i for piece in ["t", "h", "e", " ", "f", "i", "l", "e"] for i in tiny_engine.encode(piece)]
    assert tok.decode(split) == tok.decode(canonical) and split != canonical  # re-encoding would differ
    fs = open_filesystem("fs:virtual")
    agent = Agent(tiny_engine, fs_toolset(fs, timeout_s=None), AgentConfig(tool_choice="none"),
                  policy=forced_policy(tiny_engine, [split]))
    events = list(record_episode(agent.run("say it"), tmp_path, engine=tiny_engine, agent=agent,
                                 task_id="drift", split="test"))
    (call,) = [e for e in events if isinstance(e, ModelCall)]
    assert call.output_token_ids == split + [tok.eos_token_id]
    row = training_row(read_episode(list_traces(tmp_path)[0]))
    assert row.input_ids == agent.transcript.ids == call.prompt_token_ids + call.output_token_ids
    assert tiny_engine.encode(tok.decode(row.input_ids)) != row.input_ids


def test_an_invalid_call_is_shown_to_the_model_which_gets_another_step(tiny_engine):
    bad = '<tool_call>\n{"name": "ls", "arguments": {"a": "yes"}}\n</tool_call>'
    agent = Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(),
                  policy=ScriptedPolicy(tiny_engine, [bad, "sorry, done"]))
    events = list(agent.run("list"))
    errors = [e for e in events if isinstance(e, ev.Error)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert errors and "could not be used" in errors[0].message
    assert results[0].is_error and results[0].token_ids and results[0].name == "invalid_call"
    assert not [e for e in events if isinstance(e, ToolCall)]
    assert events[-1].reason == "answer" and events[-1].steps == 2
    assert ids_from_events(events) == agent.transcript.ids


def test_ctrl_c_mid_turn_leaves_a_consistent_session_and_the_dropped_turn_leaves_no_trace(tiny_engine, tmp_path):
    """As in `quickstart` or the agent REPL: Ctrl-C while a later step prefills the tool results."""
    cfg = AgentConfig(tool_choice="ls", max_steps=2, sampling=SamplingParams(max_tokens=48))
    agent = Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), cfg)
    conversation = ConversationRecorder(tmp_path, tiny_engine, agent, task_id="t", split="test")
    list(conversation.record(agent.run("first")))
    kept, mark, recorded = list(agent.transcript.ids), agent.transcript.mark(), conversation.mark()
    part = conversation.path
    before = part.read_bytes()
    layer = agent.session.cache[1]
    original, prefills = layer.update_and_fetch, []

    def update(keys, values):  # Ctrl-C lands in the second multi-token prefill of the turn, after layer 0
        if keys.shape[2] > 1:
            prefills.append(1)
            if len(prefills) == 2:
                del layer.update_and_fetch
                raise KeyboardInterrupt
        return original(keys, values)

    layer.update_and_fetch = update
    with pytest.raises(KeyboardInterrupt):  # not "cache holds N tokens but N+1 were recorded"
        list(conversation.record(agent.run("second")))
    s = agent.session
    assert [c.offset for c in s.cache] == [len(s.ids)] * len(s.cache)
    assert s.ids == agent.transcript.ids[: len(s.ids)]
    assert len(part.read_bytes()) > len(before)  # the dropped turn's first records were written
    agent.transcript.rollback(mark)
    tiny_engine.rewind(s, agent.transcript.ids)
    conversation.rollback(recorded)
    assert part.read_bytes() == before  # ...and are gone with it
    assert agent.transcript.ids == kept and s.ids == kept[: len(s.ids)]
    held = len(s.ids)
    agent.config.max_steps = 1
    events = list(conversation.record(agent.run("third")))
    (call,) = [e for e in events if isinstance(e, ModelCall)]
    assert events[-1].reason == "max_steps" and call.cached_tokens == held
    final = conversation.end("quit")
    episode = read_episode(final)
    assert episode.end.status == "quit" and [m.content for m in episode.events if isinstance(m, Message)] == \
        ["first", "third"]
    row = training_row(episode)  # turn 1's last tool results open turn 3's first prompt
    assert row.input_ids == agent.transcript.ids[: agent.transcript.output_end]
    leftover = kept[mark[3]:]  # after turn 1's last output: its tool results, never consumed in turn 1
    assert leftover and call.prompt_token_ids[: len(leftover)] == leftover


def test_an_answer_cut_off_in_its_second_call_runs_and_records_no_call(tiny_engine, forced_policy, tmp_path):
    from tinygpt.runtime import tool_formats

    fmt = tool_formats.resolve(None, tiny_engine.tokenizer)
    first = fmt.render([("ls", {}, "c1")])
    both = fmt.render([("ls", {}, "c1"), ("pwd", {}, "c2")])
    assert both.startswith(first)
    budget = len(tiny_engine.encode(first)) + 3  # inside the second call
    agent = Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None),
                  AgentConfig(sampling=SamplingParams(temperature=0.0, max_tokens=budget)),
                  policy=forced_policy(tiny_engine, [both]))
    events = list(record_episode(agent.run("list, then where am I"), tmp_path, engine=tiny_engine, agent=agent,
                                 task_id="cut", split="train"))
    (call,) = [e for e in events if isinstance(e, ModelCall)]
    assert call.finish_reason == "truncated" and call.tool_calls == []
    assert not any(isinstance(e, (ToolCall, ToolResult)) for e in events)
    assert events[-1].reason == "truncated_call"
    assert "tool_calls" not in agent.transcript.messages[-1]
    (recorded,) = [e for e in read_episode(list_traces(tmp_path)[0]).events if isinstance(e, ModelCall)]
    assert recorded.tool_calls == []
