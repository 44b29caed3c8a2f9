"""The agent loop driven by OpenAIPolicy against small real HTTP servers on 127.0.0.1 that answer as scripted:
calls the model should not have made, replies that are not valid, a server that never answers, none at all.

(The loop against tinygpt's own server, recorded and exported, is tests/web/test_agent_remote.py.)
"""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.message_policy import RemoteError
from tinygpt.runtime.recording import record_episode
from tinygpt.runtime.remote_policy import OpenAIPolicy, remote_fingerprint, server_address
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult
from tinygpt.traces.reader import list_traces, read_episode


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "scripted-7b",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def answer(content: str = "", calls=(), finish: str | None = None) -> list[dict]:
    """The chunks of one streamed reply: content, then each call's head and its arguments in two pieces."""
    out = [chunk({"role": "assistant", "content": content})]
    for i, (call_id, name, arguments) in enumerate(calls):
        out.append(chunk({"tool_calls": [{"index": i, "id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    out.append(chunk({}, finish or ("tool_calls" if calls else "stop")))
    return out


def sse(chunks: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class ScriptedServer:
    """A real HTTP server: each POST gets the next scripted body (bytes, sent as an event stream), for None no
    answer, and for ("partial", bytes) those bytes and then nothing more, until the server stops (or, for a
    partial answer, the client hangs up). `requests` holds the JSON bodies it received."""

    def __init__(self, bodies: list[bytes | None]):
        self.bodies, self.requests, self.release = list(bodies), [], threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = server.bodies.pop(0)
                if body is None:
                    server.release.wait()
                    return
                if isinstance(body, tuple):  # headers and the start of a stream; the rest never comes
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(body[1])
                    self.wfile.flush()
                    server.release.wait()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(*bodies):
        servers.append(ScriptedServer(list(bodies)))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def remote_agent(url: str, **config) -> Agent:
    policy = OpenAIPolicy(url, "scripted", max_retries=0, timeout=config.pop("timeout", 30))
    return Agent(None, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig(**config),
                 policy=policy)


def test_unusable_calls_are_answered_with_errors_the_usable_one_runs_and_the_model_gets_another_step(scripted,
                                                                                                   tmp_path):
    calls = [("c1", "rm_everything", "{}"), ("c2", "cd", '{"folder": 3}'), ("c3", "ls", '{"a": true}'),
             ("c4", "cat", "not json")]
    server = scripted(sse(answer("let me look", calls)), sse(answer("all done")))
    agent = remote_agent(server.url)
    events = list(record_episode(agent.run("what is here?"), tmp_path, engine=None, agent=agent, task_id="bad-calls",
                                 split="test"))
    errors = [e.message for e in events if isinstance(e, ev.Error)]
    assert len(errors) == 3 and all(m.startswith("Error: your tool call could not be used: ") for m in errors)
    assert "unknown tool 'rm_everything'" in errors[0]
    assert "arguments of cd do not match its schema" in errors[1]
    assert "arguments of cat are not valid JSON" in errors[2] and "'not json'" in errors[2]
    first, second = [e for e in events if isinstance(e, ModelCall)]
    assert first.tool_calls == [ToolCall(id="c3", name="ls", arguments={"a": True})]  # only what can run
    assert (first.finish_reason, first.text, first.model, first.token_exact) == ("tool_calls", "let me look",
                                                                                 "scripted-7b", False)
    assert [e for e in events if isinstance(e, ToolCall)] == first.tool_calls
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(r.call_id, r.name, r.is_error) for r in results] == [
        ("", "invalid_call", True), ("", "invalid_call", True), ("c3", "ls", False), ("", "invalid_call", True)]
    assert "notes" in results[2].content  # it ran: the world's top folder
    assert second.content == "all done" and events[-1] == ev.TurnEnd("answer", 2)
    # the server was told about every call, each answered by its id, in the order it wrote them
    history = server.requests[1]["messages"]
    assert [c["id"] for c in history[1]["tool_calls"]] == ["c1", "c2", "c3", "c4"]
    assert history[1]["tool_calls"][3]["function"] == {"name": "cat", "arguments": "not json"}
    assert [(m["role"], m["tool_call_id"]) for m in history[2:]] == [("tool", c[0]) for c in calls]
    assert [m["content"] for m in history[2:]] == [r.content for r in results]
    episode = read_episode(list_traces(tmp_path)[0])
    assert episode.events == [e for e in events if isinstance(e, (Message, ModelCall, ToolResult))]
    assert episode.end.status == "answer"


def test_calls_the_tool_choice_or_parallel_setting_forbid_are_not_run(scripted):
    """What a local model's grammar rules out, a server may still send: it is refused as any unusable call."""
    calls = [("a", "ls", "{}"), ("b", "ls", "{}"), ("c", "cd", '{"folder": "notes"}')]
    server = scripted(sse(answer("", calls)), sse(answer("", [("d", "pwd", "{}")])), sse(answer("ok")))
    agent = remote_agent(server.url, tool_choice="ls", parallel_tool_calls=False, max_steps=2)
    events = list(agent.run("go"))
    assert [e.name for e in events if isinstance(e, ToolCall)] == ["ls"]
    assert [e.message.split(": ", 2)[-1] for e in events if isinstance(e, ev.Error)] == [
        "parallel tool calls are off: make one call per step", "tool_choice names 'ls': only that tool may be called",
        "tool_choice names 'ls': only that tool may be called", "stopped after 2 steps without an answer"]
    assert len(server.requests) == 2 and events[-1] == ev.TurnEnd("max_steps", 2)
    talker = remote_agent(server.url, tool_choice="none")
    server.bodies[:0] = [sse(answer("", [("e", "ls", "{}")]))]
    events = list(talker.run("talk"))
    assert not [e for e in events if isinstance(e, ToolCall)] and events[-1] == ev.TurnEnd("answer", 2)
    assert "tool_choice is none: no tool may be called" in [e for e in events if isinstance(e, ev.Error)][0].message


def test_what_is_sent_tool_choice_sampling_and_no_key_of_the_environment(scripted, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leave")
    server = scripted(sse(answer("hi")))
    agent = remote_agent(server.url, tool_choice="ls", parallel_tool_calls=False, system="be brief",
                         sampling=SamplingParams(temperature=0.5, top_p=0.9, top_k=7, max_tokens=33, seed=4))
    list(agent.run("hello"))
    (sent,) = server.requests
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "ls"}}
    assert sent["parallel_tool_calls"] is False and sent["stream"] is True
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["max_tokens"], sent["seed"]) == (0.5, 0.9, 7,
                                                                                                   33, 4)
    assert "min_p" not in sent  # OpenAI's own API does not know it: sent only when set
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert [t["function"]["name"] for t in sent["tools"]] == agent.toolset.names


@pytest.mark.parametrize("body, says", [
    (b"data: {not json\n\n", "not valid (not JSON"),
    (sse([chunk({"content": "cut"})])[: -len(b"data: [DONE]\n\n")], "without a finish_reason"),
    (b"<html>a proxy's error page</html>", "without a finish_reason"),
    (sse([chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"arguments": "{}"}}]}, "tool_calls")]),
     "a tool call without a function name"),
    (sse([{"id": "x", "choices": [{"index": 0, "delta": "oops", "finish_reason": None}]}]), "not a chat completion"),
])
def test_a_reply_that_is_not_valid_ends_the_turn_with_one_line_and_the_conversation_goes_on(scripted, body, says):
    server = scripted(body, sse(answer("back again")))
    agent = remote_agent(server.url)
    events = list(agent.run("hi"))
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert says in error.message and "\n" not in error.message and server.url in error.message
    assert events[-1] == ev.TurnEnd("remote_error", 1) and not [e for e in events if isinstance(e, ModelCall)]
    events = list(agent.run("hello?"))
    assert events[-1] == ev.TurnEnd("answer", 1)
    assert [m["role"] for m in server.requests[1]["messages"]] == ["user", "user"]


