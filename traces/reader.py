"""Reading `.atraj` files: whole episodes, with a torn final line dropped and reported, never guessed at.

`read_episode` returns an `Episode` (header, events, end, torn byte count); `parse_records` does the same for
bytes; `list_traces` finds the files of a directory. Only the last line of an unfinished (`.part`) file may be
torn; damage anywhere else, a line out of sequence, or a finished `.atraj` without its end line raises
CorruptTraceError. Every version up to FORMAT_VERSION is read. This module does not write files and does not
build training data.
"""
import os
import re
import stat
from pathlib import Path

import msgspec

from tinygpt.traces.atraj import FORMAT_VERSION, End, Event, Header, Line
from tinygpt.traces.errors import CorruptTraceError, TraceError
from tinygpt.traces.line import decode_payload, split_lines

FINAL_SUFFIX = ".atraj"
PART_SUFFIX = ".atraj.part"


class Episode(msgspec.Struct, frozen=True, kw_only=True):
    """One episode as read from disk. `end` is None while it is unfinished (a `.part` file or a torn end)."""

    path: str
    header: Header
    events: list[Event]
    end: End | None
    torn_bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.end is not None


_VERSION = re.compile(rb'"version":(\d{1,9})[,}]')


def check_version(data: bytes, name: str) -> None:
    """Refuse, with a clear message, a file whose header says it was written by a newer format version.

    Called when a file fails to parse: every version's first line holds `"version":N`, whatever its framing.
    """
    end = data.find(b"\n")
    found = _VERSION.search(data, 0, len(data) if end < 0 else end)
    if found:
        _refuse_newer(int(found[1]), name)


def _refuse_newer(version: int, name: str) -> None:
    if version > FORMAT_VERSION:
        raise TraceError(
            f"{name} is .atraj version {version}, newer than this reader (version {FORMAT_VERSION}); "
            "upgrade tinygpt to read it"
        )


def is_finished_name(name: str) -> bool:
    """True for a finished episode's file name (`.atraj`, renamed after its end line was synced)."""
    return name.endswith(FINAL_SUFFIX)


def check_framing(header: Header, sequenced: bool, name: str) -> None:
    """Raise CorruptTraceError when the lines' framing does not match the header's version (seq from 2 on)."""
    _refuse_newer(header.version, name)
    if sequenced != (header.version >= 2):
        raise CorruptTraceError(
            f"{name}: the header says version {header.version} but the lines "
            + ("carry" if sequenced else "lack") + " sequence numbers; the file was altered after it was written"
        )


def check_finished(records: list, name: str) -> None:
    """Raise CorruptTraceError when a finished `.atraj` does not end with its end record."""
    if is_finished_name(name) and records and not isinstance(records[-1], End):
        raise CorruptTraceError(
            f"{name}: a finished episode (.atraj) must end with an end record but its last line is a "
            f"{type(records[-1]).__name__}; the file was cut after it was written. Restore it from a copy or delete it."
        )


def check_order(records: list, name: str) -> None:
    """Raise CorruptTraceError unless records are: one header first, events, and at most one end, last."""
    if not records:
        raise TraceError(f"{name} holds no complete line (not even a header); it is empty or fully torn")
    if not isinstance(records[0], Header):
        raise CorruptTraceError(f"{name}: the first line is a {type(records[0]).__name__}, not a header")
    for number, record in enumerate(records[1:], 2):
        if isinstance(record, Header):
            raise CorruptTraceError(f"{name}: line {number} is a second header")
        if isinstance(record, End) and number != len(records):
            raise CorruptTraceError(f"{name}: line {number} is an end record but more records follow it")


def parse_records(data: bytes, name: str = "<bytes>") -> tuple[list[Line], int]:
    """Decode file bytes into records; return (records, torn_bytes). The first record must be a Header.

    A `name` ending in `.atraj` is a finished episode: a torn or missing end line is damage there.
    """
    try:
        payloads, torn, sequenced = split_lines(data, name, is_finished_name(name))
        if not payloads:
            return [], torn
        first = decode_payload(payloads[0], name, 1)
    except CorruptTraceError:
        check_version(data, name)
        raise
    records = [first] + [decode_payload(p, name, n) for n, p in enumerate(payloads[1:], 2)]
    check_order(records, name)
    check_framing(first, sequenced, name)
    check_finished(records, name)
    return records, torn


def episode_from_records(records: list[Line], torn: int, name: str) -> Episode:
    """Assemble an Episode from parsed records (see `parse_records`)."""
    check_order(records, name)
    end = records[-1] if isinstance(records[-1], End) else None
    events = records[1:-1] if end is not None else records[1:]
    return Episode(path=name, header=records[0], events=events, end=end, torn_bytes=torn)


def _open_regular(path: str | Path) -> int:
    """A read-only descriptor of the plain file at `path`; a TraceError for anything else (never blocks on a
    FIFO or a device that happens to be named like a trace)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise TraceError(f"{path} does not exist") from None
    except OSError as err:
        raise TraceError(f"cannot read {path}: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory; pass an .atraj file" if stat.S_ISDIR(mode) else "not a regular file"
        raise TraceError(f"{path} is {what}")
    return fd


def read_trace_bytes(path: str | Path) -> bytes:
    """A trace file's bytes, or a TraceError that says why they cannot be read."""
    try:
        with open(_open_regular(path), "rb") as handle:
            return handle.read()
    except OSError as err:
        raise TraceError(f"cannot read {path}: {err.strerror}") from None


def read_trace_files(paths: list[str]) -> list[bytes | TraceError]:
    """The bytes of many trace files (or the TraceError for each unreadable one), in order.

    All files are opened and announced to the kernel first (posix_fadvise WILLNEED), so cold reads from
    disk proceed in parallel instead of one latency at a time.
    """
    opened: list[int | TraceError] = []
    for path in paths:
        try:
            fd = _open_regular(path)
        except TraceError as err:
            opened.append(err)
            continue
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        opened.append(fd)
    out: list[bytes | TraceError] = []
    for path, fd in zip(paths, opened):
        if isinstance(fd, TraceError):
            out.append(fd)
            continue
        try:
            with open(fd, "rb") as handle:
                out.append(handle.read())
        except OSError:
            out.append(_unreadable(path))
    return out


def _unreadable(path: str) -> TraceError:
    try:
        read_trace_bytes(path)
    except TraceError as err:
        return err
    return TraceError(f"cannot read {path}")


def read_episode(path: str | Path) -> Episode:
    """Read one `.atraj` or `.atraj.part` file. A torn last line is dropped and counted in `torn_bytes`."""
    path = Path(path)
    data = read_trace_bytes(path)
    records, torn = parse_records(data, str(path))
    return episode_from_records(records, torn, str(path))


def list_traces(root: str | Path, include_partial: bool = False) -> list[Path]:
    """The `.atraj` files under `root` (a file or a directory, searched recursively), sorted by path."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise TraceError(f"{root} is neither a trace file nor a directory of traces")
    suffixes = (FINAL_SUFFIX, PART_SUFFIX) if include_partial else (FINAL_SUFFIX,)
    found = []
    for dirpath, _, names in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in names if n.endswith(suffixes))
    return [Path(p) for p in sorted(found)]  # sorting strings: Path comparisons are slow at 100k files
