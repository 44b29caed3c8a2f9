"""`tinygpt chat` and `tinygpt agent` driven through a real pseudo-terminal that is their controlling terminal,
so arrow keys go through readline and Ctrl-C (\\x03) arrives as SIGINT, as for a person at a keyboard.

No sleeps: every step waits for the output it expects, with a bounded deadline. The answer that Ctrl-C
cancels has a budget of 100,000 tokens, so it is still running when the signal arrives.
"""
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from tinygpt.traces.atraj import Message
from tinygpt.traces.export import training_row
from tinygpt.traces.reader import list_traces, read_episode

UP = b"\x1b[A"
CTRL_C = b"\x03"
CTRL_D = b"\x04"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
# Runs first in the child (a new session): makes the pty its controlling terminal, so \x03 arrives as SIGINT.
CTTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'tinygpt.cli', *sys.argv[1:]])")


class Term:
    """A child process on a pty; `expect` consumes output up to a needle and keeps what follows."""

    def __init__(self, args, env):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-c", CTTY, *args], stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, close_fds=True, env=env)
        os.close(slave)
        self.fd, self.buf = master, b""

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, needle: str, timeout: float = 60.0) -> str:
        """Output up to and including `needle`; raises if it does not come within `timeout` seconds."""
        want = needle.encode()
        end = time.monotonic() + timeout
        while want not in self.buf:
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {needle!r}; got:\n{self.buf.decode(errors='replace')}")
            self._read(end)
        cut = self.buf.index(want) + len(want)
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out.decode(errors="replace")

    def expect_text(self, chars: int, timeout: float = 60.0) -> str:
        """Wait until at least `chars` characters of text (terminal escape sequences aside) have arrived."""
        end = time.monotonic() + timeout
        while len(ANSI.sub(b"", self.buf).strip(b"\r")) < chars:
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for output; got:\n{self.buf.decode(errors='replace')}")
            self._read(end)
        out, self.buf = self.buf, b""
        return out.decode(errors="replace")

    def _read(self, end: float) -> None:
        if select.select([self.fd], [], [], max(0.0, min(end - time.monotonic(), 1.0)))[0]:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the REPL exited; got:\n{self.buf.decode(errors='replace')}")
            self.buf += chunk

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code, draining output so the child never blocks on a full pty."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > end:
                raise AssertionError("the REPL did not exit")
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    os.read(self.fd, 4096)
                except OSError:
                    pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


@pytest.fixture
def repl_env(tmp_path):
    env = dict(os.environ, TERM="xterm", INPUTRC="/dev/null", TINYGPT_CACHE=str(tmp_path / "cache"),
               OPENBLAS_NUM_THREADS="1")
    env.pop("TINYGPT_CONFIG", None)
    return env


def stats(text: str) -> tuple[int, int, int]:
    """(tokens, prefilled, cached) from chat's per-answer line."""
    m = re.search(r"\[(\d+) tok, prefilled (\d+), cached (\d+),", text)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


def test_chat_in_a_pty_history_multiline_ctrl_c_and_ctrl_d(tiny_model_dir, tmp_path, repl_env):
    t = Term(["chat", "--model", str(tiny_model_dir), "--max-tokens", "6"], repl_env)
    try:
        assert "random-init (untrained)" in t.expect(">>> ")
        t.send(b"/help\n")
        assert "Ctrl-C" in t.expect("Ctrl-D       leave")
        t.expect(">>> ")
        t.send(UP + b"\n")  # readline recalls /help
        assert "/help" in t.expect("Ctrl-D       leave")
        t.expect(">>> ")

        t.send(b'"""\nline one\nline two\n"""\n')  # one message of two lines
        first = t.expect(">>> ")
        assert "... " in first
        n1, prefilled1, cached1 = stats(first)
        assert (n1, cached1) == (6, 0)

        t.send(b"/set max-tokens 100000\n")
        t.expect("max-tokens = 100000")
        t.expect(">>> ")
        t.send(b"tell me everything\n")
        t.expect("tell me everything\r\n")
        t.expect_text(8)  # the answer is streaming
        t.send(CTRL_C)
        assert "the conversation has 2 messages" in t.expect(">>> ")

        t.send(b"/set max-tokens 6\n")
        t.expect(">>> ")
        t.send(b"and now?\n")
        n3, prefilled3, cached3 = stats(t.expect(">>> "))
        assert cached3 == prefilled1 + n1  # the KV was rewound to the transcript: turn 1 reused, nothing more

        t.send(f"/save {tmp_path}/c\n".encode())
        t.expect("saved to")
        t.expect(">>> ")
        t.send(b"\x03")  # at the prompt: a hint, not an exit
        t.expect("Ctrl-D or /bye")
        t.expect(">>> ")
        t.send(CTRL_D)
        assert t.wait() == 0
    finally:
        t.close()
    saved = json.loads((tmp_path / "c.chat.json").read_text())
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["line one\nline two", "and now?"]
    history = (tmp_path / "cache" / "history-chat").read_text()
    assert "/help" in history and "tell me everything" in history


