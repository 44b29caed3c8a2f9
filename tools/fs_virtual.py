"""An in-memory file system with BFCL's GorillaFileSystem behaviour: same 18 operations, same arguments,
same result dicts, same error strings, same final tree (proven by tests/tools/test_tools_fs_virtual_bfcl.py).

It loads the `GorillaFileSystem` part of a BFCL task's `initial_config` and exports its tree in that shape.
Faithful to BFCL on purpose, quirks included, so behaviour learned here transfers: `cp` of a directory is
shallow (the copy shares its children with the original), `mv`/`cp` of a directory keep the children's
parent links pointing at the old node (so `cd ..` from inside can land in the original), `pwd` includes
the root's own name, and where BFCL raises (echo into a directory, cp onto an existing name inside the
destination) this raises `FsFault` with BFCL's exact message. It does NOT support BFCL's long_context mode.
"""
from __future__ import annotations

from typing import Any, Optional

_INVALID_NAME_CHARS = frozenset('|/\\?%*:"><')
# BFCL's own exception text for `echo` into a directory (an AttributeError there).
_ECHO_INTO_DIRECTORY = "'Directory' object has no attribute '_write'"


class FsFault(Exception):
    """An operation BFCL's class fails with an exception; the message is BFCL's."""


class VFile:
    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str = "") -> None:
        self.name, self.text = name, text


class VDir:
    __slots__ = ("name", "parent", "entries")

    def __init__(self, name: str, parent: Optional["VDir"] = None) -> None:
        self.name, self.parent = name, parent
        self.entries: dict[str, VFile | VDir] = {}

    def lookup(self, name: str) -> "VFile | VDir | None":
        """The entry called `name`; '.' always means this directory itself (as in BFCL)."""
        return self if name == "." else self.entries.get(name)

    def add(self, node: "VFile | VDir") -> None:
        if node.name in self.entries:
            kind = "File" if isinstance(node, VFile) else "Directory"
            raise FsFault(f"{kind} '{node.name}' already exists in directory '{self.name}'.")
        self.entries[node.name] = node


