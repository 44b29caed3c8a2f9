"""Spooling of output lines: worker processes append candidate lines to their own spool files and hand back
only (shard, offset, length); the main process, once it knows which episodes it keeps, assembles the final
files from those ranges in order with in-kernel copies (`os.copy_file_range`, else pread/write).

This keeps ~10 KB per episode off the worker -> main pipe and out of Python. The final files are written
to temp names, fsynced and renamed by `Assembly.commit`. This module does not decide what is kept.
"""
import errno
import os
import shutil
from pathlib import Path

Ref = tuple[str, int, int]  # (shard name, offset, length)


class Spool:
    """This process's append-only spool files, one per output stream (opened on first use)."""

    def __init__(self, directory: Path, streams: tuple[str, ...]):
        self.directory = directory
        self.streams = streams
        self._fds: list[int] | None = None
        self._sizes: list[int] = []
        self._shard = ""

    def append(self, *lines: bytes) -> list[Ref]:
        """Append one line per stream (b"" for none); return where each went."""
        if self._fds is None:
            self._shard = str(os.getpid())
            self._fds = [os.open(self.directory / f"{stream}.{self._shard}", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                 0o600) for stream in self.streams]
            self._sizes = [0] * len(self.streams)
        refs = []
        for index, line in enumerate(lines):
            view = memoryview(line)
            while view:
                view = view[os.write(self._fds[index], view):]
            refs.append((self._shard, self._sizes[index], len(line)))
            self._sizes[index] += len(line)
        return refs

    def close(self) -> None:
        """Close the spool files (a worker process's are closed when it exits)."""
        for fd in self._fds or ():
            os.close(fd)
        self._fds = None


_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}


def _copy(src: int, dst: int, offset: int, length: int) -> None:
    """Copy `length` bytes at `offset` of `src` to the end of `dst`, in the kernel when it can."""
    if hasattr(os, "copy_file_range"):
        try:
            while length:
                done = os.copy_file_range(src, dst, length, offset)
                if done == 0:
                    raise OSError(errno.EIO, f"spool file ended early ({length} bytes missing)")
                offset, length = offset + done, length - done
            return
        except OSError as err:
            if err.errno not in _NO_KERNEL_COPY:
                raise
    while length:
        chunk = os.pread(src, min(length, 1 << 20), offset)
        os.write(dst, chunk)
        offset, length = offset + len(chunk), length - len(chunk)


class Assembly:
    """The ordered ranges of kept lines per stream; `commit` writes `out_dir/<stream>.jsonl` atomically."""

    def __init__(self, out_dir: Path, streams: tuple[str, ...]):
        self.out_dir = out_dir
        self.streams = streams
        self.spool_dir = out_dir / ".spool"
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(parents=True)
        self._ranges: list[list[list]] = [[] for _ in streams]

    def keep(self, refs: list[Ref]) -> None:
        """Add one kept episode's lines (one ref per stream), merging with the previous range when adjacent."""
        for ranges, (shard, offset, length) in zip(self._ranges, refs):
            if not length:
                continue
            last = ranges[-1] if ranges else None
            if last and last[0] == shard and last[1] + last[2] == offset:
                last[2] += length
            else:
                ranges.append([shard, offset, length])

    def commit(self) -> None:
        """Write every stream's kept ranges, in order, to its final file (temp + fsync + rename)."""
        for stream, ranges in zip(self.streams, self._ranges):
            tmp = self.out_dir / f".{stream}.jsonl.tmp"
            shards: dict[str, int] = {}
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for shard, offset, length in ranges:
                    if shard not in shards:
                        shards[shard] = os.open(self.spool_dir / f"{stream}.{shard}", os.O_RDONLY)
                    _copy(shards[shard], dst, offset, length)
                os.fsync(dst)
            finally:
                os.close(dst)
                for fd in shards.values():
                    os.close(fd)
            os.replace(tmp, self.out_dir / f"{stream}.jsonl")
        self.discard()

    def discard(self) -> None:
        """Remove the spool and any temp outputs (after commit, or when the run fails)."""
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        for stream in self.streams:
            (self.out_dir / f".{stream}.jsonl.tmp").unlink(missing_ok=True)
