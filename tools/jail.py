"""Race-free path resolution beneath one root directory, and the typed errors for refusing a path.

Every path is a tuple of checked names resolved from a directory fd held on the root: never a string
prefix test, never `..`, never an absolute path, never a symbolic link (any link is refused, in or out).
On Linux >= 5.6 a directory is opened with one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call
(syscall 437 through ctypes); elsewhere, or if it is blocked, by a component walk of `openat(O_NOFOLLOW)`
from dir fds. Final names are opened/made/removed relative to their parent's fd with O_NOFOLLOW, so
swapping a directory for a symlink between a check and a use cannot redirect the operation.
It does NOT know file-system commands (tools/fs_real.py) and it cannot stop hard links that someone
placed inside the root beforehand, nor a directory that another process moves out while it is open.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RENAME_NOREPLACE = 1


class SandboxError(Exception):
    """An operation the sandbox refuses; the message says why and what to do instead."""


class SandboxEscape(SandboxError):
    """A path that leaves, or could leave, the sandbox root: '..', absolute, a symlink, NUL, bad encoding."""


class SandboxReadOnly(SandboxError):
    """A change requested in a sandbox that was opened read-only."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
if _LIBC is not None:
    _LIBC.syscall.restype = ctypes.c_long
    if hasattr(_LIBC, "renameat2"):
        _LIBC.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def check_name(name: str) -> str:
    """Return `name` if it is one safe path component; raise SandboxEscape saying what is wrong."""
    if not isinstance(name, str):
        raise SandboxEscape(f"a path name must be a string, got {type(name).__name__}")
    if name in ("", ".", ".."):
        raise SandboxEscape(f"'{name}' is not allowed as a name inside the sandbox"
                            + ("; use cd('..') to go up one level" if name == ".." else ""))
    if "/" in name:
        raise SandboxEscape(f"'{name}' contains '/'; give one name at a time")
    if "\x00" in name:
        raise SandboxEscape(f"{name!r} contains a NUL character, which no file name may contain")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        raise SandboxEscape(f"{name!r} contains a control character; use printable names")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise SandboxEscape(f"{name!r} is not valid Unicode text (a lone surrogate); "
                            "use a UTF-8 name") from None
    return name


def split_path(path: str) -> tuple[str, ...]:
    """A root-relative path ('a/b', './a') as checked names; absolute paths and '..' raise SandboxEscape."""
    if not isinstance(path, str):
        raise SandboxEscape(f"a path must be a string, got {type(path).__name__}")
    if path.startswith("/"):
        raise SandboxEscape(f"'{path}' is an absolute path; paths here are relative to the sandbox root")
    return tuple(check_name(p) for p in path.split("/") if p not in ("", "."))


def display_name(name: str) -> str:
    """A name read from disk, made printable: undecodable bytes become \\x.. escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Jail:
    """A directory root and the only ways to open things beneath it. Close it (or use `with`) when done."""

    def __init__(self, root: str | os.PathLike, *, use_openat2: Optional[bool] = None) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise NotADirectoryError(f"sandbox root '{root}' is not an existing directory; create it first")
        self.root = path.resolve(strict=True)
        self._root_fd = os.open(self.root, O_DIR)
        self._closer = weakref.finalize(self, os.close, self._root_fd)
        probe = _openat2_works(self._root_fd)
        if use_openat2 and not probe:
            self.close()
            raise OSError(errno.ENOSYS, "openat2 is not available here (Linux >= 5.6 without seccomp "
                                        "blocking it); pass use_openat2=None to fall back")
        self.uses_openat2 = probe if use_openat2 is None else bool(use_openat2)
        # Called as race_hook(stage, names) just before each open; lets tests swap files at the worst moment.
        self.race_hook: Optional[Callable[[str, tuple[str, ...]], None]] = None

    def close(self) -> None:
        """Release the root fd (also done when the Jail is garbage-collected)."""
        self._closer()
        self._root_fd = -1

    def __enter__(self) -> "Jail":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def directory(self, names: tuple[str, ...] | list[str]) -> Iterator[int]:
        """An fd on the directory `names` beneath the root, closed on exit."""
        fd = self.open_dir(names)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_dir(self, names: tuple[str, ...] | list[str]) -> int:
        """Open directory `names` (checked names) beneath the root; the caller closes the fd."""
        names = tuple(check_name(n) for n in names)
        if self._root_fd < 0:
            raise ValueError("this sandbox has been closed")
        if not names:
            return os.dup(self._root_fd)
        if self.uses_openat2:
            self._hook("resolve", names)
            return self._openat2("/".join(names))
        fd = os.dup(self._root_fd)
        try:
            for i, name in enumerate(names):
                self._hook("walk", names[: i + 1])
                next_fd = self.open_in(fd, name, O_DIR | os.O_NOFOLLOW, shown="/".join(names[: i + 1]))
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_in(self, dir_fd: int, name: str, flags: int, mode: int = 0o644, *, shown: str = "",
                listed: bool = False) -> int:
        """os.open of one name relative to `dir_fd`, never following a symlink (refused as an escape).

        `listed=True` is for names read from the directory itself: they may hold characters a model may
        not type (control characters, undecodable bytes) and are safe as long as they are one component.
        """
        if not listed or name in ("", ".", "..") or "/" in name:
            check_name(name)
        self._hook("open", (name,))
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and self.is_symlink(dir_fd, name, listed=True):
                raise SandboxEscape(f"'{shown or name}' is a symbolic link; the sandbox never follows links") \
                    from None
            raise

    def lstat_in(self, dir_fd: int, name: str, *, listed: bool = False) -> Optional[os.stat_result]:
        """lstat of one name in `dir_fd`, or None if it does not exist (`listed` as in `open_in`)."""
        if not listed or name in ("", ".", "..") or "/" in name:
            check_name(name)
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def is_symlink(self, dir_fd: int, name: str, *, listed: bool = False) -> bool:
        st = self.lstat_in(dir_fd, name, listed=listed)
        return st is not None and stat.S_ISLNK(st.st_mode)

    def _hook(self, stage: str, names: tuple[str, ...]) -> None:
        if self.race_hook is not None:
            self.race_hook(stage, names)

    def _openat2(self, relative: str) -> int:
        how = _OpenHow(O_DIR, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
        fd = _LIBC.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(self._root_fd),
                           ctypes.c_char_p(os.fsencode(relative)), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.ELOOP, errno.EXDEV):
            raise SandboxEscape(f"'{relative}' is or passes through a symbolic link; "
                                "the sandbox never follows links")
        raise OSError(err, os.strerror(err), relative)


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """Rename without ever replacing an existing `dst`: renameat2(RENAME_NOREPLACE) where libc has it;
    otherwise a check then a rename, which could replace a file another process creates in between."""
    check_name(src)
    check_name(dst)
    renameat2 = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if renameat2 is not None:
        if renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), dst)
    if _exists_in(dst_dir_fd, dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def _exists_in(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _openat2_works(root_fd: int) -> bool:
    if _LIBC is None:
        return False
    how = _OpenHow(O_DIR, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
    fd = _LIBC.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(root_fd), ctypes.c_char_p(b"."),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        return False
    os.close(fd)
    return True
