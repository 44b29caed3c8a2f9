"""The pythonic tool-call format: the whole answer is a Python list of calls with keyword arguments,
`[get_weather(city="Paris", days=3), send(to=["a", "b"], urgent=True)]` — BFCL's prompting format, and what
Llama 3.2's pythonic template asks for.

This module is the one definition of the syntax: how calls are written (`literal`, `FORMAT.render`), read
(`read_call`, on Python's `ast`: `ast.literal_eval` per argument, never eval) and split out of a stream
(`Splitter`, the same pieces as split.py's), the grammars (pythonic_grammar.py: llguidance Lark and
outlines-core regex from one tree), and how tools are listed where a chat template shows none (`system_prompt`). What it writes: strings in double quotes with json.dumps escapes, numbers as
Python writes them, True / False / None, lists `[a, b]`, dicts `{"k": v}`, ", " between calls and arguments.
It reads more: single quotes, any spacing, tuples (as lists), a trailing comma, a missing final `]`.
Never picked from a chat template unless the template spells this very syntax out. Not here: checking
arguments against schemas (tool_calls.py).
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tinygpt.runtime.tool_formats.format import ToolFormat
from tinygpt.runtime.tool_formats.split import CallArgs, CallDone, CallStart, Content, Fault, Piece

OPEN, CLOSE, SEP = "[", "]", ", "
# what Llama 3.2's pythonic template (and BFCL's prompt) tell the model to write; detection looks for it
TEMPLATE_MARK = "[func_name1(params_name1=params_value1"
_HEAD = re.compile(r"\s*([A-Za-z_][\w.]*)\s*\(")
_START = re.compile(r"\[\s*(?:[A-Za-z_][\w.]*\s*\(|\])")  # calls open the answer: "[name(" (or "[]": none)
_MAYBE = re.compile(r"\[\s*(?:[A-Za-z_][\w.]*\s*)?")  # what may still become that


class CallError(ValueError):
    """A call's text is not `name(arg=literal, ...)`; the message says what is wrong."""


@dataclass(frozen=True)
class PythonicFormat(ToolFormat):
    """A ToolFormat whose calls are Python calls: `render` writes them; the JSON-shaped fields say only where
    calls start (`trigger`), that they open the answer, and what surrounds them."""

    def render(self, calls: list[tuple[str, dict, str | None]], content: str = "") -> str:
        """The answer holding `calls` [(name, arguments, id)]: the calls are the whole answer (no content)."""
        if not calls:
            return content
        return OPEN + SEP.join(call_text(name, args) for name, args, _ in calls) + CLOSE


# any family's template may ask for this syntax: its turn ends with that family's end-of-turn token (the first of
# these the vocabulary has as an EOS id: Qwen's <|im_end|>, Llama 3's <|eot_id|>, Mistral's </s>)
FORMAT = PythonicFormat(name="pythonic", trigger=OPEN, anywhere=False, section=(OPEN, CLOSE), sep=SEP,
                        stop_tokens=("<|im_end|>", "<|eot_id|>", "</s>"))


def matches(template: str) -> bool:
    """A template that tells the model to write `[func_name1(params_name1=params_value1, ...)]`."""
    return TEMPLATE_MARK in template


# ---- writing ----------------------------------------------------------------------------------------------
def call_text(name: str, arguments: dict) -> str:
    """`name(k=v, ...)` with each value as `literal` writes it."""
    return f"{name}(" + SEP.join(f"{k}={literal(v)}" for k, v in arguments.items()) + ")"


def literal(value: Any) -> str:
    """The Python literal of a JSON value, as the grammar writes it; ValueError for what has none."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal; a tool argument must be a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python string literal with the same value
    if isinstance(value, (list, tuple)):
        return "[" + SEP.join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        bad = next((k for k in value if not isinstance(k, str)), None)
        if bad is not None:
            raise ValueError(f"dict key {bad!r} is not a string; tool arguments are JSON values")
        return "{" + SEP.join(json.dumps(k, ensure_ascii=False) + ": " + literal(v) for k, v in value.items()) + "}"
    raise ValueError(f"a {type(value).__name__} is not a JSON value; it has no literal in this format")


def system_prompt(tools: list[dict]) -> str:
    """How tools are presented where the chat template shows none: this text (the agent puts it before its
    system message), the functions as JSON after it, as BFCL's prompting handlers do with their own text."""
    functions = [t.get("function", t) for t in tools]
    return ("You can call the functions listed below. To call them, answer with nothing but a Python list of "
            "calls with keyword arguments, e.g. [func_name1(param1=value1, param2=value2), func_name2(param=value)] "
            "(strings in double quotes; True, False, None). Without calls, answer in plain text.\n\n"
            "Functions (JSON):\n" + json.dumps(functions, ensure_ascii=False, indent=2))


