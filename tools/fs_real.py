"""The 18 GorillaFileSystem operations on a real directory, jailed beneath it (optionally read-only).

Same names, parameters, result dicts and error strings as tools/fs_virtual.py wherever they make sense
(tested against it on random sequences); every path goes through tools/jail.py (fd-relative, no symlinks,
no '..'). Refusals raise typed errors: `SandboxEscape` ('..' in a name or path, NUL/control/undecodable
names, any symlink) and `SandboxReadOnly` (mkdir touch echo-to-file mv cp rm rmdir when read-only); a
Toolset shows them to the model as error results. '/' still means the sandbox root, as in the virtual FS.
Differences, on purpose: `ls`/`find` list names sorted; `cp` of a directory is a deep copy (links and
special files inside are skipped and counted in the result) and `mv`/`cp` keep no shared children;
moving/copying a directory onto itself is refused; where BFCL raises (echo into a directory, cp onto a
name already inside the destination) this returns an error dict; '', '.', '..' can't be created; files
over `max_file_bytes` aren't read and walks stop after `max_walk_entries`; `pwd` starts with the root
directory's own name, as the virtual FS starts with its root's name.
"""
from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from typing import Iterator, Optional

from tinygpt.tools.fs_virtual import format_size
from tinygpt.tools.jail import (O_DIR, Jail, SandboxEscape, SandboxReadOnly, check_name, display_name,
                                rename_noreplace)

_INVALID_NAME_CHARS = frozenset('|/\\?%*:"><')
_READ_ONLY_OPS = "ls, cd, pwd, cat, find, wc, sort, grep, du, tail, diff and echo without file_name"
_CHUNK = 1 << 20


class _TooBig(Exception):
    """A file or tree over this sandbox's limits."""


class _NotRegular(Exception):
    """A name that is neither a regular file nor a directory (device, fifo, socket)."""


