"""Writing an output file only where tinygpt may: a new path, or a file this same command wrote before.

`check_owned(path, ours)` refuses a symlink, a directory, or an existing file that `ours(bytes)` does not
recognise (a user's file is never replaced); `write_owned` then writes a temp file beside it, fsyncs it and
renames it into place, so a reader never sees half a file. `json_of_kind(kind)` and `png_by(software)` make the
usual `ours`: a JSON object whose "kind" is `kind`; a PNG whose Software text is `software`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from tinygpt.evals.errors import EvalError

_MAX_OWNED = 64 << 20  # a result or chart tinygpt wrote is far smaller; a bigger file is someone else's


def json_of_kind(kind: str) -> Callable[[bytes], bool]:
    """Recognises a JSON object tinygpt wrote with {"kind": kind}."""
    def ours(data: bytes) -> bool:
        try:
            value = json.loads(data)
        except ValueError:
            return False
        return isinstance(value, dict) and value.get("kind") == kind
    return ours


def png_by(software: str) -> Callable[[bytes], bool]:
    """Recognises a PNG whose Software text chunk is `software` (evals/png.py writes it)."""
    def ours(data: bytes) -> bool:
        from tinygpt.evals.png import software_of

        return software_of(data) == software
    return ours


def check_owned(path: str | Path, ours: Callable[[bytes], bool], flag: str) -> Path:
    """`path` if it is free or holds a file `ours` recognises; else EvalError telling the user to pick another."""
    path = Path(path)
    if path.is_symlink():
        raise EvalError(f"{flag} {path} is a symbolic link; tinygpt does not write through links. Choose another "
                        f"{flag}")
    if path.is_dir():
        raise EvalError(f"{flag} {path} is a directory; give a file path")
    if path.exists():
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_OWNED + 1)
        except OSError as exc:
            raise EvalError(f"{flag} {path} exists and cannot be read ({exc.strerror}); choose another {flag}"
                            ) from None
        if len(data) > _MAX_OWNED or not ours(data):
            raise EvalError(f"{flag} {path} exists and was not written by tinygpt; it is left alone. Choose another "
                            f"{flag} or move that file")
    return path


def write_owned(path: str | Path, data: bytes, ours: Callable[[bytes], bool], flag: str) -> Path:
    """Write `data` to `path` atomically, after `check_owned`."""
    path = check_owned(path, ours, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
