"""The Anthropic backend through the real `anthropic` SDK against a local server speaking the Messages wire
format: the agent loop runs tools on its calls and records token_exact=false episodes with usage and cost."""
import json

import pytest
from wire_server import anthropic_reply, anthropic_sse, backends_file, wire  # noqa: F401 (fixtures)

from tinygpt import cli
from tinygpt.router.anthropic_policy import AnthropicPolicy, anthropic_messages, anthropic_tool_choice
from tinygpt.router.backends import load_backends
from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.message_policy import RemoteError
from tinygpt.runtime.recording import record_episode
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import ModelCall, ToolCall, ToolResult
from tinygpt.traces.reader import list_traces, read_episode

CONFIG = """
[backends.claude]
kind = "anthropic"
model = "claude-sonnet-4-5"
base_url = "{url}"
api_key_env = "TG_TEST_ANTHROPIC_KEY"
enabled = true
retries = 0
"""


def agent_on(policy, **config) -> Agent:
    return Agent(None, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(**config),
                 policy=policy)


def test_the_agent_runs_claudes_tool_calls_and_records_usage_and_cost(wire, backends_file, monkeypatch, tmp_path,
                                                                     capsys):
    server = wire(anthropic_reply("Let me look.", [("toolu_01", "ls", '{"a": true}'), ("toolu_02", "pwd", "")]),
                  anthropic_reply("There is a notes folder.", usage=(60, 11)))
    backends_file(CONFIG.format(url=server.url))
    monkeypatch.setenv("TG_TEST_ANTHROPIC_KEY", "sk-ant-test-key-000000000000")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-key-must-not-be-sent")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "env-token-must-not-be-sent")
    policy = load_backends().policy("claude")
    agent = agent_on(policy, system="Be brief.", parallel_tool_calls=True)
    events = list(record_episode(agent.run("what is here?"), tmp_path, engine=None, agent=agent, task_id="claude",
                                 split="test"))
    assert [e.name for e in events if isinstance(e, ToolCall)] == ["ls", "pwd"]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.call_id for r in results] == ["toolu_01", "toolu_02"] and not any(r.is_error for r in results)
    assert "".join(e.text for e in events if isinstance(e, ev.TextDelta)) == "Let me look.There is a notes folder."
    first, second = [e for e in events if isinstance(e, ModelCall)]
    assert (first.finish_reason, first.model, first.token_exact) == ("tool_calls", "claude-sonnet-4-5-20250929",
                                                                     False)
    assert first.tool_calls == [ToolCall(id="toolu_01", name="ls", arguments={"a": True}),
                                ToolCall(id="toolu_02", name="pwd", arguments={})]
    assert (second.finish_reason, second.content) == ("stop", "There is a notes folder.")
    # usage: the API's counts, priced by the dated model's family (3 and 15 USD per million)
    assert (first.usage.backend, first.usage.input_tokens, first.usage.output_tokens, first.usage.attempts) == (
        "claude", 25, 7, 1)
    assert first.usage.cost_usd == pytest.approx((25 * 3 + 7 * 15) / 1e6)
    assert second.usage.cost_usd == pytest.approx((60 * 3 + 11 * 15) / 1e6) and first.latency_s > 0
    assert events[-1] == ev.TurnEnd("answer", 2)

    (path1, headers1, sent1), (path2, _, sent2) = server.requests
    assert path1 == "/v1/messages" and headers1["authorization"] == "Bearer sk-ant-test-key-000000000000"
    assert "must-not" not in json.dumps(headers1)
    assert sent1["system"] == "Be brief." and sent1["stream"] is True and sent1["model"] == "claude-sonnet-4-5"
    assert sent1["messages"] == [{"role": "user", "content": [{"type": "text", "text": "what is here?"}]}]
    assert sent1["tool_choice"] == {"type": "auto"}
    assert {t["name"] for t in sent1["tools"]} == set(agent.toolset.names)
    assert all("input_schema" in t for t in sent1["tools"])
    # the history went back as Anthropic's: tool_use blocks, then both results in one user turn
    assert sent2["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_01", "name": "ls", "input": {"a": True}},
        {"type": "tool_use", "id": "toolu_02", "name": "pwd", "input": {}}]}
    assert [(b["type"], b["tool_use_id"]) for b in sent2["messages"][2]["content"]] == [
        ("tool_result", "toolu_01"), ("tool_result", "toolu_02")]
    assert sent2["messages"][2]["content"][0]["content"] == results[0].content

    (trace,) = list_traces(tmp_path)
    episode = read_episode(trace)
    assert [type(e).__name__ for e in episode.events] == ["Message", "Message", "ModelCall", "ToolResult",
                                                          "ToolResult", "ModelCall"]
    recorded = [e for e in episode.events if isinstance(e, ModelCall)]
    assert recorded == [first, second] and episode.header.model_fingerprint == f"remote:{server.url}#claude-sonnet-4-5"
    assert "sk-ant" not in trace.read_text()
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "160")  # the panels' facts fit on one line
    assert cli.main(["traces", "show", str(trace)]) == 0
    shown = capsys.readouterr().out
    assert "not token-exact" in shown and "There is a notes folder." in shown
    assert "claude 25 in / 7 out" in shown and "$0.000180" in shown