@pytest.mark.parametrize("retries, says", [(0, "(timed out)"), (1, "(timed out, 2 attempts)")])
def test_a_server_that_never_answers_times_out_with_one_line(scripted, retries, says):
    server = scripted(*[None] * (retries + 1))
    agent = Agent(None, fs_toolset(open_filesystem("fs:virtual")), AgentConfig(),
                  policy=OpenAIPolicy(server.url, "m", timeout=0.5, max_retries=retries))
    events = list(agent.run("hi"))
    assert events[-2].message == f"{server.url} did not answer within 0.5 s {says}; check the server or raise the " \
                                 "timeout (--timeout)"
    assert events[-1] == ev.TurnEnd("remote_error", 1) and len(server.requests) == retries + 1


def test_stopping_mid_answer_closes_the_stream_and_the_turn_can_be_dropped(scripted, tmp_path):
    """As the REPL's Ctrl-C: the consumer stops at the first streamed text; nothing waits for the rest."""
    server = scripted(("partial", b"data: " + json.dumps(chunk({"content": "Hel"})).encode() + b"\n\n"),
                      sse(answer("fine")))
    agent = remote_agent(server.url)
    mark = agent.transcript.mark()
    run = agent.run("hi")
    events = record_episode(run, tmp_path, engine=None, agent=agent, task_id="stop", split="test")
    for event in events:
        if isinstance(event, ev.TextDelta):
            assert event.text == "Hel"
            break
    events.close()  # as tinygpt agent does: both return at once, the connection closed, not read to its end
    run.close()
    assert list_traces(tmp_path) == [] and len(list_traces(tmp_path, include_partial=True)) == 1
    agent.transcript.rollback(mark)
    assert agent.transcript.messages == []
    assert list(agent.run("again"))[-1] == ev.TurnEnd("answer", 1)
    assert server.requests[1]["messages"] == [{"role": "user", "content": "again"}]


