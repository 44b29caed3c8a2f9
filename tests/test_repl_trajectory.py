"""The agent REPL records each conversation as one episode, and the episode's training row is, id for id, what the
engine consumed: every turn, the system/tools block, tool results left over by a turn that stopped at max_steps,
with the loss mask 1 exactly on sampled ids. Run in-process on the tiny model, with a policy that makes the real
engine sample scripted replies on the real session (tests/conftest.py: ForcedPolicy)."""
import json

import pytest

from tinygpt import cli
from tinygpt.cli_agent import repl
from tinygpt.evals.world_tasks import call
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import Message, ModelCall, Reward, ToolResult
from tinygpt.traces.reader import list_traces, read_episode
from tinygpt.traces.recorder import Recorder

SYSTEM = "You are a file agent."


@pytest.fixture
def quiet_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))


def make_agent(engine, policy, max_steps=2):
    return Agent(engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None),
                 AgentConfig(max_steps=max_steps, system=SYSTEM), policy=policy)


def consumed(generations):
    """What the engine consumed, call by call, for calls that were not cancelled: (whole prompt, sampled ids)."""
    return [(g.result.prompt_ids, g.result.output_ids) for g in generations if g.result.finish_reason != "cancelled"]


def export_rows(traces, out) -> list[dict]:
    assert cli.main(["traces-to-data", str(traces), "--out", str(out), "--json"]) == 0
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def assert_row_is_exactly_what_the_engine_consumed(row, calls):
    """The row is the last call's whole prompt + its output; every earlier call's prompt + output is a prefix of
    it; the mask is 1 exactly on the positions each call sampled."""
    prompt, output = calls[-1]
    assert row["input_ids"] == prompt + output
    sampled = []
    for prompt, output in calls:
        assert row["input_ids"][: len(prompt) + len(output)] == prompt + output
        sampled += range(len(prompt), len(prompt) + len(output))
    assert [i for i, m in enumerate(row["loss_mask"]) if m] == sampled


def test_a_three_turn_conversation_with_a_max_steps_turn_and_a_ctrl_c_is_one_exact_row(
        tiny_engine, forced_policy, scripted, tmp_path, capsys, quiet_cache):
    policy = forced_policy(tiny_engine, [
        call("ls"), "Two folders and a README.",                 # turn 1: a call, then the answer
        call("cd", folder="notes"), call("ls"),                  # turn 2: stops at max_steps; ls's result is left
        ("interrupt", "Once upon a time there was", 3),          # turn 3: Ctrl-C after 3 sampled tokens: dropped
        call("pwd"), "You are in notes.",                        # turn 4: answers (the third kept turn)
    ])
    agent = make_agent(tiny_engine, policy)
    scripted(["what is here?", "go into notes and look", "tell me a story", "where am I?", "/bye"])
    assert repl(tiny_engine, agent, trajectory_dir=str(tmp_path / "traces")) == 0
    out = capsys.readouterr().out
    assert "[max_steps, 2 steps]" in out and "(interrupted: that exchange was dropped" in out

    (path,) = list_traces(tmp_path / "traces", include_partial=True)  # one conversation, one finished episode
    episode = read_episode(path)
    assert path.name.endswith(".atraj") and episode.end.status == "quit"
    messages = [(e.role, e.content) for e in episode.events if isinstance(e, Message)]
    assert messages == [("system", SYSTEM), ("user", "what is here?"), ("user", "go into notes and look"),
                        ("user", "where am I?")]  # the dropped exchange left nothing
    assert [g.result.finish_reason for g in policy.generations] == ["stop"] * 4 + ["cancelled"] + ["stop"] * 2
    calls = consumed(policy.generations)
    (row,) = export_rows(tmp_path / "traces", tmp_path / "data")
    assert_row_is_exactly_what_the_engine_consumed(row, calls)
    assert row["input_ids"][:len(calls[0][0])] == tiny_engine.encode(tiny_engine.render(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "what is here?"}], agent.tools))
    # turn 2's last tool result was consumed by the engine only in turn 4's first call: it opens that prompt
    results = [e for e in episode.events if isinstance(e, ToolResult)]
    left = results[2].token_ids
    turn4 = [e for e in episode.events if isinstance(e, ModelCall)][4]
    assert results[2].name == "ls" and turn4.prompt_token_ids[: len(left)] == left
    assert agent.session.ids == row["input_ids"][: len(agent.session.ids)]


