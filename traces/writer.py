"""Append-only, crash-safe writer of one `.atraj` file.

Each record is one framed line written with O_APPEND (looping over short writes). A failed append truncates the
file back to its last whole line, so the file never keeps a half line it knows about; a crash can leave one,
which readers drop and `reopen` cuts off before appending. `finalize` fsyncs, renames `<id>.atraj.part` to
`<id>.atraj` and fsyncs the directory. Lines carry their 0-based `seq`; a file of an older version being resumed
gets lines of its own version (line.encode_line). `discard` removes a file this writer created before any record
reached it, so a failed header write leaves nothing behind; `truncate` cuts the file back to an earlier whole
line (an exchange the user dropped, see Recorder.rollback). This module does not know what the records mean
(see `recorder.py`).
"""
import errno
import os
from pathlib import Path
from typing import Literal

from tinygpt.traces.atraj import FORMAT_VERSION, Line
from tinygpt.traces.errors import TraceError, TraceWriteError
from tinygpt.traces.line import encode_line
from tinygpt.traces.reader import parse_records

FsyncPolicy = Literal["event", "episode", "none"]
FSYNC_POLICIES = ("event", "episode", "none")


def fsync_directory(directory: Path) -> None:
    """Make a create or rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AppendWriter:
    """Appends framed records to one file; fsyncs per record ("event"), at finalize ("episode") or never."""

    def __init__(self, path: Path, fd: int, size: int, records: int, fsync: FsyncPolicy,
                 version: int = FORMAT_VERSION):
        self.path = path
        self.records = records
        self.version = version
        self._fd: int | None = fd
        self._size = size
        self._fsync = fsync

    @classmethod
    def create(cls, path: Path, fsync: FsyncPolicy = "event") -> "AppendWriter":
        """Create `path` and return a writer appending to it.

        `path` must not exist, except as an empty file (what a failed header write left before this was
        fixed): that holds nothing and is taken over.
        """
        if fsync not in FSYNC_POLICIES:
            raise TraceError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            if os.fstat(fd).st_size:
                os.close(fd)
                raise TraceError(f"{path} already exists; resume it with Recorder.resume or pick a new episode id")
        writer = cls(path, fd, 0, 0, fsync)
        try:
            if fsync != "none":
                fsync_directory(path.parent)
        except BaseException:
            writer.discard()
            raise
        return writer

    @classmethod
    def reopen(cls, path: Path, fsync: FsyncPolicy = "event") -> tuple["AppendWriter", list[Line], int]:
        """Open an existing file for appending; return (writer, its records, torn bytes cut off its tail).

        A torn last line is truncated away first, so the next record starts on a fresh line and never merges
        with it. A file damaged before its last line is refused (CorruptTraceError): appending would hide it.
        """
        if fsync not in FSYNC_POLICIES:
            raise TraceError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        data = path.read_bytes()
        records, torn = parse_records(data, str(path))
        size = len(data) - torn
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            if torn:
                os.ftruncate(fd, size)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        version = records[0].version if records else FORMAT_VERSION
        return cls(path, fd, size, len(records), fsync, version), records, torn

    def append(self, record: Line) -> None:
        """Append one record as a line; raise TraceWriteError (file left at its last whole line) on failure."""
        if self._fd is None:
            raise TraceError(f"{self.path} is closed; no more records can be appended")
        line = encode_line(record, self.records, self.version)
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view):]
            if self._fsync == "event":
                os.fsync(self._fd)
        except OSError as err:
            raise self._write_failed(err) from err
        self._size += len(line)
        self.records += 1

    def mark(self) -> tuple[int, int]:
        """Where the file ends now: (bytes, records), for `truncate`."""
        return self._size, self.records

    def truncate(self, mark: tuple[int, int]) -> None:
        """Cut the file back to `mark` (a line boundary this writer reached), dropping every later line, a
        half-written one included; fsynced unless the policy is "none"."""
        if self._fd is None:
            raise TraceError(f"{self.path} is closed; it cannot be cut back")
        size, records = mark
        if not (0 <= size <= self._size and 0 <= records <= self.records):
            raise TraceError(f"cannot cut {self.path} back to {size} bytes: it was never that long")
        try:
            os.ftruncate(self._fd, size)
            if self._fsync != "none":
                os.fsync(self._fd)
        except OSError as err:
            raise TraceWriteError(err.errno, f"could not cut {self.path} back to its first {records} records "
                                  f"({err.strerror}); the records after them are still in it") from err
        self._size, self.records = size, records

    def _write_failed(self, err: OSError) -> TraceWriteError:
        name = errno.errorcode.get(err.errno or 0, "?")
        state = f"the {self.records} records before it are intact"
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as trunc_err:
            state += f" (a partial line may remain at the tail, which readers drop: {trunc_err.strerror})"
        return TraceWriteError(
            err.errno,
            f"could not append record {self.records + 1} to {self.path}: {err.strerror} ({name}); {state}. "
            "Free disk space (or raise the file size limit) and continue with Recorder.resume(path).",
        )

    def finalize(self, final_path: Path) -> Path:
        """fsync, close, and atomically rename the file to `final_path`; return `final_path`."""
        if self._fd is None:
            raise TraceError(f"{self.path} is closed; it cannot be finalized")
        if final_path.exists():
            raise TraceError(f"{final_path} already exists; refusing to overwrite a finished episode")
        try:
            if self._fsync != "none":
                os.fsync(self._fd)
        except OSError as err:
            raise self._write_failed(err) from err
        self.close()
        os.rename(self.path, final_path)
        if self._fsync != "none":
            fsync_directory(final_path.parent)
        self.path = final_path
        return final_path

    def close(self) -> None:
        """Close the file without finalizing it (it stays `.part`, readable, resumable)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the file; only for one that holds no record yet (a failed header write)."""
        if self.records:
            raise TraceError(f"{self.path} holds {self.records} records; it is kept, not discarded")
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._fd is None
