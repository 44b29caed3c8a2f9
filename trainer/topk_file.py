"""The teacher top-k sidecar: a teacher's top-k log-probs at every trained target of a rows.jsonl, beside it.

`rows.topk.safetensors` holds, over the rows' trained targets in file order (row r's are
[offsets[r], offsets[r+1])): `positions` int32 [N] (the target's index in its row's input_ids), `ids` int32 [N, k]
(the teacher's k most likely ids, most likely first), `logprobs` float32 or float16 [N, k] (their log-probs at
T = 1) and `tail` float32 [N] (the log of the teacher's mass outside those k ids; −inf when k covers the vocabulary).
Its metadata records the teacher (name, fingerprint), the tokenizer hash, k, the temperature of the log-probs (1)
and the SHA-256 of the rows file, so a sidecar made for other rows, another tokenizer or a changed file is refused
with one line. A sidecar's name ends in `.safetensors` (what `read` loads by); `check_target` refuses to write
over the rows, over any file tinygpt did not write as a sidecar, or (without `force`) over one it did; missing
folders above it are made.
Not here: computing it (teacher.py), using it (distill.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.trainer.errors import TrainError

FORMAT = "tinygpt-topk"
VERSION = "1"
CREATOR = "tinygpt distill teacher-logprobs"
ARRAYS = ("offsets", "positions", "ids", "logprobs", "tail")


def default_path(rows: str | Path) -> Path:
    """rows.jsonl -> rows.topk.safetensors, beside it."""
    rows = Path(rows)
    return rows.with_name(rows.name.removesuffix(".jsonl") + ".topk.safetensors")


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: what a sidecar was made from."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class TopK:
    """A loaded sidecar: its metadata and arrays (numpy)."""

    meta: dict
    offsets: np.ndarray
    positions: np.ndarray
    ids: np.ndarray
    logprobs: np.ndarray
    tail: np.ndarray

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    @property
    def rows(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def row(self, r: int) -> slice:
        return slice(int(self.offsets[r]), int(self.offsets[r + 1]))


def header_meta(path: Path) -> dict | None:
    """The `__metadata__` of a safetensors file, read from its header alone; None if it is not one."""
    try:
        with open(path, "rb") as fh:
            size = struct.unpack("<Q", fh.read(8))[0]
            if size > 1 << 24:
                return None
            header = json.loads(fh.read(size))
    except (OSError, struct.error, ValueError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def is_ours(path: Path) -> bool:
    """True if `path` is a sidecar this command wrote (its metadata says so)."""
    meta = header_meta(path) or {}
    return meta.get("format") == FORMAT and meta.get("created_by") == CREATOR


def check_target(path: str | Path, rows: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """`path` if a sidecar may be written there; TrainError otherwise. Refused: a name not ending in
    .safetensors, the rows file itself, a link, a directory, a file tinygpt did not write as a sidecar, and
    (without `force`) a sidecar it did."""
    path = Path(path).expanduser()
    rows = Path(rows).expanduser()
    if path.resolve() == rows.resolve() or (path.exists() and rows.exists() and os.path.samefile(path, rows)):
        raise TrainError(f"{flag} {path} is the rows file itself; name another file (default: beside it, "
                         f"{default_path(rows).name})")
    if path.suffix != ".safetensors":
        raise TrainError(f"{flag} {path}: a sidecar's name must end in .safetensors (it is loaded by that suffix); "
                         f"e.g. {flag} {path.with_name(path.name + '.safetensors')}")
    if path.is_symlink():
        raise TrainError(f"{flag} {path} is a symbolic link; tinygpt does not write through links. Name another file")
    if path.is_dir():
        raise TrainError(f"{flag} {path} is a directory; give a file path ending in .safetensors")
    if path.exists():
        if not is_ours(path):
            raise TrainError(f"{flag} {path} exists and was not written by `{CREATOR}`; it is left alone. Name "
                             "another file or move that one")
        if not force:
            raise TrainError(f"{flag} {path} already holds a teacher top-k sidecar; pass --force to replace it")
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise TrainError(f"{flag} {path}: {above} is a file, not a directory; name another place")
    return path


def write(path: str | Path, meta: dict, arrays: dict[str, np.ndarray], *, rows: str | Path,
          force: bool = False) -> Path:
    """Write a sidecar of `rows` atomically (temp file + rename) where `check_target` allows (checked again
    just before the rename); `meta` values become strings."""
    import mlx.core as mx

    path = check_target(path, rows, force)
    meta = {"format": FORMAT, "version": VERSION, **{k: str(v) for k, v in meta.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)  # as fuse and eval-gate do: a new folder is made
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        mx.save_safetensors(tmp, {k: mx.array(arrays[k]) for k in ARRAYS}, metadata=meta)
        check_target(path, rows, force)  # again: the target may have appeared meanwhile
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read(path: str | Path, flag: str = "--teacher-logprobs") -> TopK:
    """Load a sidecar; TrainError if it is missing or not one."""
    import mlx.core as mx

    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainError(f"{flag} {path}: no such file; make it with `tinygpt distill teacher-logprobs`")
    try:
        arrays, meta = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise TrainError(f"{flag} {path}: not a safetensors file ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION or set(arrays) != set(ARRAYS):
        raise TrainError(f"{flag} {path}: not a teacher top-k sidecar (format {FORMAT} v{VERSION}) of "
                         "`tinygpt distill teacher-logprobs`")
    a = {k: np.asarray(v.astype(mx.float32) if v.dtype in (mx.float16, mx.bfloat16) else v) for k, v in arrays.items()}
    n = a["positions"].shape[0]
    if a["ids"].shape != a["logprobs"].shape or a["ids"].shape[0] != n or a["tail"].shape != (n,) or \
            a["offsets"][-1] != n:
        raise TrainError(f"{flag} {path}: its arrays disagree in shape (a damaged file); make it again")
    return TopK(meta, a["offsets"].astype(np.int64), a["positions"].astype(np.int64), a["ids"].astype(np.int32),
                a["logprobs"], a["tail"].astype(np.float32))


def check(topk: TopK, path: str | Path, *, rows: str | Path, tokenizer_hash: str, vocab_size: int,
          flag: str = "--teacher-logprobs") -> None:
    """Refuse a sidecar made from other rows (or a changed file), for another tokenizer, or with ids outside
    the student's vocabulary; each with one line that says what to do."""
    meta = topk.meta
    if meta.get("rows_sha256") != file_hash(rows):
        raise TrainError(f"{flag} {path} was made from other rows than {rows} (or the file changed since): make "
                         f"it again with `tinygpt distill teacher-logprobs --rows {rows}`")
    if meta.get("tokenizer_hash") != tokenizer_hash:
        raise TrainError(f"{flag} {path}: the teacher's tokenizer (hash {meta.get('tokenizer_hash')}) is not the "
                         f"student's ({tokenizer_hash}); distillation needs a teacher with the student's tokenizer")
    if topk.ids.size and int(topk.ids.max()) >= vocab_size:
        raise TrainError(f"{flag} {path}: teacher id {int(topk.ids.max())} is outside the student's vocabulary "
                         f"[0, {vocab_size})")