def test_reset_and_load_end_the_episode_and_a_loaded_chat_is_the_next_ones_context(
        tiny_engine, forced_policy, scripted, tmp_path, capsys, quiet_cache):
    policy = forced_policy(tiny_engine, [call("ls"), "Here.", "Hello again."])
    agent = make_agent(tiny_engine, policy)
    saved = tmp_path / "chat"
    scripted(["what is here?", f"/save {saved}", "/reset", "/reset", f"/load {saved}", "and now?"])  # then Ctrl-D
    assert repl(tiny_engine, agent, trajectory_dir=str(tmp_path / "traces")) == 0
    err = capsys.readouterr().err
    assert err.count("(conversation recorded in ") == 2

    first, second = sorted((read_episode(p) for p in list_traces(tmp_path / "traces", include_partial=True)),
                           key=lambda e: e.header.created_at)
    assert (first.end.status, second.end.status) == ("reset", "quit")  # the empty conversation left nothing
    history = second.events[:5]  # the loaded chat as context: system, user, the call, its result, the answer
    assert [type(e).__name__ for e in history] == ["Message", "Message", "Message", "ToolResult", "Message"]
    assert history[2].role == "assistant" and [c.name for c in history[2].tool_calls] == ["ls"]
    assert history[3].call_id == history[2].tool_calls[0].id and history[4].content == "Here."
    saved_ids = json.loads((tmp_path / "chat.chat.json").read_text())["ids"]
    assert [e.token_ids for e in history] == [None, None, None, None, saved_ids]

    calls = consumed(policy.generations)
    rows = {r["episode_id"]: r for r in export_rows(tmp_path / "traces", tmp_path / "data")}
    assert_row_is_exactly_what_the_engine_consumed(rows[first.header.episode_id], calls[:2])
    # the loaded history is context (mask 0); only what was sampled after the load is trained on
    assert_row_is_exactly_what_the_engine_consumed(rows[second.header.episode_id], calls[2:])
    assert rows[second.header.episode_id]["input_ids"][: len(saved_ids)] == saved_ids
    chats = {c["episode_id"]: c for c in map(json.loads, (tmp_path / "data" / "chat.jsonl").read_text().splitlines())}
    roles = [(m["role"], [c["function"]["name"] for c in m.get("tool_calls", [])])
             for m in chats[second.header.episode_id]["messages"]]
    assert roles == [("system", []), ("user", []), ("assistant", ["ls"]), ("tool", []), ("assistant", []),
                     ("user", []), ("assistant", [])]
    assert cli.main(["traces", "show", second.path]) == 0
    shown = capsys.readouterr().out
    assert "assistant (history)" in shown and "→ ls({})" in shown and "and now?" in shown


def test_a_crash_leaves_the_conversation_a_part_that_resume_finishes(tiny_engine, forced_policy, scripted, tmp_path,
                                                                     quiet_cache):
    policy = forced_policy(tiny_engine, ["Hi."])
    agent = make_agent(tiny_engine, policy)
    scripted(["hello", RuntimeError("the REPL died")])
    with pytest.raises(RuntimeError, match="the REPL died"):
        repl(tiny_engine, agent, trajectory_dir=str(tmp_path / "traces"))
    (part,) = list_traces(tmp_path / "traces", include_partial=True)
    assert part.name.endswith(".atraj.part")
    finished = Recorder.resume(part).end(Reward(value=0.0, source="unjudged"), status="crashed")
    episode = read_episode(finished)
    assert [e.content for e in episode.events if isinstance(e, Message)] == [SYSTEM, "hello"]
    ((prompt, output),) = consumed(policy.generations)
    (only,) = [e for e in episode.events if isinstance(e, ModelCall)]
    assert (only.prompt_token_ids, only.output_token_ids) == (prompt, output)
