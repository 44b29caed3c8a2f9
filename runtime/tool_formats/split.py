"""Split a model's text into content and tool calls by a `ToolFormat`, incrementally: the one reader that both
the final parse (runtime/tool_calls.py) and the server's streamed tool-call deltas (`CallStream`) use.

`Splitter.feed` returns pieces as soon as they are certain: `Content` outside calls, `CallStart` (index, id,
name) once a call's name is read, `CallArgs` fragments of its arguments text (they concatenate to exactly that
text), `CallDone` with the parsed call, or `Fault` (why a call cannot be read, and its raw text). A call object
ends where its braces balance outside JSON strings, so a string argument may hold the format's markers. Text
that could still become the trigger is held back, and so is the `lead` before it. Reading is a superset of
what the grammar writes: whitespace between the parts and the format's `prefixes` are accepted.
Not here: checking arguments against schemas (tool_calls.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tinygpt.runtime.tool_formats.format import ToolFormat

MAX_HEAD = 4096  # a call whose name is not read within this many characters is read whole at its end


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


@dataclass
class CallDone:
    index: int
    id: str
    name: str
    arguments: Any  # as written: a dict, or a JSON string of one (tool_calls.py checks it)


@dataclass
class Fault:
    message: str  # empty for more raw text after a fault already reported
    text: str


Piece = Content | CallStart | CallArgs | CallDone | Fault


def _solid(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


class Splitter:
    """One output's reader. States: out/start (before the calls), text (no calls), lit (a literal of the
    syntax), obj (a call object), between (after a call), skip (a broken call, up to its close marker),
    end (after the calls), trailing (text that may not follow the calls)."""

    def __init__(self, fmt: ToolFormat):
        self.fmt = fmt
        self.buf = ""
        self.state = "out" if fmt.anywhere else "start"
        self.calls = 0              # calls given an index (started or done)
        self.truncated = False
        self.need, self.then = "", ""  # lit: the solid characters still expected, and the state after them
        self.literal = ""           # lit: the whole literal expected (for messages)
        self.raw = ""               # the current call's text so far (given back in a Fault)
        self.fault = ""             # skip: the message to report once the close marker is found
        self.pending: CallDone | None = None  # a read call whose close marker has not been read yet
        self._head = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*' + re.escape(json.dumps(fmt.args_key))
                                + r"\s*:\s*(?=\S)")
        self._close = _solid(fmt.call[1])
        self._new_obj()

    def _new_obj(self) -> None:
        self.obj: list[str] = []
        self.depth, self.in_str, self.esc = 0, False, False
        self.marks: list[int] = []  # positions of "," and "}" at the object's own level
        self.args_start = self.args_sent = -1
        self.started: CallStart | None = None

    # ---- feeding --------------------------------------------------------------------------------------------
    def feed(self, text: str) -> list[Piece]:
        self.buf += text
        out: list[Piece] = []
        while getattr(self, "_" + self.state)(out):
            pass
        return [p for p in out if not (isinstance(p, (Content, CallArgs)) and not p.text)]

    def finish(self, stopped: bool) -> list[Piece]:
        """The rest, once the output is over. `stopped`: it ended on its own (EOS), not at the token budget;
        then an unfinished call is a fault, else it is `truncated`."""
        out = self.feed("")
        rest = self.buf.strip()
        if self.state == "skip":
            out.append(Fault(self.fault, self.raw + self.buf))
        elif self.state in ("lit", "obj"):
            if stopped:
                out += self._unclosed()
            else:
                self.truncated = True
                if self.started is not None:  # the arguments seen so far
                    out.append(CallArgs(self.started.index, "".join(self.obj[self.args_sent:])))
                elif self.pending is None:
                    out.append(Fault("", self.raw + "".join(self.obj) + self.buf))
        elif self.state == "between":
            waiting = [lit for lit, _ in self._options() if rest and lit.startswith(rest)]
            if not stopped and (waiting or (not rest and _solid(self.fmt.section[1]))):
                self.truncated = True  # cut off while opening another call or before the calls' end
            elif rest:
                out.append(Fault(f"unexpected text after a tool call: {rest[:80]!r}; nothing may follow the calls",
                                 self.buf))
        elif self.state in ("out", "start", "text"):
            out.append(Content(self.buf))
        elif self.state == "trailing":
            out.append(Fault("", self.buf))
        self.buf = ""
        return [p for p in out if not (isinstance(p, (Content, CallArgs)) and not p.text)]

    def _unclosed(self) -> list[Piece]:
        """A call still open when the output stopped: end it at its close marker if one follows (the call is a
        fault, the text after it is read on), else the whole rest is one fault."""
        body = "".join(self.obj) + self.buf
        text = self.raw + body
        at = body.find(self._close) if self._close else -1
        if at < 0:
            close = f" with {self._close}" if self._close else ""
            self.buf, self.state = "", "trailing"
            return [Fault(f"a tool call was opened but never closed{close}", text)]
        rest = body[at + len(self._close):]
        _, err = _load(body[:at])
        fault = Fault(err or "tool call is not valid JSON", text[:len(text) - len(rest)])
        self.buf, self.raw, self.pending, self.state = "", "", None, "between"
        self._new_obj()
        return [fault] + self.feed(rest) + self.finish(True)

    # ---- states: each returns True when it made progress ----------------------------------------------------
    def _out(self, out: list[Piece]) -> bool:
        fmt, buf = self.fmt, self.buf
        i = buf.find(fmt.trigger)
        if i >= 0:
            content = buf[:i]
            if fmt.lead and content.endswith(fmt.lead):
                content = content[: -len(fmt.lead)]
            out.append(Content(content))
            self.buf = buf[i:]
            self._expect(fmt.section[0] + fmt.call[0], "obj")
            return True
        keep = next((k for k in range(min(len(fmt.trigger) - 1, len(buf)), 0, -1)
                     if buf.endswith(fmt.trigger[:k])), 0)
        cut = len(buf) - keep
        if fmt.lead and buf[:cut].endswith(fmt.lead):  # may be the lead of a call still to come
            cut -= len(fmt.lead)
        out.append(Content(buf[:cut]))
        self.buf = buf[cut:]
        return False

    def _start(self, out: list[Piece]) -> bool:
        fmt, buf = self.fmt, self.buf
        for prefix in fmt.prefixes:
            if buf.startswith(prefix):
                buf = buf[len(prefix):]
                break
            if prefix.startswith(buf):
                return False  # may still become the prefix
        if buf.startswith(fmt.trigger):
            self.raw, self.buf = self.buf[: len(self.buf) - len(buf)], buf
            self._expect(fmt.section[0] + fmt.call[0], "obj")
            return True
        if fmt.trigger.startswith(buf):
            return False
        self.state = "text"
        return True

    def _text(self, out: list[Piece]) -> bool:
        out.append(Content(self.buf))
        self.buf = ""
        return False

    def _trailing(self, out: list[Piece]) -> bool:
        if self.buf:
            out.append(Fault("", self.buf))
            self.buf = ""
        return False

    def _expect(self, literal: str, then: str) -> None:
        self.need, self.then, self.state = _solid(literal), then, "lit"
        self.literal = self.need

    def _lit(self, out: list[Piece]) -> bool:
        i, buf = 0, self.buf
        while self.need:
            while i < len(buf) and buf[i].isspace():
                i += 1
            if i == len(buf):
                break
            if buf[i] != self.need[0]:
                self.raw += buf[:i]
                self.buf = buf[i:]
                self._broken(out, f"expected {self.literal!r} in a tool call, got {buf[i:i + 40]!r}")
                return True
            self.need = self.need[1:]
            i += 1
        self.raw += buf[:i]
        self.buf = buf[i:]
        if self.need:
            return False
        if self.pending is not None:  # the call's close marker is complete: the call is done
            out.append(self.pending)
            self.pending = None
        self.state = self.then
        return True

    def _options(self) -> list[tuple[str, str | None]]:
        """What may follow a call: (literal, state after it); state None = a call object right away."""
        fmt = self.fmt
        nxt = _solid(fmt.sep) + _solid(fmt.call[0])
        close = _solid(fmt.section[1])
        return [(nxt, "obj") if nxt else ("{", None)] + ([(close, "end")] if close else [])

    def _between(self, out: list[Piece]) -> bool:
        buf = self.buf.lstrip()
        if not buf:
            return False
        for literal, state in self._options():
            if buf.startswith(literal):
                self.raw, self.buf = "", buf
                self._new_obj()
                if state is None:
                    self.state = "obj"
                else:
                    self._expect(literal, state)
                return True
            if literal.startswith(buf):
                return False  # may still become it
        self.buf, self.state = buf, "end"
        return True

    def _end(self, out: list[Piece]) -> bool:
        if not self.buf.strip():
            return False
        out.append(Fault(f"unexpected text after a tool call: {self.buf.strip()[:80]!r}; nothing may follow the "
                         "calls", self.buf))
        self.buf = ""
        self.state = "trailing"
        return False

    def _skip(self, out: list[Piece]) -> bool:
        at = self.buf.find(self._close)
        if at < 0:
            keep = max(0, len(self.buf) - len(self._close) + 1)
            self.raw += self.buf[:keep]
            self.buf = self.buf[keep:]
            return False
        end = at + len(self._close)
        out.append(Fault(self.fault, self.raw + self.buf[:end]))
        self.buf, self.raw = self.buf[end:], ""
        self._new_obj()
        self.state = "between"
        return True

    def _broken(self, out: list[Piece], message: str) -> None:
        """The current call cannot be read: skip to its close marker where the format has one, else the rest of
        the output is this fault."""
        self.raw += "".join(self.obj)
        self.pending = None  # a call read before its syntax broke is not a call
        self._new_obj()
        if self._close:
            self.fault, self.state = message, "skip"
        else:
            out.append(Fault(message, self.raw + self.buf))
            self.raw, self.buf, self.state = "", "", "trailing"

    def _obj(self, out: list[Piece]) -> bool:
        buf = self.buf
        i = 0
        if not self.obj:
            while i < len(buf) and buf[i].isspace():
                i += 1
            if i == len(buf):
                self.raw += buf
                self.buf = ""
                return False
            if buf[i] != "{":
                self.raw += buf[:i]
                self.buf = buf[i:]
                self._broken(out, f"tool call must be {self._shape()}, got {buf[i:i + 40]!r}")
                return True
            self.raw += buf[:i]
        state, end = self._scan(buf, i)
        self.buf = buf[end:]
        self._stream(out)
        if state == "more":
            return False
        if state == "marker":  # the close marker outside a string: the call ends there, unreadable
            body = "".join(self.obj)
            out.append(Fault(_load(body)[1] or "tool call is not valid JSON", self.raw + body))
            self.raw = ""
            self._new_obj()
            self._expect(self.fmt.call[1], "between")
            return True
        self._done(out)
        return True

    def _scan(self, buf: str, i: int) -> tuple[str, int]:
        """Add buf[i:] to the object until its braces balance ("done", the index after its last character), the
        format's close marker comes outside a string ("marker", its index), or buf ends ("more", the index up to
        which it was read: a possible start of the marker is left unread)."""
        obj, marks, close = self.obj, self.marks, self._close
        depth, in_str, esc = self.depth, self.in_str, self.esc
        state, j = "more", len(buf)
        for j in range(i, len(buf)):
            c = buf[j]
            if in_str:
                obj.append(c)
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
                continue
            if close and c == close[0]:
                if buf.startswith(close, j):
                    state = "marker"
                    break
                if close.startswith(buf[j:]):
                    break  # may be the marker: wait for more text
            obj.append(c)
            if c == '"':
                in_str = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                if depth == 1:
                    marks.append(len(obj) - 1)
                depth -= 1
                if depth == 0:
                    state, j = "done", j + 1
                    break
            elif c == "," and depth == 1:
                marks.append(len(obj) - 1)
        else:
            j = len(buf)
        self.depth, self.in_str, self.esc = depth, in_str, esc
        return state, j

    def _stream(self, out: list[Piece]) -> None:
        """Start the call once its name is read and give out the arguments text seen so far."""
        if self.args_start < 0 and len(self.obj) < MAX_HEAD:
            m = self._head.match("".join(self.obj))
            if m:
                self.args_start = self.args_sent = m.end()
                if self.fmt.id_key is None:  # else the id comes after the arguments: start at the end
                    self.started = CallStart(self.calls, self.fmt.new_id(), _unescape(m.group(1)))
                    self.calls += 1
                    out.append(self.started)
        if self.started is not None:
            end = next((k for k in self.marks if k >= self.args_start), len(self.obj))
            if end > self.args_sent:
                out.append(CallArgs(self.started.index, "".join(self.obj[self.args_sent:end])))
                self.args_sent = end

    def _done(self, out: list[Piece]) -> None:
        body = "".join(self.obj)
        call, message = self._read(body)
        if call is None:
            out.append(Fault(message, self.raw + body))
        else:
            name, args, call_id = call
            if self.started is None:
                index, call_id = self.calls, call_id or self.fmt.new_id()
                self.calls += 1
                out.append(CallStart(index, call_id, name))
                text = body[self.args_start:next(k for k in self.marks if k >= self.args_start)] \
                    if self.args_start >= 0 else json.dumps(args, ensure_ascii=False)
                out.append(CallArgs(index, text))
            else:
                index, call_id = self.started.index, self.started.id
            self.pending = CallDone(index, call_id, name, args)
        self.raw = ""
        self._new_obj()
        self._expect(self.fmt.call[1], "between")

    def _shape(self) -> str:
        fmt = self.fmt
        call_id = f', "{fmt.id_key}": ...' if fmt.id_key else ""
        return "{" + f'"name": ..., "{fmt.args_key}": ' + "{...}" + call_id + "}"

    def _read(self, body: str) -> tuple[tuple[str, Any, str | None] | None, str]:
        """(name, arguments, id) of a call object's text, or None and what is wrong with it."""
        fmt = self.fmt
        obj, err = _load(body)
        if err:
            return None, err
        keys = {"name", fmt.args_key} | ({fmt.id_key} if fmt.id_key else set())
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None, f"tool call must be {self._shape()}, got {body.strip()[:120]!r}"
        extra = set(obj) - keys
        if extra:
            return None, (f"tool call has unexpected key(s) {', '.join(sorted(extra))}; only "
                          f"{', '.join(sorted(keys))}")
        call_id = None
        if fmt.id_key:
            call_id = obj.get(fmt.id_key)
            if not fmt.valid_id(call_id):
                return None, (f"the {fmt.id_key} of a call to {obj['name']} must match {fmt.id_pattern}, got "
                              f"{call_id!r:.60}")
        return (obj["name"], obj.get(fmt.args_key, {}), call_id), ""


