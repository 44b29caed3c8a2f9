"""A small real HTTP server on 127.0.0.1 that answers as scripted, in Anthropic's Messages wire format (SSE with
`event:` lines) or OpenAI's chat.completions stream, for the backend tests. Each POST takes the next scripted
answer: bytes to stream, ("status", code, body) for an error response, or "hang" for no answer at all (until the
server stops). `requests` keeps (path, headers with lower-case names, JSON body) of every POST, so attempts can be
counted. The fixtures `wire` and `backends_file` are imported by the backend tests."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def anthropic_sse(events: list[dict]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def anthropic_reply(text: str = "", calls=(), stop: str | None = None, model: str = "claude-sonnet-4-5-20250929",
                    usage=(25, 7)) -> bytes:
    """A streamed Messages reply: message_start, a text block in two deltas, each tool_use block with its input
    in two input_json_delta fragments, message_delta (stop reason, output tokens), message_stop."""
    events = [{"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": usage[0], "output_tokens": 1}}}, {"type": "ping"}]
    index = 0
    if text:
        events.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            events.append({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": piece}})
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    for i, (call_id, name, arguments) in enumerate(calls, start=index):
        events.append({"type": "content_block_start", "index": i,
                       "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}})
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": piece}})
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop or ("tool_use" if calls else "end_turn"),
                                                      "stop_sequence": None},
                   "usage": {"output_tokens": usage[1]}})
    events.append({"type": "message_stop"})
    return anthropic_sse(events)


def openai_chunk(delta: dict, finish: str | None = None, model: str = "gpt-4o-mini-2024-07-18") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def openai_reply(text: str = "", calls=(), finish: str | None = None, usage=(40, 9),
                 model: str = "gpt-4o-mini-2024-07-18") -> bytes:
    """A streamed chat completion: content, each call's head then its arguments in two deltas, the finish
    chunk, then the usage chunk (as `stream_options: {include_usage: true}` asks), then [DONE]."""
    chunks = [openai_chunk({"role": "assistant", "content": text}, model=model)]
    for i, (call_id, name, arguments) in enumerate(calls):
        chunks.append(openai_chunk({"tool_calls": [{"index": i, "id": call_id, "type": "function",
                                                    "function": {"name": name, "arguments": ""}}]}, model=model))
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            chunks.append(openai_chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]},
                                       model=model))
    chunks.append(openai_chunk({}, finish or ("tool_calls" if calls else "stop"), model=model))
    last = openai_chunk({}, model=model)
    last.update(choices=[], usage={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                   "total_tokens": sum(usage)})
    chunks.append(last)
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class WireServer:
    """The scripted server (see the module docstring)."""

    def __init__(self, answers: list):
        self.answers, self.requests, self.release = list(answers), [], threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = server.answers.pop(0)
                if answer == "hang":
                    server.release.wait()
                    return
                if isinstance(answer, tuple):
                    _, code, payload = answer
                    data = json.dumps(payload).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                else:
                    data = answer
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def wire():
    """`wire(*answers)` starts a WireServer; all are stopped after the test."""
    servers = []

    def start(*answers):
        servers.append(WireServer(list(answers)))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def backends_file(tmp_path, monkeypatch):
    """`backends_file(text)` writes backends.toml and points TINYGPT_BACKENDS at it."""

    def write(text: str) -> Path:
        path = tmp_path / "backends.toml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("TINYGPT_BACKENDS", str(path))
        return path

    return write
