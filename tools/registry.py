"""A Toolset: tools by name, their schemas, and `call`, which never raises for a model's fault.

`call` returns the one `ToolResult` type (traces/atraj.py), bound to the call id it is given; the agent adds the
ids it appends for it. A wrong call (unknown tool, arguments that aren't a JSON object, missing/extra/ill-typed
arguments), a tool that raises, a tool that runs past its timeout, or a tool that returns `{"error": ...}` all
come back with `is_error=True` and a message the model can act on. Output longer than the cap is cut, marked,
and flagged `truncated`. Timeouts run the tool in a daemon worker thread; Python threads cannot be killed, so a
timed-out call may keep running in the background (calls on one Toolset are serialized, so a later call waits
for it and then reports that it could not start in time).
It does NOT parse model text into calls, and it does NOT sandbox a tool: tools do their own guarding.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterable

import msgspec

from tinygpt.tools.tool import Tool, tool_from_function
from tinygpt.traces.atraj import ToolResult

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_OUTPUT_CHARS = 16_000


class Toolset:
    """Tools by name. `timeout_s=None` runs calls inline (no thread, no timeout)."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]], *,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            tool = t if isinstance(t, Tool) else tool_from_function(t)
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}; tool names must be unique")
            self._tools[tool.name] = tool
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
        if max_output_chars < 1:
            raise ValueError(f"max_output_chars must be at least 1, got {max_output_chars}")
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool:
        """The tool called `name`; KeyError naming the available tools if there is none."""
        if name not in self._tools:
            raise KeyError(f"no tool named {name!r}; available: {', '.join(self._tools)}")
        return self._tools[name]

    def schemas(self) -> list[dict]:
        """Every tool in the OpenAI function-calling shape, in registration order."""
        return [t.schema() for t in self._tools.values()]

    def call(self, name: str, arguments: dict | str | bytes | None = None, *, call_id: str = "") -> ToolResult:
        """Validate and run one call (`call_id` names it in the result); every model fault comes back as an
        error ToolResult."""
        start = time.perf_counter()
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return self._error(call_id, name, f"Unknown tool {name!r}. Available tools: {', '.join(self._tools)}.",
                               start, cap=False)
        args = _decode_arguments(tool, arguments)
        if isinstance(args, str):
            return self._error(call_id, tool.name, args, start, cap=False)
        kwargs = {p.name: getattr(args, p.name) for p in tool.params}
        outcome = self._run(tool, kwargs)
        if isinstance(outcome, _Failure):
            return self._error(call_id, tool.name, outcome.message, start)
        content, is_error = render(outcome.value)
        return self._finish(call_id, tool.name, content, is_error, start)

    def _run(self, tool: Tool, kwargs: dict) -> "_Success | _Failure":
        if self.timeout_s is None:
            with self._lock:
                return _invoke(tool, kwargs)
        box: list = []
        phase = ["waiting"]                    # waiting -> running, or waiting -> abandoned (never runs)
        guard = threading.Lock()

        def work() -> None:
            if not self._lock.acquire(timeout=self.timeout_s):
                return
            try:
                with guard:
                    if phase[0] == "abandoned":
                        return
                    phase[0] = "running"
                box.append(_invoke(tool, kwargs))
            except BaseException as exc:  # SystemExit etc.: re-raised in the caller's thread below
                box.append(exc)
            finally:
                self._lock.release()

        worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        with guard:
            if not box and phase[0] == "waiting":
                phase[0] = "abandoned"
                return _Failure(f"Tool {tool.name!r} could not start within {self.timeout_s:g} s: an earlier "
                                "call that timed out is still running. It was not run; try again later.")
        if not box:
            worker.join(0.05)                  # it may be finishing right now
        if not box:
            return _Failure(f"Tool {tool.name!r} timed out after {self.timeout_s:g} s and was abandoned "
                            "(it may still finish in the background). Try a smaller request.")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _error(self, call_id: str, name: Any, message: str, start: float, *, cap: bool = True) -> ToolResult:
        """An error result; the registry's own messages (cap=False) are short and always shown whole."""
        return self._finish(call_id, str(name), message, True, start, cap=cap)

    def _finish(self, call_id: str, name: str, content: str, is_error: bool, start: float, *,
                cap: bool = True) -> ToolResult:
        content, truncated = cap_output(content, self.max_output_chars) if cap else (content, False)
        return ToolResult(call_id=call_id, name=name, content=content, is_error=is_error, truncated=truncated,
                          latency_s=time.perf_counter() - start)


class _Success(msgspec.Struct, frozen=True):
    value: Any


class _Failure(msgspec.Struct, frozen=True):
    message: str


def _invoke(tool: Tool, kwargs: dict) -> _Success | _Failure:
    try:
        return _Success(tool.fn(**kwargs))
    except Exception as exc:  # a tool's exception is the model's data, not our crash
        return _Failure(f"Error during execution: {exc}" if str(exc) else
                        f"Error during execution: {type(exc).__name__}")


def _decode_arguments(tool: Tool, arguments: dict | str | bytes | None) -> msgspec.Struct | str:
    """The validated arguments, or a message saying what is wrong with them."""
    if arguments is None:
        arguments = {}
    if isinstance(arguments, (str, bytes)):
        try:
            arguments = msgspec.json.decode(arguments or b"{}")
        except msgspec.DecodeError as exc:
            return f"Invalid arguments for {tool.name!r}: not valid JSON ({exc}). " \
                   f"Expected a JSON object for {tool.signature_text()}."
    if not isinstance(arguments, dict):
        return f"Invalid arguments for {tool.name!r}: expected a JSON object, got " \
               f"{type(arguments).__name__}. Signature: {tool.signature_text()}."
    try:
        return msgspec.convert(arguments, tool.args_type)
    except msgspec.ValidationError as exc:
        return f"Invalid arguments for {tool.name!r}: {exc}. Signature: {tool.signature_text()}."


def render(value: Any) -> tuple[str, bool]:
    """Model-visible text of a tool's return value, and whether it reports an error.

    Strings pass through; dicts and lists become JSON (`ensure_ascii=False`); None becomes "None" and
    other scalars their str(), as BFCL shows them. A dict with an "error" key is an error result.
    """
    if isinstance(value, str):
        return value, False
    if isinstance(value, (dict, list)):
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            return f"Error during execution: the tool returned a value that is not JSON ({exc})", True
        return text, isinstance(value, dict) and "error" in value
    return str(value), False


def cap_output(content: str, limit: int) -> tuple[str, bool]:
    """Cut `content` to `limit` characters plus a marker saying how much was dropped."""
    if len(content) <= limit:
        return content, False
    dropped = len(content) - limit
    return content[:limit] + f"\n[... output truncated: {dropped} more characters not shown ...]", True