def test_nothing_listening_is_one_line_and_the_episode_ends_remote_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = remote_agent(f"http://127.0.0.1:{port}/v1")
    events = list(record_episode(agent.run("hi"), tmp_path, engine=None, agent=agent, task_id="down", split="test"))
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert error.message.startswith(f"cannot reach http://127.0.0.1:{port}/v1 (") and "refused" in error.message
    episode = read_episode(list_traces(tmp_path)[0])
    assert episode.end.status == "remote_error" and [e.role for e in episode.events] == ["user"]
    assert episode.header.model_fingerprint == f"remote:http://127.0.0.1:{port}/v1#scripted"


def test_remote_addresses_drop_credentials_query_and_trailing_slash():
    assert server_address("https://me:secret@Example.com:8443/v1/?k=1#x") == "https://example.com:8443/v1"
    assert remote_fingerprint("http://[::1]:8000/v1/", "m") == "remote:http://[::1]:8000/v1#m"
    with pytest.raises(ValueError, match="not an http"):
        OpenAIPolicy("127.0.0.1:8000", "m")


def test_reply_raises_remote_error_itself(scripted):
    """The policy alone (as the router will use it): a RemoteError, and the partial text already given."""
    server = scripted(sse([chunk({"content": "par"}), chunk({"content": "tial"})])[: -len(b"data: [DONE]\n\n")])
    reply = OpenAIPolicy(server.url, "m", max_retries=0).reply(
        [{"role": "user", "content": "x"}], [], tool_choice="auto", parallel_tool_calls=True, params=SamplingParams())
    got = []
    with pytest.raises(RemoteError, match="without a finish_reason"):
        for text in reply:
            got.append(text)
    assert got == ["par", "tial"] and reply.result is None