# ---- reading ----------------------------------------------------------------------------------------------
def read_call(text: str) -> tuple[str, dict]:
    """(name, arguments) of one call's text `name(k=v, ...)`; CallError saying what is wrong otherwise."""
    body = text.strip()
    shown = repr(body[:120])
    try:
        node = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise CallError(f"tool call is not a Python call ({exc.msg}): {shown}") from None
    except (RecursionError, MemoryError):
        raise CallError(f"tool call is nested too deeply to parse: {shown}") from None
    except ValueError as exc:  # e.g. a NUL character
        raise CallError(f"tool call is not a Python call ({exc}): {shown}") from None
    if not isinstance(node, ast.Call):
        raise CallError(f"tool call must be name(arg=value, ...), got {shown}")
    name = _dotted(node.func)
    if name is None:
        raise CallError(f"tool call must start with the function's name, got {shown}")
    if node.args:
        raise CallError(f"tool call {name} has positional arguments; write each one as name=value")
    arguments = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise CallError(f"tool call {name} unpacks **{ast.unparse(kw.value)[:60]}; write each argument as "
                            "name=value")
        if kw.arg in arguments:
            raise CallError(f"argument {kw.arg} of {name} is given twice")
        try:
            arguments[kw.arg] = _plain(ast.literal_eval(kw.value), f"{name}({kw.arg}=...)")
        except CallError:
            raise
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise CallError(f"argument {kw.arg} of {name} is not a Python literal: {ast.unparse(kw.value)[:80]!r} "
                            "(values are strings, numbers, True, False, None, lists and dicts)") from None
    return name, arguments


def _dotted(func: ast.expr) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([func.id, *reversed(parts)])


