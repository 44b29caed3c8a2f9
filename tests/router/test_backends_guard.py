"""Guard rails of a backend, through the real SDKs against local servers: retries with backoff on timeouts, 5xx,
429 and dropped connections (attempts counted on the server), never on a 4xx; fallback with a note, recorded;
redaction of outgoing text."""
import json
import random

import pytest
from wire_server import anthropic_reply, anthropic_sse, backends_file, openai_reply, wire  # noqa: F401 (fixtures)

from tinygpt.router.backends import load_backends
from tinygpt.router.guard import Backoff
from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.recording import record_episode
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import ModelCall, ToolCall
from tinygpt.traces.reader import list_traces, read_episode

OVERLOADED = ("status", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
SERVER_ERROR = ("status", 500, {"type": "error", "error": {"type": "api_error", "message": "Internal error"}})
BAD_REQUEST = ("status", 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad tools"}})


def config(claude_url: str, local_url: str | None = None, retries: int = 3, timeout: float = 30, **extra) -> str:
    text = f"""
[backends.claude]
kind = "anthropic"
model = "claude-haiku-4-5"
base_url = "{claude_url}"
api_key_env = "TG_TEST_KEY"
enabled = true
retries = {retries}
timeout = {timeout}
backoff_s = 0.25
max_backoff_s = 1.0
{"fallback = 'workstation'" if local_url else ""}
{"".join(f"{k} = {json.dumps(v)}" + chr(10) for k, v in extra.items())}
"""
    if local_url:
        text += f"""
[backends.workstation]
kind = "openai-compatible"
model = "qwen3-local"
base_url = "{local_url}/v1"
enabled = true
retries = 0
"""
    return text


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TG_TEST_KEY", "sk-ant-test-0123456789abcdef")


def guarded_agent(sleeps: list, name: str = "claude", **agent) -> Agent:
    policy = load_backends().policy(name, sleep=sleeps.append, rng=random.Random(7))
    return Agent(None, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(**agent), policy=policy)


def test_5xx_and_overload_are_retried_with_backoff_then_the_answer_counts_its_attempts(wire, backends_file, key):
    server = wire(SERVER_ERROR, OVERLOADED, anthropic_reply("", [("toolu_1", "ls", "{}")]), anthropic_reply("done"))
    backends_file(config(server.url))
    sleeps = []
    events = list(guarded_agent(sleeps).run("go"))
    assert [e.name for e in events if isinstance(e, ToolCall)] == ["ls"] and events[-1] == ev.TurnEnd("answer", 2)
    assert len(server.requests) == 4  # 2 failed, the call, the answer
    rng = random.Random(7)
    assert sleeps == pytest.approx([Backoff(0.25, 1.0).delay(n, rng) for n in (0, 1)])
    assert 0.125 <= sleeps[0] <= 0.25 and 0.25 <= sleeps[1] <= 0.5
    first, second = [e for e in events if isinstance(e, ModelCall)]
    assert (first.usage.attempts, second.usage.attempts) == (3, 1) and first.usage.note == ""
    assert first.usage.cost_usd == pytest.approx((25 * 1 + 7 * 5) / 1e6)  # haiku 4.5: 1 and 5 USD per million


def test_a_4xx_is_not_retried_and_the_fallback_answers_with_a_note_that_is_recorded(wire, backends_file, key,
                                                                                  tmp_path):
    claude = wire(BAD_REQUEST)
    local = wire(openai_reply("answered locally", model="qwen3-local"))
    backends_file(config(claude.url, local.url))
    sleeps = []
    agent = guarded_agent(sleeps)
    events = list(record_episode(agent.run("hi"), tmp_path, engine=None, agent=agent, task_id="fb", split="test"))
    assert len(claude.requests) == 1 and sleeps == [] and len(local.requests) == 1
    (call,) = [e for e in events if isinstance(e, ModelCall)]
    assert call.content == "answered locally" and call.model == "qwen3-local"
    note = call.usage.note
    assert note.startswith(f"backend claude failed: {claude.url} answered 400: bad tools (1 attempt); answered by "
                           "the fallback qwen3-local")
    assert [e.message for e in events if isinstance(e, ev.Error)] == [note]
    assert (call.usage.backend, call.usage.attempts, call.usage.input_tokens) == ("workstation", 2, 40)
    assert call.usage.cost_usd is None  # no price for the local model
    (recorded,) = [e for e in read_episode(list_traces(tmp_path)[0]).events if isinstance(e, ModelCall)]
    assert recorded.usage == call.usage
    # the fallback got the same conversation, in OpenAI's format, with the tools
    sent = local.requests[0][2]
    assert sent["messages"] == [{"role": "user", "content": "hi"}] and sent["stream_options"] == {
        "include_usage": True}


def test_timeouts_are_retried_then_without_a_fallback_the_turn_ends_with_one_line(wire, backends_file, key):
    server = wire("hang", "hang", "hang")
    backends_file(config(server.url, retries=2, timeout=0.4))
    sleeps = []
    events = list(guarded_agent(sleeps).run("hi"))
    assert len(server.requests) == 3 and len(sleeps) == 2
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert error.message == (f"{server.url} did not answer within 0.4 s (timed out); raise the "
                             "backend's timeout (3 attempts)")
    assert events[-1] == ev.TurnEnd("remote_error", 1)


def test_a_failure_after_text_was_streamed_is_not_retried(wire, backends_file, key):
    start = anthropic_reply("Hello there")
    cut = start.split(b"event: content_block_stop")[0] + anthropic_sse(
        [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    server = wire(cut, anthropic_reply("never asked for"))
    backends_file(config(server.url))
    sleeps = []
    events = list(guarded_agent(sleeps).run("hi"))
    assert "".join(e.text for e in events if isinstance(e, ev.TextDelta)) == "Hello there"
    assert len(server.requests) == 1 and events[-1] == ev.TurnEnd("remote_error", 1)
    assert "Overloaded" in [e for e in events if isinstance(e, ev.Error)][0].message


@pytest.mark.parametrize("answers, attempts, ends", [
    ([("status", 429, {"error": {"message": "slow down"}}), ("status", 503, {"error": {"message": "busy"}}),
      "ok"], 3, "answer"),
    ([("status", 401, {"error": {"message": "bad key"}})], 1, "remote_error"),
    ([("status", 404, {"error": {"message": "no such model"}})], 1, "remote_error"),
])
def test_openai_backend_retries_429_and_5xx_never_401_or_404(wire, backends_file, monkeypatch, answers, attempts,
                                                          ends):
    server = wire(*[openai_reply("fine") if a == "ok" else a for a in answers])
    monkeypatch.setenv("TG_OPENAI_KEY", "sk-test-abcdefghijklmnop")
    backends_file(f"""
[backends.gpt]
kind = "openai"
model = "gpt-4o-mini"
base_url = "{server.url}/v1"
api_key_env = "TG_OPENAI_KEY"
enabled = true
retries = 4
""")
    sleeps = []
    events = list(guarded_agent(sleeps, "gpt").run("hi"))
    assert len(server.requests) == attempts and len(sleeps) == attempts - 1
    assert events[-1].reason == ends


def test_outgoing_text_is_redacted_and_the_local_conversation_keeps_it(wire, backends_file, key):
    server = wire(anthropic_reply("", [("toolu_1", "cat", '{"file_name": "mail to bob@example.com"}')]),
                  anthropic_reply("ok"))
    backends_file(config(server.url) + '\n[redact]\nrules = ["api_key", "email"]\npatterns = ["ACME-[0-9]+"]\n')
    agent = guarded_agent([], system="key sk-proj-abcdefghijklmnopqrstuvwx")
    list(agent.run("write to alice@example.org about ticket ACME-4411"))
    first, second = (body for _, _, body in server.requests)
    assert first["system"] == "key [redacted:api_key]"
    assert first["messages"][0]["content"][0]["text"] == ("write to [redacted:email] about ticket "
                                                          "[redacted:pattern1]")
    assert second["messages"][1]["content"][0]["input"] == {"file_name": "mail to [redacted:email]"}
    assert "alice@example.org" in agent.transcript.messages[1]["content"]  # only what leaves is redacted


def test_a_backend_with_redact_false_sends_text_as_it_is(wire, backends_file, key):
    server = wire(anthropic_reply("ok"))
    backends_file(config(server.url, redact=False))
    list(guarded_agent([]).run("to alice@example.org"))
    assert server.requests[0][2]["messages"][0]["content"][0]["text"] == "to alice@example.org"


def test_a_failing_backend_falls_back_to_the_model_loaded_here(wire, backends_file, key, tiny_model_dir, capsys,
                                                               monkeypatch, tmp_path):
    """fallback = "local": `tinygpt agent --backend claude --model DIR` answers with DIR's model when Claude
    cannot; its call runs the tools like any other, and the note is shown and recorded."""
    import io

    from tinygpt import cli

    server = wire(SERVER_ERROR, SERVER_ERROR)
    backends_file(config(server.url, retries=1).replace("backoff_s = 0.25", "backoff_s = 0.0") +
                  'fallback = "local"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("list the files\n"))
    argv = ["agent", "--backend", "claude", "--model", str(tiny_model_dir), "--tool-choice", "ls", "--max-steps",
            "1", "--max-tokens", "40", "--trajectory-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert len(server.requests) == 2 and "→ ls(" in out and "[max_steps, 1 step]" in out
    assert f"! backend claude failed: {server.url} answered 500: Internal error (2 attempts); answered by the " \
           "fallback " in out
    (call,) = [e for e in read_episode(list_traces(tmp_path)[0]).events if isinstance(e, ModelCall)]
    assert (call.usage.backend, call.usage.attempts, call.usage.cost_usd) == ("local", 3, 0.0)
    assert call.tool_calls[0].name == "ls" and call.token_exact is False and call.usage.note.startswith("backend")
