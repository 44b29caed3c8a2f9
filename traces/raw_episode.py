"""A fast read-only view of an episode for bulk export: token ids and logprobs stay the JSON bytes on disk.

`read_raw_episode` makes the same checks as `reader.read_episode` (CRC per line, torn last line dropped, strict
fields, record order) but leaves id arrays as `msgspec.Raw`, checked to be arrays of non-negative integers
without building a Python int per id; `row_json` then splices those bytes into a training row. That is ~2x
less work per episode than decode + encode, and exact by construction. Use `reader` for anything else.
"""
from pathlib import Path
from typing import Union

import msgspec

from tinygpt.traces.atraj import End, Header, Role, Sampling, ToolCall, Usage
from tinygpt.traces.errors import CorruptTraceError
from tinygpt.traces.line import split_lines
from tinygpt.traces.reader import (
    check_finished, check_framing, check_order, check_version, is_finished_name, parse_records, read_trace_bytes,
)

_TRUE = b"1,"
_FALSE = b"0,"


class _Raw(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Base of the raw records: same names, tags and strictness as the records in atraj.py."""


class RawMessage(_Raw, kw_only=True, tag="message", tag_field="kind"):
    role: Role
    content: str
    token_ids: msgspec.Raw = msgspec.Raw(b"null")
    tool_calls: list[ToolCall] = []


class RawModelCall(_Raw, kw_only=True, tag="model_call", tag_field="kind"):
    prompt_token_ids: msgspec.Raw
    output_token_ids: msgspec.Raw
    logprobs: msgspec.Raw = msgspec.Raw(b"null")
    text: str
    content: str | None = None
    tool_calls: list[ToolCall] = []
    finish_reason: str
    latency_s: float
    token_exact: bool = True
    model: str | None = None
    cached_tokens: int = 0
    sampling: Sampling | None = None
    usage: Usage | None = None


class RawToolResult(_Raw, kw_only=True, tag="tool_result", tag_field="kind"):
    call_id: str
    name: str
    content: str
    token_ids: msgspec.Raw = msgspec.Raw(b"null")
    is_error: bool = False
    latency_s: float = 0.0
    truncated: bool = False


RawEvent = Union[RawMessage, RawModelCall, RawToolResult]
_DECODER = msgspec.json.Decoder(Union[Header, RawMessage, RawModelCall, RawToolResult, End])


class RawEpisode(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Like reader.Episode, with RawMessage / RawModelCall / RawToolResult events."""

    path: str
    header: Header
    events: list[RawEvent]
    end: End | None
    torn_bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.end is not None


_ID_BYTES = b"0123456789,"


def _id_body(raw: msgspec.Raw) -> bytes | None:
    """The inside of a raw JSON array of non-negative integers (b"" for null or []); None if it is not one.

    msgspec has already checked the JSON syntax, so digits and commas alone mean non-negative integers.
    """
    data = bytes(raw)
    if data[:1] == b"[":
        body = data[1:-1]
        if not body.translate(None, _ID_BYTES):
            return body
        compact = body.translate(None, b" \t\r\n")  # JSON allows whitespace; our writer never emits it
        if not compact.translate(None, _ID_BYTES):
            return compact
    return b"" if data == b"null" else None


def id_count(raw: msgspec.Raw) -> int:
    """Number of ids in a raw JSON array of non-negative integers (0 for null); CorruptTraceError otherwise."""
    body = _id_body(raw)
    if body is None:
        raise CorruptTraceError(f"expected an array of non-negative integer token ids, got {bytes(raw)[:40]!r}")
    return body.count(b",") + 1 if body else 0


def read_raw_episode(path: str | Path) -> RawEpisode:
    """Read an episode with ids left as raw JSON; errors are the full reader's (TraceError subclasses)."""
    return parse_raw_episode(read_trace_bytes(path), str(path))


def parse_raw_episode(data: bytes, name: str) -> RawEpisode:
    """`read_raw_episode` for bytes already read (see reader.read_trace_files)."""
    try:
        payloads, torn, sequenced = split_lines(data, name, is_finished_name(name))
    except CorruptTraceError:
        check_version(data, name)
        raise
    try:
        records = [_DECODER.decode(p) for p in payloads]
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        parse_records(data, name)  # raises the precise error: version, line number, field
        raise CorruptTraceError(f"{name}: {err}") from err
    check_order(records, name)
    check_framing(records[0], sequenced, name)
    check_finished(records, name)
    end = records[-1] if isinstance(records[-1], End) else None
    events = records[1:-1] if end is not None else records[1:]
    return RawEpisode(path=name, header=records[0], events=events, end=end, torn_bytes=torn)


def _json_str(value: str) -> bytes:
    return msgspec.json.encode(value)


def row_json(episode: RawEpisode, failed_calls: set[int] = frozenset()) -> tuple[bytes, int, int]:
    """The TrainingRow JSON line (newline included), its token count, and its count of loss-mask ones.

    Byte-identical to `msgspec.json.encode(export.training_row(...)) + b"\\n"` (the tests check it).
    `failed_calls` holds indexes of calls whose outputs get mask 0 (see export.calls_with_errors).
    """
    ids: list[bytes] = []
    mask: list[bytes] = []
    trained = 0
    calls = (e for e in episode.events if isinstance(e, RawModelCall))
    for index, call in enumerate(calls):
        for raw, label in ((call.prompt_token_ids, "prompt"), (call.output_token_ids, "output")):
            body = _id_body(raw)
            if body is None:
                raise CorruptTraceError(
                    f"{episode.path}: {label}_token_ids of call {index + 1} is not an array of non-negative "
                    "integer token ids"
                )
            if body:
                n = body.count(b",") + 1
                ids.append(body)
                sampled = label == "output" and index not in failed_calls
                mask.append((_TRUE if sampled else _FALSE) * n)
                trained += n if sampled else 0
    h = episode.header
    mask_bytes = b"".join(mask)[:-1]
    total = len(mask_bytes) // 2 + 1 if mask_bytes else 0
    line = b"".join((
        b'{"episode_id":', _json_str(h.episode_id), b',"task_id":', _json_str(h.task_id),
        b',"tokenizer_hash":', _json_str(h.tokenizer_hash), b',"input_ids":[', b",".join(ids),
        b'],"loss_mask":[', mask_bytes, b"]}\n",
    ))
    return line, total, trained