class VirtualFileSystem:
    """The 18 GorillaFileSystem operations on an in-memory tree. Build with `from_bfcl(config)`."""

    def __init__(self, root: VDir) -> None:
        self.root = root
        self.cwd = root

    @classmethod
    def from_bfcl(cls, config: dict[str, Any]) -> "VirtualFileSystem":
        """Load BFCL's GorillaFileSystem scenario: `{"root": {NAME: {"type": "directory", "contents": {...}}}}`.

        Without a "root" key the tree is an empty directory named "/" (BFCL's default state).
        """
        if not isinstance(config, dict):
            raise ValueError(f"a file-system config must be a JSON object, got {type(config).__name__}")
        if "root" not in config:
            return cls(VDir("/"))
        tops = config["root"]
        if not isinstance(tops, dict) or not tops:
            raise ValueError('config["root"] must map the root directory\'s name to its description, '
                             'e.g. {"root": {"workspace": {"type": "directory", "contents": {}}}}')
        name, body = next(iter(tops.items()))
        root = VDir(name)
        _load_entries(root, _contents_of(body, name))
        return cls(root)

    def to_bfcl(self) -> dict[str, Any]:
        """The whole tree (from the root, whatever the cwd) in the `from_bfcl` shape, in listing order."""
        return {"root": {self.root.name: _dump(self.root)}}

    # --- navigation -------------------------------------------------------------------------------

    def pwd(self) -> dict:
        names, node = [], self.cwd
        while node is not None:
            names.append(node.name)
            node = node.parent
        return {"current_working_directory": "/" + "/".join(reversed(names))}

    def ls(self, a: bool = False) -> dict:
        names = list(self.cwd.entries)
        return {"current_directory_content": names if a else [n for n in names if not n.startswith(".")]}

    def cd(self, folder: str) -> dict:
        folder = folder.rstrip("/") or "/"
        if folder not in (".", "..", "/") and "/" in folder:
            return {"error": f"cd: {folder}: Unsupported path. Only one folder level at a time is supported."}
        if folder == "..":
            if self.cwd.parent is not None:
                self.cwd = self.cwd.parent
                return {}
            if self.cwd is self.root:
                return {"error": "Current directory is already the root. Cannot go back."}
            return {"error": "cd: ..: No such directory"}
        target = self._walk(folder)
        if isinstance(target, dict):
            return target
        self.cwd = target
        return {"current_working_directory": target.name}

    def _walk(self, path: Optional[str]) -> VDir | dict:
        """The directory at `path` (relative to cwd, or to the root if it starts with '/')."""
        if path is None or path == ".":
            return self.cwd
        if path == "/":
            return self.root
        node = self.root if path.startswith("/") else self.cwd
        for part in path.strip("/").split("/"):
            node = node.lookup(part)
            if not isinstance(node, VDir):
                return {"error": f"cd: '{path}': No such file or directory"}
        return node

    # --- creating and writing ---------------------------------------------------------------------

    def mkdir(self, dir_name: str) -> Optional[dict]:
        if not _valid_name(dir_name):
            return {"error": f"mkdir: cannot create directory '{dir_name}': Invalid character"}
        if dir_name in self.cwd.entries:
            return {"error": f"mkdir: cannot create directory '{dir_name}': File exists"}
        self.cwd.add(VDir(dir_name, self.cwd))
        return None

    def touch(self, file_name: str) -> Optional[dict]:
        if not _valid_name(file_name):
            return {"error": f"touch: cannot touch '{file_name}': Invalid character"}
        if file_name in self.cwd.entries:
            return {"error": f"touch: cannot touch '{file_name}': File exists"}
        self.cwd.add(VFile(file_name))
        return None

    def echo(self, content: str, file_name: Optional[str] = None) -> Optional[dict]:
        if file_name is None:
            return {"terminal_output": content}
        if not _valid_name(file_name):
            return {"error": f"echo: cannot write to '{file_name}': Invalid character"}
        if not file_name:
            return {"terminal_output": content}
        if file_name not in self.cwd.entries:
            return {"error": f"echo: cannot write to '{file_name}': No such file"}
        node = self.cwd.lookup(file_name)
        if not isinstance(node, VFile):
            raise FsFault(_ECHO_INTO_DIRECTORY)
        node.text = content
        return None

    # --- reading ----------------------------------------------------------------------------------

    def cat(self, file_name: str) -> dict:
        if not _valid_name(file_name):
            return {"error": f"cat: '{file_name}': Invalid character"}
        if file_name not in self.cwd.entries:
            return {"error": f"cat: '{file_name}': No such file or directory"}
        node = self.cwd.lookup(file_name)
        if isinstance(node, VFile):
            return {"file_content": node.text}
        return {"error": f"cat: '{file_name}': Is a directory"}

    def find(self, path: str = ".", name: Optional[str] = None) -> dict:
        start = self._walk(path)
        if isinstance(start, dict):
            message = start.get("error", "")
            return {"error": message.replace("cd:", "find:", 1)} if message.startswith("cd:") else start
        matches: list[str] = []
        _collect(start, path.rstrip("/"), name, matches)
        return {"matches": matches}

    def wc(self, file_name: str, mode: str = "l") -> dict:
        if mode not in ("l", "w", "c"):
            return {"error": f"wc: invalid mode '{mode}'"}
        text = self._file_text(file_name)
        if text is None:
            return {"error": f"wc: {file_name}: No such file or directory"}
        if mode == "l":
            return {"count": len(text.splitlines()), "type": "lines"}
        if mode == "w":
            return {"count": len(text.split()), "type": "words"}
        return {"count": len(text), "type": "characters"}

    def sort(self, file_name: str) -> dict:
        text = self._file_text(file_name)
        if text is None:
            return {"error": f"sort: {file_name}: No such file or directory"}
        return {"sorted_content": "\n".join(sorted(text.splitlines()))}

    def grep(self, file_name: str, pattern: str) -> dict:
        text = self._file_text(file_name)
        if text is None:
            return {"error": f"grep: {file_name}: No such file or directory"}
        return {"matching_lines": [line for line in text.splitlines() if pattern in line]}

    def du(self, human_readable: bool = False) -> dict:
        return {"disk_usage": format_size(_size(self.cwd), human_readable)}

    def tail(self, file_name: str, lines: int = 10) -> dict:
        text = self._file_text(file_name)
        if text is None:
            return {"error": f"tail: {file_name}: No such file or directory"}
        rows = text.splitlines()
        return {"last_lines": "\n".join(rows[-min(lines, len(rows)):])}

    def diff(self, file_name1: str, file_name2: str) -> dict:
        first, second = self._file_text(file_name1), self._file_text(file_name2)
        if first is None or second is None:
            return {"error": f"diff: {file_name1} or {file_name2}: No such file or directory"}
        pairs = zip(first.splitlines(), second.splitlines())
        return {"diff_lines": "\n".join(f"- {a}\n+ {b}" for a, b in pairs if a != b)}

    def _file_text(self, file_name: str) -> Optional[str]:
        """The text of file `file_name` in the cwd, or None if it is not a file there."""
        if file_name not in self.cwd.entries:
            return None
        node = self.cwd.lookup(file_name)
        return node.text if isinstance(node, VFile) else None

    # --- moving, copying, removing ----------------------------------------------------------------

    def mv(self, source: str, destination: str) -> dict:
        return self._relocate("mv", "move", "moved", source, destination)

    def cp(self, source: str, destination: str) -> dict:
        return self._relocate("cp", "copy", "copied", source, destination)

    def _relocate(self, op: str, verb: str, done: str, source: str, destination: str) -> dict:
        if source not in self.cwd.entries:
            return {"error": f"{op}: cannot {verb} '{source}': No such file or directory"}
        node = self.cwd.lookup(source)
        if "/" in destination:
            return {"error": f"{op}: path not allowed in destination. Provide only a file or directory name."}
        if destination not in self.cwd.entries:
            if op == "mv":
                self.cwd.entries.pop(source)
            _place(node, destination, self.cwd, share=op == "mv")
            return {"result": f"'{source}' {done} to '{destination}'"}
        target = self.cwd.lookup(destination)
        if not isinstance(target, VDir):
            return {"error": f"{op}: cannot {verb} '{source}' to '{destination}': Not a directory"}
        # BFCL's mv checks the plain name, its cp checks "dest/source" (which never matches).
        clash = source if op == "mv" else f"{destination}/{source}"
        if clash in target.entries:
            return {"error": f"{op}: cannot {verb} '{source}' to '{destination}/{source}': File exists"}
        if op == "mv":
            self.cwd.entries.pop(source)
        _place(node, source, target, share=op == "mv")
        return {"result": f"'{source}' {done} to '{destination}/{source}'"}

    def rm(self, file_name: str) -> dict:
        if file_name not in self.cwd.entries:
            return {"error": f"rm: cannot remove '{file_name}': No such file or directory"}
        self.cwd.entries.pop(file_name)
        return {"result": f"'{file_name}' removed"}

    def rmdir(self, dir_name: str) -> dict:
        if dir_name not in self.cwd.entries:
            return {"error": f"rmdir: cannot remove '{dir_name}': No such file or directory"}
        node = self.cwd.lookup(dir_name)
        if not isinstance(node, VDir):
            return {"error": f"rmdir: cannot remove '{dir_name}': Not a directory"}
        if node.entries:
            return {"error": f"rmdir: cannot remove '{dir_name}': Directory not empty"}
        self.cwd.entries.pop(dir_name)
        return {"result": f"'{dir_name}' removed"}


