"""Split streamed model text into content and tool-call pieces, as they arrive.

The model writes calls as `<tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>` (tinygpt's and
Qwen's template). `ToolStream.feed` returns `Content` text outside calls, a `CallStart` (index, id, name) as
soon as a call's name is complete, then `CallArgs` fragments of ARGS as they arrive; the fragments of one call
concatenate to exactly the ARGS text. Text that could still become `<tool_call>` is held back, and so is
whitespace until it is known not to precede a call. A call whose head never parses is given back as content.
A call ends at the first `</tool_call>` outside a JSON string, as runtime/tool_calls.py's parser reads it
(`call_end`), so string arguments may hold the markers. Not here: validating ARGS (the grammar guarantees
it; the final parse in runtime/tool_calls.py decides for non-streamed answers).
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from tinygpt.runtime.tool_calls import CALL_CLOSE, CALL_OPEN, call_end

OPEN, CLOSE = CALL_OPEN, CALL_CLOSE
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


@dataclass
class Content:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class CallArgs:
    index: int
    text: str


Piece = Content | CallStart | CallArgs


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class ToolStream:
    def __init__(self) -> None:
        self.buf = ""            # text not yet given out
        self.in_call = False
        self.head_done = False
        self.calls = 0           # calls started
        self.call_text = ""      # raw text of the current call, for giving back a malformed one
        self.scan = _StringScan()  # where the current call's argument text is inside a JSON string

    def feed(self, text: str) -> list[Piece]:
        self.buf += text
        out: list[Piece] = []
        while True:
            before = (len(self.buf), self.in_call, self.head_done)
            if self.in_call:
                self._in_call(out)
            else:
                self._outside(out)
            if (len(self.buf), self.in_call, self.head_done) == before:
                return [p for p in out if not (isinstance(p, (Content, CallArgs)) and not p.text)]

    def finish(self) -> list[Piece]:
        """Everything still held back (a truncated call gives its remaining argument text)."""
        out: list[Piece] = []
        if self.in_call and self.head_done:
            out.append(CallArgs(self.calls - 1, self.buf))
        elif self.in_call:
            out.append(Content(OPEN + self.call_text + self.buf))
        elif not (self.calls and not self.buf.strip()):
            out.append(Content(self.buf))
        self.buf = ""
        return [p for p in out if p.text]

    def _outside(self, out: list[Piece]) -> None:
        # Whitespace right before a call (or between calls) is layout, not content: hold it until known.
        i = self.buf.find(OPEN)
        if i >= 0:
            out.append(Content(self.buf[:i].rstrip()))
            self.buf = self.buf[i + len(OPEN):]
            self.in_call, self.head_done, self.call_text, self.scan = True, False, "", _StringScan()
            return
        keep = _partial_suffix(self.buf, OPEN)
        body = self.buf[: len(self.buf) - keep]
        stripped = body.rstrip()
        out.append(Content(stripped))
        self.buf = self.buf[len(stripped):]

    def _in_call(self, out: list[Piece]) -> None:
        if not self.head_done:
            m = _HEAD.match(self.buf)
            if m:
                out.append(CallStart(self.calls, new_call_id(), _unescape(m.group(1))))
                self.calls += 1
                self.call_text += self.buf[: m.end()]
                self.buf = self.buf[m.end():]
                self.head_done = True
            elif (i := call_end(self.buf, 0)) >= 0:  # a call without a parsable head: give it back as text
                i += len(CLOSE)
                out.append(Content(OPEN + self.call_text + self.buf[:i]))
                self.buf = self.buf[i:]
                self.in_call = False
            return
        i = self.scan.close_at(self.buf)
        if i >= 0:
            body = self.buf[:i].rstrip()
            out.append(CallArgs(self.calls - 1, body[:-1] if body.endswith("}") else body))
            self.buf = self.buf[i + len(CLOSE):]
            self.in_call = False
            return
        cut = self.buf.rfind("}")  # the call's own closing brace may be the last one: hold from there
        if cut < 0:
            cut = len(self.buf) - _partial_suffix(self.buf, CLOSE)
        cut = min(cut, self.scan.pos)
        out.append(CallArgs(self.calls - 1, self.buf[:cut]))
        self.buf = self.buf[cut:]
        self.scan.pos -= cut


class _StringScan:
    """`call_end` done incrementally over a call's growing argument text: the scan resumes where it stopped
    (`pos`, with its in-string state), so a long argument streamed token by token is scanned once."""

    def __init__(self) -> None:
        self.pos = 0
        self.in_string = False
        self.escaped = False

    def close_at(self, text: str) -> int:
        """Index of the first `</tool_call>` outside a string, or -1 (stopping before a possible partial one)."""
        i = self.pos
        while i < len(text):
            c = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
            elif c == '"':
                self.in_string = True
            elif c == "<":
                if text.startswith(CLOSE, i):
                    self.pos = i
                    return i
                if CLOSE.startswith(text[i:]):  # may be the marker's start: wait for more text
                    break
            i += 1
        self.pos = i
        return -1


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s