def _plain(value: Any, where: str) -> Any:
    """`value` as a JSON value (tuples become lists); CallError for sets, bytes, complex numbers and the like."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CallError(f"{where}: dict keys must be strings")
        return {k: _plain(v, where) for k, v in value.items()}
    raise CallError(f"{where}: a {type(value).__name__} is not a JSON value (use a list, dict, string or number)")


class Splitter:
    """One output's reader, with split.py's pieces: `CallStart` once a call's name and `(` are read, then at
    the call's end one `CallArgs` (its arguments as JSON) and `CallDone`, or a `Fault`. A call ends at a `,` or
    `]` outside brackets and Python strings, so strings may hold `)]`, quotes and commas. States: start, text
    (no calls), calls, end (after `]`), trailing (text after a fault that ended the calls)."""

    def __init__(self, fmt: ToolFormat = FORMAT):
        self.fmt = fmt
        self.buf, self.state = "", "start"
        self.calls = 0
        self.truncated = False
        self.raw = ""  # text read since the last piece given out (a Fault gives it back)
        self._new_call()

    def _new_call(self) -> None:
        self.seg: list[str] = []
        self.stack: list[str] = []
        self.quote, self.esc = "", False
        self.started: CallStart | None = None

    def feed(self, text: str) -> list[Piece]:
        self.buf += text
        out: list[Piece] = []
        while getattr(self, "_" + self.state)(out):
            pass
        return [p for p in out if not (isinstance(p, Content) and not p.text)]

    def finish(self, stopped: bool) -> list[Piece]:
        """The rest, once the output is over (`stopped`: it ended on its own, not at the token budget)."""
        out = self.feed("")
        if self.state == "start":
            if self.buf.strip() and not stopped:
                self.truncated = True  # "[" and nothing after it yet
            else:
                out.append(Content(self.buf))
        elif self.state == "calls":
            seg = "".join(self.seg)
            if not stopped:
                self.truncated = True
            elif seg.strip() and not self.stack and not self.quote:  # only the final "]" is missing
                self._end_call(out)
            elif seg.strip():
                out.append(Fault("a tool call was opened but never closed (with ')' and then ']')", self.raw + seg))
        elif self.state in ("end", "trailing") and self.buf.strip():
            out.append(Fault(f"unexpected text after the tool calls: {self.buf.strip()[:80]!r}; nothing may "
                             "follow the ']'", self.buf))
        self.buf = ""
        return [p for p in out if not (isinstance(p, Content) and not p.text)]

    def _start(self, out: list[Piece]) -> bool:
        body = self.buf.lstrip()
        if not body:
            return False
        if _START.match(body):
            self.raw, self.buf, self.state = self.buf[: len(self.buf) - len(body) + 1], body[1:], "calls"
            return True
        if _MAYBE.fullmatch(body):
            return False  # "[", "[ name", ...: may still open the calls
        self.state = "text"  # "[Note] ...", "[1, 2]", anything else: not a list of calls
        return True

    def _text(self, out: list[Piece]) -> bool:
        out.append(Content(self.buf))
        self.buf = ""
        return False

    def _end(self, out: list[Piece]) -> bool:
        if self.buf.strip():
            out.append(Fault(f"unexpected text after the tool calls: {self.buf.strip()[:80]!r}; nothing may "
                             "follow the ']'", self.buf))
            self.buf, self.state = "", "trailing"
        return False

    def _trailing(self, out: list[Piece]) -> bool:
        if self.buf:
            out.append(Fault("", self.buf))
            self.buf = ""
        return False

    def _calls(self, out: list[Piece]) -> bool:
        for i, c in enumerate(self.buf):
            seg, stack = self.seg, self.stack  # a call's end makes new ones
            if self.quote:
                seg.append(c)
                if self.esc:
                    self.esc = False
                elif c == "\\":
                    self.esc = True
                elif c == self.quote:
                    self.quote = ""
                continue
            if not stack and c in ",]":
                rest = self.buf[i + 1:]
                if "".join(seg).strip():
                    self._end_call(out)
                elif c == ",":  # "[," or ",,": a "]" with no call before it is fine ("[]", a trailing comma)
                    self.buf = rest
                    self._broken(out, "expected a tool call before " + repr(c))
                    return True
                self.raw = ""
                self.buf = rest
                if c == "]":
                    self.state = "end"
                    return True
                self.raw = c
                continue
            if not seg and c.isspace():
                self.raw += c
                continue
            seg.append(c)
            if c in "'\"":
                self.quote = c
            elif c in "([{":
                stack.append(c)
                if c == "(" and len(stack) == 1 and self.started is None:
                    self._start_call(out)
            elif c in ")]}" and stack:
                stack.pop()
        self.buf = ""
        return False

    def _start_call(self, out: list[Piece]) -> None:
        m = _HEAD.match("".join(self.seg))
        if m:
            self.started = CallStart(self.calls, self.fmt.new_id(), m.group(1))
            self.calls += 1
            out.append(self.started)

    def _end_call(self, out: list[Piece]) -> None:
        text = "".join(self.seg)
        try:
            name, arguments = read_call(text)
        except CallError as exc:
            out.append(Fault(str(exc), self.raw + text))
        else:
            start = self.started
            if start is None or start.name != name:
                start = CallStart(self.calls, self.fmt.new_id(), name)
                self.calls += 1
                out.append(start)
            out.append(CallArgs(start.index, json.dumps(arguments, ensure_ascii=False)))
            out.append(CallDone(start.index, start.id, name, arguments))
        self._new_call()

    def _broken(self, out: list[Piece], message: str) -> None:
        """The list cannot be read on: the rest of the output is this fault."""
        out.append(Fault(message, self.raw + "".join(self.seg) + self.buf))
        self.raw, self.buf, self.state = "", "", "trailing"
        self._new_call()


def lark(spec: Any, vocab: Any) -> str:
    """The llguidance Lark grammar of a tools spec (mode none / auto / required) in this format; GrammarError
    for a tool or schema it cannot write."""
    from tinygpt.runtime.tool_formats import pythonic_grammar

    return _grammar(pythonic_grammar.lark, spec)


def regex(spec: Any, spell: dict[str, str], budget: Any = None) -> str:
    """The outlines-core regex of the whole output (before the EOS sentinel) for a tools spec; GrammarError for a
    tool or schema it cannot write."""
    from tinygpt.runtime.tool_formats import pythonic_grammar

    return _grammar(pythonic_grammar.regex, spec, spell)


def _grammar(build, *args) -> str:
    from tinygpt.runtime.grammar import GrammarError  # loads MLX: only where a grammar is compiled anyway
    from tinygpt.runtime.tool_formats.pythonic_grammar import PythonicGrammarError

    try:
        return build(*args)
    except PythonicGrammarError as exc:
        raise GrammarError(str(exc)) from None
