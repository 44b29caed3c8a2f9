"""Spooling of output lines: worker processes append candidate lines to their own spool files and hand back
only (shard, offset, length); the main process, as it decides what it keeps, copies those ranges in order
into the outputs with in-kernel copies (`os.copy_file_range`, else pread/write).

This keeps ~10 KB per episode off the worker -> main pipe and out of Python. Spools and outputs live in one
fresh work directory inside the output directory; `Assembly.commit` fsyncs the outputs and renames them into
place. This module does not decide what is kept.
"""
import contextlib
import errno
import os
import shutil
import signal
import tempfile
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
        if not chunk:
            raise OSError(errno.EIO, f"spool file ended early ({length} bytes missing)")
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
        offset, length = offset + len(chunk), length - len(chunk)


@contextlib.contextmanager
def _sigint_held():
    """Hold Ctrl-C (SIGINT) off for the block; one that arrives meanwhile is delivered right after it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Assembly:
    """Copies kept lines from the spools into outputs inside a fresh work directory `out_dir/.traces-to-data-*`
    as they are decided, in order; `commit` fsyncs them and renames them (and any extra files, the report
    last) into `out_dir`, with Ctrl-C held off so that the outputs there are always one whole run's. Writeback
    is started every 64 MiB so the final fsync does not wait for the whole output. Nothing outside the work
    directory is written before `commit`, and `discard` removes the work directory only."""

    _FLUSH_BYTES = 8 << 20
    _WRITEBACK_BYTES = 64 << 20

    def __init__(self, out_dir: Path, streams: tuple[str, ...]):
        self.out_dir = out_dir
        self.streams = streams
        self._dst: list[int] = []
        self._shards: list[dict[str, int]] = [{} for _ in streams]
        out_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = Path(tempfile.mkdtemp(prefix=".traces-to-data-", dir=out_dir))
        try:
            for stream in streams:
                self._dst.append(os.open(self._tmp(stream), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except BaseException:
            self.discard()
            raise
        self._ranges: list[list[list]] = [[] for _ in streams]
        self._pending = 0
        self._written = [0] * len(streams)
        self._kicked = [0] * len(streams)

    def _tmp(self, stream: str) -> Path:
        return self.spool_dir / f"{stream}.jsonl"

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
            self._pending += length
        if self._pending >= self._FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Copy the pending ranges to the outputs (the workers wrote them before reporting them)."""
        for index, stream in enumerate(self.streams):
            shards = self._shards[index]
            for shard, offset, length in self._ranges[index]:
                if shard not in shards:
                    shards[shard] = os.open(self.spool_dir / f"{stream}.{shard}", os.O_RDONLY)
                _copy(shards[shard], self._dst[index], offset, length)
                self._written[index] += length
            self._ranges[index] = []
            if hasattr(os, "posix_fadvise") and self._written[index] - self._kicked[index] >= self._WRITEBACK_BYTES:
                # On Linux, DONTNEED starts asynchronous writeback of the dirty range (and drops nothing dirty).
                os.posix_fadvise(self._dst[index], self._kicked[index], 0, os.POSIX_FADV_DONTNEED)
                self._kicked[index] = self._written[index]
        self._pending = 0

    def commit(self, extra: dict[str, bytes]) -> None:
        """Copy what is pending, fsync, and rename every stream to `<stream>.jsonl`, then each `extra` file
        (name -> bytes), in `out_dir`; the renames run with Ctrl-C held off."""
        self.flush()
        for fd in self._dst:
            os.fsync(fd)
        names = [f"{stream}.jsonl" for stream in self.streams]
        for name, data in extra.items():
            fd = os.open(self.spool_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            names.append(name)
        with _sigint_held():
            for name in names:
                os.replace(self.spool_dir / name, self.out_dir / name)
        directory = os.open(self.out_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.discard()

    def discard(self) -> None:
        """Close everything and remove the work directory (after commit, or when the run fails)."""
        for fd in self._dst + [fd for shards in self._shards for fd in shards.values()]:
            os.close(fd)
        self._dst, self._shards = [], [{} for _ in self.streams]
        shutil.rmtree(self.spool_dir, ignore_errors=True)
