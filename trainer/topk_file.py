"""The teacher top-k sidecar: a teacher's top-k log-probs at every trained target of a rows.jsonl, beside it.

`rows.topk.safetensors` holds, over the rows' trained targets in file order (row r's are
[offsets[r], offsets[r+1])): `positions` int32 [N] (the target's index in its row's input_ids), `ids` int32 [N, k]
(the teacher's k most likely ids, most likely first), `logprobs` float32 or float16 [N, k] (their log-probs at
T = 1) and `tail` float32 [N] (the log of the teacher's mass outside those k ids; −inf when k covers the vocabulary).
Its metadata records the teacher (name, fingerprint), the tokenizer hash, k, the temperature of the log-probs (1)
and the SHA-256 of the rows file, so a sidecar made for other rows, another tokenizer or a changed file is refused
with one line. Not here: computing it (teacher.py), using it (distill.py).
"""
from __future__ import annotations

import hashlib
import os
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


def write(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write a sidecar atomically (temp file + rename); `meta` values become strings."""
    import mlx.core as mx

    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, **{k: str(v) for k, v in meta.items()}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        mx.save_safetensors(tmp, {k: mx.array(arrays[k]) for k in ARRAYS}, metadata=meta)
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