def _load(body: str) -> tuple[Any, str]:
    """(the JSON value of `body`, "") or (None, why it is not JSON)."""
    try:
        return json.loads(body), ""
    except json.JSONDecodeError as exc:
        return None, f"tool call is not valid JSON ({exc.msg} at char {exc.pos}): {body.strip()[:120]!r}"
    except RecursionError:
        return None, f"tool call is nested too deeply to parse: {body.strip()[:120]!r}"
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        return None, f"tool call is not valid JSON ({exc}): {body.strip()[:120]!r}"


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s


def splitter(fmt: ToolFormat):
    """A fresh reader for `fmt`: this module's `Splitter`, or the format's own where its plugin writes and reads
    its calls itself (tool_formats.own_syntax)."""
    from tinygpt.runtime.tool_formats import own_syntax  # the registry imports the plugins, which import this

    own = own_syntax(fmt)
    return own.Splitter(fmt) if own is not None else Splitter(fmt)


class CallStream:
    """The streamed view for a wire format: `Content`, `CallStart` and `CallArgs` only. A call that cannot be
    read is given back as content (the final parse in tool_calls.py decides for whole answers)."""

    def __init__(self, fmt: ToolFormat):
        self.splitter = splitter(fmt)

    @property
    def calls(self) -> int:
        return self.splitter.calls

    def feed(self, text: str) -> list[Piece]:
        return self._view(self.splitter.feed(text))

    def finish(self, stopped: bool = True) -> list[Piece]:
        return self._view(self.splitter.finish(stopped))

    @staticmethod
    def _view(pieces: list[Piece]) -> list[Piece]:
        out: list[Piece] = []
        for p in pieces:
            if isinstance(p, Fault):
                p = Content(p.text)
            if isinstance(p, CallDone) or (isinstance(p, (Content, CallArgs)) and not p.text):
                continue
            if isinstance(p, Content) and out and isinstance(out[-1], Content):
                out[-1] = Content(out[-1].text + p.text)
            else:
                out.append(p)
        return out