def format_size(size: float, human_readable: bool) -> str:
    """`du`'s text for a byte count: '123 bytes', or '1.21 KB' style when human_readable."""
    if not human_readable:
        return f"{size} bytes"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _valid_name(name: str) -> bool:
    return not any(c in _INVALID_NAME_CHARS for c in name)


def _place(node: VFile | VDir, name: str, parent: VDir, *, share: bool) -> None:
    """Add a new node called `name` to `parent`: a file copies the text; a directory is added empty and
    then shares (mv) or shallow-copies (cp) the children, whose parent links still point at the old node.
    BFCL's behaviour, order included (cp of a directory into itself copies the just-added entry too)."""
    if isinstance(node, VFile):
        parent.add(VFile(name, node.text))
        return
    fresh = VDir(name, parent)
    parent.add(fresh)
    fresh.entries = node.entries if share else dict(node.entries)


def _collect(node: VDir, base: str, name: Optional[str], out: list[str]) -> None:
    for child_name, child in node.entries.items():
        child_path = f"{base}/{child_name}"
        if name is None or name in child_name:
            out.append(child_path)
        if isinstance(child, VDir):
            _collect(child, child_path, name, out)


def _size(node: VFile | VDir) -> int:
    if isinstance(node, VFile):
        return len(node.text.encode("utf-8"))
    return sum(_size(child) for child in node.entries.values())


def _contents_of(body: Any, where: str) -> dict:
    if not isinstance(body, dict) or body.get("type") != "directory" or not isinstance(body.get("contents"), dict):
        raise ValueError(f"'{where}' must be {{\"type\": \"directory\", \"contents\": {{...}}}}, got {body!r:.200}")
    return body["contents"]


def _load_entries(parent: VDir, contents: dict) -> None:
    for name, body in contents.items():
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "directory":
            child = VDir(name, parent)
            _load_entries(child, _contents_of(body, name))
            parent.entries[name] = child
        elif kind == "file":
            text = body.get("content", "")
            if not isinstance(text, str):
                raise ValueError(f"file '{name}': \"content\" must be a string, got {type(text).__name__}")
            parent.entries[name] = VFile(name, text)
        else:
            raise ValueError(f"entry '{name}' must have \"type\": \"file\" or \"directory\", got {body!r:.200}")


def _dump(node: VFile | VDir) -> dict:
    if isinstance(node, VFile):
        return {"type": "file", "content": node.text}
    return {"type": "directory", "contents": {name: _dump(child) for name, child in node.entries.items()}}
