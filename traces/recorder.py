"""The Recorder the agent loop drives: one episode in, one crash-safe `.atraj` file out.

`Recorder(dir, header)` writes `<dir>/<episode_id>.atraj.part`; `message`, `model_call` and `tool_result`
append one line each; `end` appends the end line and renames the file to `<episode_id>.atraj`. A header that
cannot be written leaves no file (and no open descriptor); `resume` continues a `.part` after a crash, or only
finishes the rename when the crash came after the end line. `mark` / `rollback` cut an unfinished episode back
to an earlier line (an exchange the user dropped with Ctrl-C is then in neither the conversation nor the file),
and `discard` removes an unfinished episode whole. Each call checks
what the loop hands it (ids inside the next prompt, one logprob per token) so a wiring bug fails loudly here,
not silently in training. It does not tokenize, decode or parse tool calls: the loop gives it ids and text.
"""
import errno
import re
from array import array
from pathlib import Path
from typing import Any

from tinygpt.traces.atraj import (
    FORMAT_VERSION, End, Event, Header, Message, ModelCall, Reward, Role, ToolCall, ToolResult, Verdict,
    check_model_call,
)
from tinygpt.traces.errors import TraceError, TraceWriteError
from tinygpt.traces.reader import FINAL_SUFFIX, PART_SUFFIX
from tinygpt.traces.writer import AppendWriter, FsyncPolicy

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_episode_id(episode_id: str) -> None:
    if not _SAFE_ID.fullmatch(episode_id):
        raise TraceError(
            f"episode id {episode_id!r} cannot name a file: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )


def _ids_bytes(ids: list[int], what: str) -> bytes:
    try:
        return array("I", ids).tobytes()
    except OverflowError:
        raise TraceError(f"{what} holds a token id outside 0..2**32-1; token ids are non-negative") from None


def _find_run(haystack: bytes, needle: bytes, start: int) -> int:
    """Byte offset of `needle` in `haystack` at or after `start`, aligned to whole ids; -1 if absent."""
    at = haystack.find(needle, start)
    while at >= 0 and at % 4:
        at = haystack.find(needle, at + 1)
    return at


class Recorder:
    """Records one episode. Use as a context manager; only `end()` finalizes the file."""

    def __init__(self, directory: str | Path, header: Header, *, fsync: FsyncPolicy = "event"):
        _check_episode_id(header.episode_id)
        if header.version != FORMAT_VERSION:
            raise TraceError(f"new episodes are written as .atraj version {FORMAT_VERSION}; leave Header.version "
                             f"at its default (got {header.version})")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.final_path = directory / f"{header.episode_id}{FINAL_SUFFIX}"
        if self.final_path.exists():
            raise TraceError(f"episode {header.episode_id!r} is already recorded at {self.final_path}")
        self._writer = AppendWriter.create(directory / f"{header.episode_id}{PART_SUFFIX}", fsync)
        self._created = True
        self._pending: list[tuple[str, list[int]]] = []
        self.torn_bytes = 0
        try:
            self._writer.append(header)
        except TraceWriteError as err:
            self._writer.discard()
            cause = err.__cause__
            reason = f"{cause.strerror} ({errno.errorcode.get(cause.errno, '?')})" if cause else str(err)
            raise TraceWriteError(
                err.errno, f"could not write the header of episode {header.episode_id!r} in {directory}: {reason}; "
                "nothing was kept. Free disk space (or raise the file size limit) and record the episode again.",
            ) from cause
        except BaseException:
            self._writer.discard()
            raise

    @classmethod
    def resume(cls, part_path: str | Path, *, fsync: FsyncPolicy = "event") -> "Recorder":
        """Continue an unfinished `<id>.atraj.part` after a crash; a torn last line is cut off first.

        When the part already ends with its end record (the process died between the end line and the rename),
        the rename is finished instead: the returned recorder is ended (`finished`) and `path` is the `.atraj`.
        """
        part_path = Path(part_path)
        if not part_path.name.endswith(PART_SUFFIX):
            raise TraceError(f"{part_path} is not an unfinished episode (expected a name ending in {PART_SUFFIX})")
        writer, records, torn = AppendWriter.reopen(part_path, fsync)
        if not records:
            writer.close()
            raise TraceError(f"{part_path} has no intact header; delete it and record the episode again")
        self = cls.__new__(cls)
        self.header = records[0]
        self.final_path = part_path.with_name(part_path.name[: -len(PART_SUFFIX)] + FINAL_SUFFIX)
        self._writer = writer
        self._created = False
        self.torn_bytes = torn
        self._pending = []
        if isinstance(records[-1], End):
            try:
                writer.finalize(self.final_path)
            finally:
                writer.close()
            return self
        for record in records[1:]:
            self._track(record)
        return self

    @property
    def finished(self) -> bool:
        """True once the episode is renamed to its final `.atraj` name (after `end`, or by `resume`)."""
        return self.path == self.final_path

    @property
    def path(self) -> Path:
        """Where the episode is now: the `.part` file while recording, the `.atraj` file after `end`."""
        return self._writer.path

    def message(self, role: Role, content: str, token_ids: list[int] | None = None) -> Message:
        """Record a system/user message and the ids appended for it (None if the turn is not token-exact)."""
        return self.record(Message(role=role, content=content, token_ids=token_ids))

    def model_call(
        self, *, prompt_token_ids: list[int] | None, output_token_ids: list[int] | None, text: str,
        finish_reason: str, latency_s: float, logprobs: list[float] | None = None,
        tool_calls: list[ToolCall] | list[dict[str, Any]] = (), content: str | None = None,
        token_exact: bool = True, model: str | None = None,
    ) -> ModelCall:
        """Record one model call: ids appended since the last output, sampled ids, their logprobs, and text."""
        calls = [c if isinstance(c, ToolCall) else ToolCall(**c) for c in tool_calls]
        return self.record(ModelCall(
            prompt_token_ids=prompt_token_ids, output_token_ids=output_token_ids, logprobs=logprobs, text=text,
            content=content, tool_calls=calls, finish_reason=finish_reason, latency_s=latency_s,
            token_exact=token_exact, model=model,
        ))

    def tool_result(
        self, *, call_id: str, name: str, content: str, token_ids: list[int] | None = None,
        is_error: bool = False, latency_s: float = 0.0,
    ) -> ToolResult:
        """Record a tool's result text and the ids appended for it."""
        return self.record(ToolResult(
            call_id=call_id, name=name, content=content, token_ids=token_ids, is_error=is_error, latency_s=latency_s,
        ))

    def record(self, event: Event) -> Event:
        """Check and append one prebuilt event; return it."""
        if not isinstance(event, (Message, ModelCall, ToolResult)):
            raise TraceError(f"cannot record a {type(event).__name__}; use message, model_call or tool_result")
        self._check_open()
        if isinstance(event, ModelCall):
            self._check_call(event)
        elif event.token_ids is not None:
            _ids_bytes(event.token_ids, f"{type(event).__name__}.token_ids")
        self._writer.append(event)
        self._track(event)
        return event

    def mark(self) -> tuple:
        """A point of this unfinished episode to roll back to."""
        self._check_open()
        return self._writer.mark(), list(self._pending)

    def rollback(self, mark: tuple) -> None:
        """Drop every record appended since `mark` (a line torn by an interruption included)."""
        self._check_open()
        at, pending = mark
        self._writer.truncate(at)
        self._pending = list(pending)

    def discard(self) -> None:
        """Remove the file of an unfinished episode this recorder created (everything in it was dropped); nothing
        more can be recorded. A resumed episode holds an earlier session's records and is never discarded."""
        self._check_open()
        if not self._created:
            raise TraceError(f"{self.path} was resumed, not created by this recorder; it is kept")
        self._writer.truncate((0, 0))
        self._writer.discard()

    def end(self, reward: Reward, verdict: Verdict | None = None, status: str = "done") -> Path:
        """Append the end line, fsync, rename to `<id>.atraj`; return the final path."""
        self._check_open()
        self._writer.append(End(reward=reward, verdict=verdict, status=status))
        return self._writer.finalize(self.final_path)

    def close(self) -> None:
        """Stop recording without an end line: the file stays `<id>.atraj.part` (resumable, not exported)."""
        self._writer.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        finished = self._writer.closed
        self.close()
        if exc_type is None and not finished:
            raise TraceError(f"episode {self.header.episode_id!r} left without Recorder.end(); kept as {self.path}")

    def _check_open(self) -> None:
        if self._writer.closed:
            raise TraceError(f"episode {self.header.episode_id!r} is closed or ended; nothing more can be recorded")

    def _track(self, record) -> None:
        if isinstance(record, ModelCall):
            self._pending = []
        elif record.token_ids is not None:
            self._pending.append((type(record).__name__, record.token_ids))

    def _check_call(self, call: ModelCall) -> None:
        try:
            check_model_call(call)
        except ValueError as err:
            raise TraceError(str(err)) from None
        if not call.token_exact:
            return
        prompt = _ids_bytes(call.prompt_token_ids, "prompt_token_ids")
        _ids_bytes(call.output_token_ids, "output_token_ids")
        at = 0
        for kind, ids in self._pending:
            found = _find_run(prompt, _ids_bytes(ids, kind), at)
            if found < 0:
                raise TraceError(
                    f"the ids of a {kind} recorded since the last call are not a run of this call's "
                    "prompt_token_ids (in order); record exactly the ids the loop appended"
                )
            at = found + 4 * len(ids)
