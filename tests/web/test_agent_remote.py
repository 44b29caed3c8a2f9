"""The agent loop driven by a remote model: tinygpt's own server (tiny random model) on 127.0.0.1, reached
through the official `openai` SDK (OpenAIPolicy), on the embedded virtual file system; recorded with
token_exact false, read back, shown by `tinygpt traces show`, and exported by traces->data as chat only.
Also `tinygpt agent --remote` itself: its key from an environment variable, its one-line errors."""
import io
import json

import pytest

from tinygpt import cli
from tinygpt.evals.world_tasks import TASKS
from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.policy import ScriptedPolicy
from tinygpt.runtime.recording import record_episode
from tinygpt.runtime.remote_policy import OpenAIPolicy
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult
from tinygpt.traces.reader import list_traces, read_episode
from tinygpt.traces.to_data import traces_to_data


def remote_agent(url: str, **config) -> Agent:
    config.setdefault("sampling", SamplingParams(max_tokens=60))
    return Agent(None, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(**config),
                 policy=OpenAIPolicy(url, "tiny", max_retries=0))


def recorded(events):
    return [e for e in events if isinstance(e, (Message, ModelCall, ToolResult))]


def test_remote_turns_run_the_tools_and_are_recorded_shown_and_exported_as_chat_only(server, tiny_engine, tmp_path,
                                                                                     capsys):
    traces, url = tmp_path / "traces", server.url + "/v1"
    agent = remote_agent(url, tool_choice="ls", max_steps=2, system="You list files.")
    events = list(record_episode(agent.run("What is in the top folder?"), traces, engine=None, agent=agent,
                                 task_id="ls-top", split="train", episode_id="remote-tools"))
    calls = [e for e in events if isinstance(e, ModelCall)]
    assert len(calls) == 2 and events[-1] == ev.TurnEnd("max_steps", 2)
    for call in calls:
        assert (call.token_exact, call.prompt_token_ids, call.output_token_ids, call.logprobs) == (False, None,
                                                                                                    None, None)
        assert call.model == "tiny" and call.finish_reason == "tool_calls"
        assert [c.name for c in call.tool_calls] == ["ls"] and set(call.tool_calls[0].arguments) <= {"a"}
    assert [e for e in events if isinstance(e, ToolCall)] == [c.tool_calls[0] for c in calls]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.call_id for r in results] == [c.tool_calls[0].id for c in calls]
    assert all("notes" in r.content and not r.is_error and r.token_ids is None for r in results)
    # what the server is sent next: the whole conversation, each call answered by its id
    assert [m["role"] for m in agent.transcript.messages] == ["system", "user", "assistant", "tool", "assistant",
                                                              "tool"]
    assert agent.transcript.messages[3]["tool_call_id"] == results[0].call_id

    episode = read_episode(list_traces(traces)[0])
    assert episode.events == recorded(events)
    h = episode.header
    assert (h.model, h.model_fingerprint, h.adapter_version, h.tokenizer_hash, h.chat_template_hash) == (
        "tiny", f"remote:{url}#tiny", None, "", "")
    assert [t.name for t in h.tools] == agent.toolset.names and episode.end.status == "max_steps"

    # a text answer streams as TextDelta events (tools still offered, none called)
    talker = remote_agent(url, tool_choice="none", sampling=SamplingParams(max_tokens=12))
    events = list(record_episode(talker.run("Say hello."), traces, engine=None, agent=talker, task_id="hello",
                                 split="train", episode_id="remote-text"))
    (answer,) = [e for e in events if isinstance(e, ModelCall)]
    streamed = "".join(e.text for e in events if isinstance(e, ev.TextDelta))
    assert streamed == answer.content == answer.text and answer.tool_calls == [] and streamed
    assert events[-1] in (ev.TurnEnd("answer", 1), ev.TurnEnd("length", 1))

    # a local, token-exact episode next to them: the export writes its row and only chat for the remote ones
    task = TASKS[0]
    local = Agent(tiny_engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(),
                  policy=ScriptedPolicy(tiny_engine, list(task.teacher)))
    list(record_episode(local.run(task.prompt), traces, engine=tiny_engine, agent=local, task_id=task.id,
                        split="train", episode_id="local-exact"))
    report = traces_to_data([traces], tmp_path / "data")
    assert (report.written, report.rows, report.chat_only) == (3, 1, 2)
    rows = [json.loads(line) for line in (tmp_path / "data" / "rows.jsonl").read_text().splitlines()]
    assert [r["episode_id"] for r in rows] == ["local-exact"] and rows[0]["input_ids"] == local.transcript.ids
    chats = {c["episode_id"]: c for c in map(json.loads, (tmp_path / "data" / "chat.jsonl").read_text().splitlines())}
    messages = chats["remote-tools"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert messages[2]["tool_calls"][0]["id"] == messages[3]["tool_call_id"] == results[0].call_id
    assert chats["remote-text"]["messages"][-1] == {"role": "assistant", "content": answer.content}

    assert cli.main(["traces", "show", str(traces / "remote-tools.atraj")]) == 0
    shown = capsys.readouterr().out
    assert f"remote:{url}#tiny" in shown and "→ ls(" in shown and shown.count("not token-exact") == 2
    assert "ids" not in shown.replace("no ids", "")  # nothing pretends to count ids it does not have
    assert cli.main(["traces", "stats", str(traces)]) == 0
    assert "not token-exact  2" in " ".join(capsys.readouterr().out.split("\n"))
    assert cli.main(["traces", "ls", str(traces)]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:4]}
    assert "- (no ids)" in listed["remote-tools"] and "- (no ids)" not in listed["local-exact"]