class RealFileSystem:
    """GorillaFileSystem's operations on the directory `root`. Close it when done (or use `with`)."""

    def __init__(self, root: str | os.PathLike, *, read_only: bool = False, use_openat2: Optional[bool] = None,
                 max_file_bytes: int = 8 << 20, max_walk_entries: int = 100_000) -> None:
        self.jail = Jail(root, use_openat2=use_openat2)
        self.read_only = read_only
        self.max_file_bytes = max_file_bytes
        self.max_walk_entries = max_walk_entries
        self.cwd: tuple[str, ...] = ()

    @property
    def root_name(self) -> str:
        return self.jail.root.name

    def close(self) -> None:
        self.jail.close()

    def __enter__(self) -> "RealFileSystem":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- navigation -------------------------------------------------------------------------------

    def pwd(self) -> dict:
        return {"current_working_directory": "/" + "/".join((self.root_name, *self.cwd))}

    def ls(self, a: bool = False) -> dict:
        with self._here("ls") as fd:
            names = sorted(display_name(n) for n in os.listdir(fd))
        return {"current_directory_content": names if a else [n for n in names if not n.startswith(".")]}

    def cd(self, folder: str) -> dict:
        folder = folder.rstrip("/") or "/"
        if folder not in (".", "..", "/") and "/" in folder:
            return {"error": f"cd: {folder}: Unsupported path. Only one folder level at a time is supported."}
        if folder == "..":
            if not self.cwd:
                return {"error": "Current directory is already the root. Cannot go back."}
            self.cwd = self.cwd[:-1]
            return {}
        target = self._resolve_dir(folder)
        if isinstance(target, dict):
            return target
        self.cwd = target
        return {"current_working_directory": target[-1] if target else self.root_name}

    def _resolve_dir(self, path: str) -> tuple[str, ...] | dict:
        """The names of the directory at `path` (relative to cwd, or to the root if it starts with '/')."""
        if path == ".":
            return self.cwd
        if path == "/":
            return ()
        names = [] if path.startswith("/") else list(self.cwd)
        for part in path.strip("/").split("/"):
            if part == "..":
                raise SandboxEscape(f"'{path}': '..' is not allowed in a path; use cd('..') to go up one level")
            if part == ".":
                continue
            if part == "":
                return {"error": f"cd: '{path}': No such file or directory"}
            names.append(check_name(part))
        try:
            os.close(self.jail.open_dir(names))
        except (FileNotFoundError, NotADirectoryError):
            return {"error": f"cd: '{path}': No such file or directory"}
        return tuple(names)

    # --- creating and writing ---------------------------------------------------------------------

    def mkdir(self, dir_name: str) -> Optional[dict]:
        self._writable("mkdir")
        if not _valid_name(dir_name):
            return {"error": f"mkdir: cannot create directory '{dir_name}': Invalid character"}
        name = self._entry(dir_name)
        if name is None:
            return {"error": f"mkdir: cannot create directory '{dir_name}': "
                             + ("File exists" if dir_name == "." else "No such file or directory")}
        with self._here("mkdir") as fd:
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                return {"error": f"mkdir: cannot create directory '{dir_name}': File exists"}
        return None

    def touch(self, file_name: str) -> Optional[dict]:
        self._writable("touch")
        if not _valid_name(file_name):
            return {"error": f"touch: cannot touch '{file_name}': Invalid character"}
        name = self._entry(file_name)
        if name is None:
            return {"error": f"touch: cannot touch '{file_name}': "
                             + ("File exists" if file_name == "." else "No such file or directory")}
        with self._here("touch") as fd:
            try:
                os.close(self.jail.open_in(fd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return {"error": f"touch: cannot touch '{file_name}': File exists"}
        return None

    def echo(self, content: str, file_name: Optional[str] = None) -> Optional[dict]:
        if file_name is None:
            return {"terminal_output": content}
        if not _valid_name(file_name):
            return {"error": f"echo: cannot write to '{file_name}': Invalid character"}
        if not file_name:
            return {"terminal_output": content}
        self._writable("echo to a file")
        name = self._entry(file_name)
        if name is None:
            return {"error": f"echo: cannot write to '{file_name}': No such file"}
        with self._here("echo") as fd:
            try:
                out = self.jail.open_in(fd, name, os.O_WRONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                return {"error": f"echo: cannot write to '{file_name}': No such file"}
            except IsADirectoryError:
                return {"error": f"echo: cannot write to '{file_name}': Is a directory"}
            except OSError as exc:
                if exc.errno != errno.ENXIO:          # a FIFO nobody reads: say so instead of blocking
                    raise
                return {"error": f"echo: cannot write to '{file_name}': Not a regular file"}
            try:
                if not stat.S_ISREG(os.fstat(out).st_mode):
                    return {"error": f"echo: cannot write to '{file_name}': Not a regular file"}
                os.ftruncate(out, 0)
                _write_all(out, content.encode("utf-8"))
            finally:
                os.close(out)
        return None

    # --- reading ----------------------------------------------------------------------------------

    def cat(self, file_name: str) -> dict:
        if not _valid_name(file_name):
            return {"error": f"cat: '{file_name}': Invalid character"}
        try:
            return {"file_content": self._text(file_name)}
        except IsADirectoryError:
            return {"error": f"cat: '{file_name}': Is a directory"}
        except (FileNotFoundError, _NotRegular):
            return {"error": f"cat: '{file_name}': No such file or directory"}
        except _TooBig as exc:
            return {"error": f"cat: '{file_name}': {exc}"}

    def find(self, path: str = ".", name: Optional[str] = None) -> dict:
        target = self._resolve_dir(path)
        if isinstance(target, dict):
            return {"error": target["error"].replace("cd:", "find:", 1)}
        matches: list[str] = []
        try:
            with self.jail.directory(target) as fd:
                self._walk(fd, path.rstrip("/"), name, matches, [0])
        except _TooBig as exc:
            return {"error": f"find: {exc}"}
        return {"matches": matches}

    def wc(self, file_name: str, mode: str = "l") -> dict:
        if mode not in ("l", "w", "c"):
            return {"error": f"wc: invalid mode '{mode}'"}
        text = self._plain_text("wc", file_name)
        if isinstance(text, dict):
            return text
        if mode == "l":
            return {"count": len(text.splitlines()), "type": "lines"}
        if mode == "w":
            return {"count": len(text.split()), "type": "words"}
        return {"count": len(text), "type": "characters"}

    def sort(self, file_name: str) -> dict:
        text = self._plain_text("sort", file_name)
        return text if isinstance(text, dict) else {"sorted_content": "\n".join(sorted(text.splitlines()))}

    def grep(self, file_name: str, pattern: str) -> dict:
        text = self._plain_text("grep", file_name)
        if isinstance(text, dict):
            return text
        return {"matching_lines": [line for line in text.splitlines() if pattern in line]}

    def du(self, human_readable: bool = False) -> dict:
        try:
            with self._here("du") as fd:
                total = self._size(fd, [0])
        except _TooBig as exc:
            return {"error": f"du: {exc}"}
        return {"disk_usage": format_size(total, human_readable)}

    def tail(self, file_name: str, lines: int = 10) -> dict:
        text = self._plain_text("tail", file_name)
        if isinstance(text, dict):
            return text
        rows = text.splitlines()
        return {"last_lines": "\n".join(rows[-min(lines, len(rows)):])}

    def diff(self, file_name1: str, file_name2: str) -> dict:
        missing = {"error": f"diff: {file_name1} or {file_name2}: No such file or directory"}
        first, second = self._plain_text("diff", file_name1), self._plain_text("diff", file_name2)
        if isinstance(first, dict) or isinstance(second, dict):
            too_big = [t for t in (first, second) if isinstance(t, dict) and "too large" in t["error"]]
            return too_big[0] if too_big else missing
        pairs = zip(first.splitlines(), second.splitlines())
        return {"diff_lines": "\n".join(f"- {a}\n+ {b}" for a, b in pairs if a != b)}

    # --- moving, copying, removing ----------------------------------------------------------------

    def mv(self, source: str, destination: str) -> dict:
        return self._relocate("mv", "move", "moved", source, destination)

    def cp(self, source: str, destination: str) -> dict:
        return self._relocate("cp", "copy", "copied", source, destination)

    def _relocate(self, op: str, verb: str, done: str, source: str, destination: str) -> dict:
        self._writable(op)
        src = self._entry(source)
        with self._here(op) as fd:
            st = self.jail.lstat_in(fd, src) if src is not None else None
            if st is None:
                return {"error": f"{op}: cannot {verb} '{source}': No such file or directory"}
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                return {"error": f"{op}: cannot {verb} '{source}': Not a file or directory"}
            if "/" in destination:
                return {"error": f"{op}: path not allowed in destination. Provide only a file or directory name."}
            dst = self._entry(destination)
            if dst is None:
                return {"error": f"{op}: cannot {verb} '{source}' to '{destination}': Invalid argument"}
            dst_st = self.jail.lstat_in(fd, dst)
            if dst_st is None:
                skipped = self._transfer(op, fd, src, fd, dst)
                return {"result": f"'{source}' {done} to '{destination}'" + _skipped_note(skipped)}
            if not stat.S_ISDIR(dst_st.st_mode):
                return {"error": f"{op}: cannot {verb} '{source}' to '{destination}': Not a directory"}
            if dst == src:
                return {"error": f"{op}: cannot {verb} a directory, '{source}', into itself, "
                                 f"'{destination}/{source}'"}
            into = self.jail.open_in(fd, dst, O_DIR)
            try:
                if self.jail.lstat_in(into, src) is not None:
                    return {"error": f"{op}: cannot {verb} '{source}' to '{destination}/{source}': File exists"}
                skipped = self._transfer(op, fd, src, into, src)
            finally:
                os.close(into)
        return {"result": f"'{source}' {done} to '{destination}/{source}'" + _skipped_note(skipped)}

    def _transfer(self, op: str, src_fd: int, src: str, dst_fd: int, dst: str) -> int:
        if op == "mv":
            rename_noreplace(src_fd, src, dst_fd, dst)
            return 0
        return self._copy(src_fd, src, dst_fd, dst, listed=False)

    def rm(self, file_name: str) -> dict:
        self._writable("rm")
        name = self._entry(file_name)
        with self._here("rm") as fd:
            st = self.jail.lstat_in(fd, name) if name is not None else None
            if st is None:
                return {"error": f"rm: cannot remove '{file_name}': No such file or directory"}
            if stat.S_ISDIR(st.st_mode):
                self._remove_tree(fd, name, listed=False)
            else:
                os.unlink(name, dir_fd=fd)
        return {"result": f"'{file_name}' removed"}

    def rmdir(self, dir_name: str) -> dict:
        self._writable("rmdir")
        name = self._entry(dir_name)
        with self._here("rmdir") as fd:
            st = self.jail.lstat_in(fd, name) if name is not None else None
            if st is None:
                return {"error": f"rmdir: cannot remove '{dir_name}': No such file or directory"}
            if not stat.S_ISDIR(st.st_mode):
                return {"error": f"rmdir: cannot remove '{dir_name}': Not a directory"}
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                return {"error": f"rmdir: cannot remove '{dir_name}': Directory not empty"}
        return {"result": f"'{dir_name}' removed"}

    # --- helpers ----------------------------------------------------------------------------------

    def _writable(self, op: str) -> None:
        if self.read_only:
            raise SandboxReadOnly(f"{op} refused: this sandbox is read-only. Allowed here: {_READ_ONLY_OPS}.")

    def _entry(self, name: str) -> Optional[str]:
        """`name` as a name in the cwd; None if it can't be one ('', '.', or with '/'); '..' and unsafe
        characters raise SandboxEscape."""
        if ".." in name.split("/"):
            raise SandboxEscape(f"'{name}': '..' is not allowed in a name; use cd('..') to go up one level")
        if name in ("", ".") or "/" in name:
            return None
        return check_name(name)

    @contextmanager
    def _here(self, op: str) -> Iterator[int]:
        """An fd on the cwd; if the cwd vanished (changed outside), say so and how to recover."""
        try:
            fd = self.jail.open_dir(self.cwd)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"{op}: the current directory '{self.pwd()['current_working_directory']}' "
                                    "no longer exists; cd('/') to return to the root") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _text(self, file_name: str) -> str:
        """The text of regular file `file_name` in the cwd (UTF-8, undecodable bytes replaced).

        Raises FileNotFoundError, IsADirectoryError, _NotRegular or _TooBig; never follows a symlink.
        """
        name = self._entry(file_name)
        if name is None:
            raise FileNotFoundError(file_name)
        with self._here("read") as fd:
            src = self.jail.open_in(fd, name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(src)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(file_name)
            if not stat.S_ISREG(st.st_mode):
                raise _NotRegular(file_name)
            if st.st_size > self.max_file_bytes:
                raise _TooBig(f"File too large ({st.st_size} bytes; this sandbox reads at most "
                              f"{self.max_file_bytes}). Use tail, grep or wc on it instead.")
            data = _read_all(src, self.max_file_bytes + 1)
        finally:
            os.close(src)
        return data.decode("utf-8", "replace")

    def _plain_text(self, op: str, file_name: str) -> str | dict:
        """`_text`, or the virtual FS's error dict for `op` (directories count as missing, as there)."""
        try:
            return self._text(file_name)
        except (FileNotFoundError, IsADirectoryError, _NotRegular):
            return {"error": f"{op}: {file_name}: No such file or directory"}
        except _TooBig as exc:
            return {"error": f"{op}: {file_name}: {exc}"}

    def _walk(self, fd: int, base: str, name: Optional[str], out: list[str], seen: list[int]) -> None:
        """Pre-order listing for find: sorted names, directories descended without following links."""
        for entry in sorted(os.listdir(fd)):
            self._count(seen)
            shown = display_name(entry)
            item = f"{base}/{shown}"
            if name is None or name in shown:
                out.append(item)
            st = self.jail.lstat_in(fd, entry, listed=True)
            if st is not None and stat.S_ISDIR(st.st_mode):
                sub = self.jail.open_in(fd, entry, O_DIR, listed=True)
                try:
                    self._walk(sub, item, name, out, seen)
                finally:
                    os.close(sub)

    def _size(self, fd: int, seen: list[int]) -> int:
        total = 0
        for entry in os.listdir(fd):
            self._count(seen)
            st = self.jail.lstat_in(fd, entry, listed=True)
            if st is None:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            elif stat.S_ISDIR(st.st_mode):
                sub = self.jail.open_in(fd, entry, O_DIR, listed=True)
                try:
                    total += self._size(sub, seen)
                finally:
                    os.close(sub)
        return total

    def _count(self, seen: list[int]) -> None:
        seen[0] += 1
        if seen[0] > self.max_walk_entries:
            raise _TooBig(f"more than {self.max_walk_entries} entries; run it in a smaller directory")

    def _copy(self, src_fd: int, src: str, dst_fd: int, dst: str, *, listed: bool) -> int:
        """Copy file or directory `src` to the new name `dst`; returns how many links/special files were
        skipped. The source is opened first and checked through its fd, so a swap can't redirect it."""
        handle = self.jail.open_in(src_fd, src, os.O_RDONLY | os.O_NONBLOCK, listed=listed)
        try:
            mode = os.fstat(handle).st_mode
            if stat.S_ISREG(mode):
                out = self.jail.open_in(dst_fd, dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                        stat.S_IMODE(mode), listed=listed)
                try:
                    while chunk := os.read(handle, _CHUNK):
                        _write_all(out, chunk)
                finally:
                    os.close(out)
                return 0
            if not stat.S_ISDIR(mode):
                return 1
            os.mkdir(dst, 0o755, dir_fd=dst_fd)
            new_dir = self.jail.open_in(dst_fd, dst, O_DIR, listed=listed)
            try:
                return sum(self._copy_entry(handle, entry, new_dir) for entry in sorted(os.listdir(handle)))
            finally:
                os.close(new_dir)
        finally:
            os.close(handle)

    def _copy_entry(self, src_dir: int, entry: str, dst_dir: int) -> int:
        st = self.jail.lstat_in(src_dir, entry, listed=True)
        if st is None:
            return 0
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return 1
        return self._copy(src_dir, entry, dst_dir, entry, listed=True)

    def _remove_tree(self, parent_fd: int, name: str, *, listed: bool) -> None:
        """rm -r of directory `name`, link-safe: entries are unlinked, never followed."""
        fd = self.jail.open_in(parent_fd, name, O_DIR, listed=listed)
        try:
            for entry in os.listdir(fd):
                st = self.jail.lstat_in(fd, entry, listed=True)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    self._remove_tree(fd, entry, listed=True)
                elif st is not None:
                    os.unlink(entry, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent_fd)


def _valid_name(name: str) -> bool:
    return not any(c in _INVALID_NAME_CHARS for c in name)


def _skipped_note(skipped: int) -> str:
    return f" ({skipped} symbolic links or special files inside were not copied)" if skipped else ""


def _read_all(fd: int, limit: int) -> bytes:
    parts, size = [], 0
    while size < limit and (chunk := os.read(fd, min(_CHUNK, limit - size))):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