def test_openai_messages_map_to_anthropic_turns():
    messages = [
        {"role": "system", "content": "one"}, {"role": "system", "content": "two"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "cat", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a b"},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: not JSON"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": ""},  # an empty answer: the API refuses empty blocks
        {"role": "user", "content": "hello?"},
    ]
    system, turns = anthropic_messages(messages)
    assert system == "one\n\ntwo"
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": "c1", "name": "ls", "input": {}},
                                   {"type": "tool_use", "id": "c2", "name": "cat", "input": {}}]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result", "text", "text"]
    assert [b.get("text") for b in turns[2]["content"][2:]] == ["and now?", "hello?"]


@pytest.mark.parametrize("choice, parallel, want", [
    ("auto", True, {"type": "auto"}), ("none", False, {"type": "none"}),
    ("required", True, {"type": "any"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "ls"}}, False,
     {"type": "tool", "name": "ls", "disable_parallel_tool_use": True}),
])
def test_tool_choice_maps_to_anthropics(choice, parallel, want):
    assert anthropic_tool_choice(choice, parallel) == want


def test_max_tokens_stops_named_tool_choice_and_no_parallel_are_sent_and_no_sampling_knobs(wire):
    server = wire(anthropic_reply("ok"))
    agent = agent_on(AnthropicPolicy("claude-haiku-4-5", "k", base_url=server.url), tool_choice="ls",
                     parallel_tool_calls=False,
                     sampling=SamplingParams(temperature=0.3, top_p=0.8, top_k=5, max_tokens=77, seed=3,
                                             stop_strings=("END",)))
    assert list(agent.run("x"))[-1] == ev.TurnEnd("answer", 1)
    (_, _, sent), = server.requests
    assert sent["max_tokens"] == 77 and sent["stop_sequences"] == ["END"] and "system" not in sent
    # the API refuses temperature, top_p and top_k at any value (version 2026-10-21); seed has no equal
    assert not {"temperature", "top_p", "top_k", "seed"} & set(sent)
    assert sent["tool_choice"] == {"type": "tool", "name": "ls", "disable_parallel_tool_use": True}
    plain = AnthropicPolicy("m", "k", base_url=server.url).request([], [], "auto", True, SamplingParams())
    assert "stop_sequences" not in plain and "tools" not in plain and "tool_choice" not in plain


def test_a_call_cut_off_by_max_tokens_is_not_run(wire):
    server = wire(anthropic_reply("", [("toolu_9", "cat", '{"file_na')], stop="max_tokens"))
    events = list(agent_on(AnthropicPolicy("m", "k", base_url=server.url)).run("x"))
    assert not [e for e in events if isinstance(e, ToolCall)]
    assert [e for e in events if isinstance(e, ModelCall)][0].finish_reason == "truncated"
    assert events[-1] == ev.TurnEnd("truncated_call", 1)


@pytest.mark.parametrize("body, says, retry", [
    (anthropic_reply("cut")[: -len(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')]
     .rsplit(b"event: message_delta", 1)[0], "without a stop_reason", False),
    (anthropic_sse([{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]),
     "Overloaded", True),
])
def test_a_bad_or_failed_stream_is_one_line_remote_error(wire, body, says, retry):
    server = wire(body)
    reply = AnthropicPolicy("m", "k", base_url=server.url).reply(
        [{"role": "user", "content": "x"}], [], tool_choice="auto", parallel_tool_calls=True, params=SamplingParams())
    with pytest.raises(RemoteError, match=says) as failed:
        list(reply)
    assert failed.value.retryable is retry and "\n" not in str(failed.value) and reply.result is None