def test_agent_in_a_pty_tools_history_save_load_ctrl_c_and_traces(tiny_model_dir, tmp_path, repl_env):
    t = Term(["agent", "--model", str(tiny_model_dir), "--tool-choice", "ls", "--max-steps", "2",
              "--max-tokens", "96", "--temperature", "1.0", "--seed", "5",
              "--trajectory-dir", str(tmp_path / "traces")], repl_env)
    try:
        assert "random-init (untrained)" in t.expect(">>> ")
        t.send(b"/tools\n")
        t.expect("mkdir(dir_name)")
        t.expect(">>> ")
        t.send(UP + b"\n")  # readline recalls /tools
        t.expect("mkdir(dir_name)")
        t.expect(">>> ")
        t.send(b"what is here?\n")
        out = t.expect(">>> ", timeout=120)
        assert "\u2192 ls(" in out and "current_directory_content" in out and "[max_steps, 2 steps]" in out
        assert "<tool_call>" not in out and '"name"' not in out  # each call is shown once, formatted
        t.send(f"/save {tmp_path}/s\n".encode())
        assert "saved to" in t.expect(">>> ")
        t.send(b"/reset\n")
        assert "new conversation" in t.expect(">>> ")
        t.send(f"/load {tmp_path}/s\n".encode())
        assert "loaded 5 messages" in t.expect(">>> ")

        t.send(b"/set nonsense 5\n")
        assert "usage: /set" in t.expect(">>> ")
        t.send(b"/set max-steps 100000\n")
        t.expect("max-steps = 100000")
        t.expect(">>> ")
        t.send(b"keep going\n")
        t.expect("keep going\r\n")
        t.expect("\u2192 ls", timeout=60)
        t.expect("\u2192 ls", timeout=60)  # steps go on: the turn is running
        t.send(CTRL_C)
        assert "the conversation has 5 messages" in t.expect(">>> ")
        t.send(f"/save {tmp_path}/s2\n".encode())
        t.expect(">>> ")
        t.send(f"/load {tmp_path}/s2\n".encode())  # transcript and KV agree after the interruption
        assert "loaded 5 messages" in t.expect(">>> ")
        t.send(b"/set max-steps 1\n")
        t.expect(">>> ")
        t.send(b"once more\n")
        assert "[max_steps, 1 step]" in t.expect(">>> ", timeout=120)
        t.send(f"/save {tmp_path}/s3\n".encode())
        t.expect(">>> ")
        t.send(CTRL_D)
        assert t.wait() == 0
    finally:
        t.close()
    # two conversations, two finished episodes: before /reset, and the one loaded from s2 (its Ctrl-C'd first
    # exchange left nothing); each row is exactly the ids its saved chat holds, up to the tool results its last
    # (max_steps) turn appended and no call consumed
    paths = list_traces(tmp_path / "traces", include_partial=True)
    first, second = sorted((read_episode(p) for p in paths), key=lambda e: e.header.created_at)
    assert [p.name.endswith(".atraj") for p in paths] == [True, True]
    assert (first.header.task_id, first.end.status, second.end.status) == ("repl", "reset", "quit")
    saved = {name: json.loads((tmp_path / f"{name}.chat.json").read_text())["ids"] for name in ("s", "s2", "s3")}
    assert saved["s2"] == saved["s"]
    for episode, ids in ((first, saved["s"]), (second, saved["s3"])):
        row = training_row(episode)
        assert ids == row.input_ids + episode.events[-1].token_ids
    assert [m.content for m in second.events if isinstance(m, Message) and m.role == "user"] == \
        ["what is here?", "once more"]  # the loaded history, then the new turn (not "keep going")
    assert second.events[4].token_ids == saved["s2"]