def test_a_call_cut_off_by_max_tokens_is_not_run_and_the_conversation_goes_on(server):
    # the grammar's head of a cat call is 16 tokens; 2 more cannot close its file_name string and the call
    agent = remote_agent(server.url + "/v1", tool_choice="cat", max_steps=1, sampling=SamplingParams(max_tokens=18))
    events = list(agent.run("show a file"))
    (call,) = [e for e in events if isinstance(e, ModelCall)]
    assert (call.finish_reason, call.tool_calls) == ("truncated", [])
    assert events[-2].message.startswith("the tool call was cut off") and events[-1] == ev.TurnEnd("truncated_call", 1)
    assert not [e for e in events if isinstance(e, (ToolCall, ToolResult))]
    assert agent.transcript.messages[-1] == {"role": "assistant", "content": call.content}  # no unanswered call
    events = list(agent.run("and again"))  # the server takes that history: the model calls again, no remote error
    assert events[-1].reason in ("truncated_call", "max_steps")


def test_an_unknown_model_is_one_line_naming_what_the_server_serves(server):
    events = list(Agent(None, fs_toolset(open_filesystem("fs:virtual")), AgentConfig(),
                        policy=OpenAIPolicy(server.url + "/v1", "no-such-model", max_retries=0)).run("hi"))
    assert events[-1] == ev.TurnEnd("remote_error", 1)
    assert "answered 404 for model 'no-such-model'" in events[-2].message and "'tiny'" in events[-2].message


@pytest.fixture(scope="module")
def key_server(start_server):
    return start_server(api_key="s3cret-test-key")


def agent_cli(monkeypatch, capsys, argv, stdin, **env):
    """Run `tinygpt agent ...` here with `stdin` as input."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["agent", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_agent_cli_remote_with_a_key_from_the_environment_records_the_turn(key_server, monkeypatch, capsys, tmp_path):
    argv = ["--remote", key_server.url + "/v1", "--model", "tiny", "--api-key-env", "TG_TEST_KEY", "--tool-choice",
            "ls", "--max-steps", "1", "--trajectory-dir", str(tmp_path)]
    code, out, err = agent_cli(monkeypatch, capsys, argv, "list the files\n/save chat\nand again\n/quit\n",
                               TG_TEST_KEY="s3cret-test-key")
    assert code == 0, err
    assert f"remote model tiny at {key_server.url}/v1 (OpenAI-compatible)" in err
    assert "→ ls(" in out and "[max_steps, 1 step]" in out
    assert "error: /save keeps a local model's KV cache" in out
    (path,) = list_traces(tmp_path)
    assert "s3cret-test-key" not in out + err + path.read_text()
    episode = read_episode(path)  # the whole conversation (two turns), ended by /quit
    assert episode.end.status == "quit" and f"(conversation recorded in {path})" in err
    assert [type(e).__name__ for e in episode.events] == ["Message", "ModelCall", "ToolResult"] * 2
    assert [e.content for e in episode.events if isinstance(e, Message)] == ["list the files", "and again"]

    code, out, err = agent_cli(monkeypatch, capsys, argv, "list the files\n", TG_TEST_KEY="wrong")
    assert code == 0 and "Traceback" not in out + err
    assert f"! {key_server.url}/v1 refused the API key (401: missing or wrong API key" in out
    assert "[remote_error, 1 step]" in out


@pytest.mark.parametrize("argv, says", [
    (["--remote", "http://127.0.0.1:9/v1"], "--remote needs --model NAME"),
    (["--remote", "http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "TG_UNSET_VAR"],
     "--api-key-env TG_UNSET_VAR: that environment variable is not set"),
    (["--timeout", "5"], "--api-key-env and --timeout go with --remote URL"),
    (["--remote", "127.0.0.1:9", "--model", "m"], "is not an http(s) URL"),
    (["--remote", "http://127.0.0.1:9/v1", "--model", "m", "--grammar-backend", "outlines"],
     "--grammar-backend is for a local model"),
])
def test_agent_cli_remote_flag_errors_are_one_line_and_exit_2(monkeypatch, capsys, argv, says):
    monkeypatch.delenv("TG_UNSET_VAR", raising=False)
    with pytest.raises(SystemExit) as done:
        cli.main(["agent", *argv])
    err = capsys.readouterr().err
    assert done.value.code == 2 and says in err and err.strip().splitlines()[-1].startswith("tinygpt agent: error:")
