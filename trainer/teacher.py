"""A local teacher's top-k log-probs at every trained target of a rows.jsonl: the offline distillation sidecar.

The teacher must share the rows' tokenizer (its tokenizer hash equals every row's; else one line says so). Rows
are read exactly as the trainer reads them (rows.read_rows: never re-tokenized), sorted by length and run in
batched forward passes, each row whole (the teacher conditions on the full episode, also where the trainer later
cuts a long row into windows). Logits are made only at trained targets (the LM head on the gathered hidden
states for plain-head families, as losses.trained_nll), in chunks of positions so memory stays at one chunk times
the vocabulary. The result is written by topk_file.write. Runs in the caller's thread on the teacher's own
module tree, not through the scheduler: this is a batch job over stored ids, no generation (runtime/scoring.py
is the scheduler's one-prompt version of the same numbers; tests/trainer/test_distill.py checks they agree).
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable

import msgspec
import numpy as np

from tinygpt.trainer import topk_file
from tinygpt.trainer.errors import TrainError

CHUNK = 512  # trained positions per LM-head call


class _HashOnly(msgspec.Struct):
    tokenizer_hash: str = ""


def row_tokenizers(rows: Path) -> Counter:
    """How many rows of `rows` carry each tokenizer hash."""
    decoder = msgspec.json.Decoder(_HashOnly)
    seen: Counter = Counter()
    with open(rows, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    seen[decoder.decode(line).tokenizer_hash] += 1
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise TrainError(f"{rows}:{number}: not a traces-to-data row ({exc})") from None
    return seen


def check_tokenizer(teacher, rows: Path) -> None:
    """One line if any row was tokenized by another tokenizer than the teacher's."""
    other = {h: n for h, n in row_tokenizers(rows).items() if h != teacher.tokenizer_hash}
    if other:
        listed = ", ".join(f"{h} ({n} rows)" for h, n in sorted(other.items()))
        raise TrainError(f"--teacher {teacher.name}: its tokenizer (hash {teacher.tokenizer_hash}) is not the one "
                         f"{rows} was tokenized with ({listed}); a teacher must share the student's tokenizer")


def _topk(logits, k: int):
    """(ids [n, k] most likely first, log-probs [n, k], tail log-mass [n]) of float32 logits [n, V]."""
    import mlx.core as mx

    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    vocab = logp.shape[-1]
    ids = mx.argsort(-logp, axis=-1)[:, :k] if k * 8 >= vocab else mx.argpartition(-logp, k - 1, axis=-1)[:, :k]
    vals = mx.take_along_axis(logp, ids, axis=-1)
    order = mx.argsort(-vals, axis=-1)
    ids, vals = mx.take_along_axis(ids, order, axis=-1), mx.take_along_axis(vals, order, axis=-1)
    if k >= vocab:
        tail = mx.full((logp.shape[0],), -mx.inf)
    else:
        inside = mx.put_along_axis(mx.zeros(logp.shape, mx.bool_), ids, mx.array(True), axis=-1)
        tail = mx.logsumexp(mx.where(inside, -mx.inf, logp), axis=-1)
    mx.eval(ids, vals, tail)
    return np.asarray(ids, np.int32), np.asarray(vals, np.float32), np.asarray(tail, np.float32)


def _batch_topk(model, examples, k: int, plain_head: bool) -> list[tuple]:
    """Per example: (target positions, ids, log-probs, tail) at its trained targets."""
    import mlx.core as mx

    from tinygpt.trainer.losses import lm_head

    width = max(len(ex) for ex in examples) - 1
    grid = np.zeros((len(examples), width), np.int32)
    trained = np.zeros((len(examples), width), bool)
    for row, ex in enumerate(examples):
        grid[row, : len(ex) - 1] = ex.ids[:-1]
        trained[row, : len(ex) - 1] = ex.mask[1:].astype(bool)
    flat = np.flatnonzero(trained)
    inputs = mx.array(grid)
    states = model.model(inputs) if plain_head else model(inputs)
    states = states.reshape(-1, states.shape[-1])
    parts = []
    for start in range(0, len(flat), CHUNK):
        picked = mx.take(states, mx.array(flat[start: start + CHUNK].astype(np.int32)), axis=0)
        logits = lm_head(model, picked) if plain_head else picked
        parts.append(_topk(logits.astype(mx.float32), k))
    ids, vals, tail = (np.concatenate([p[i] for p in parts]) for i in range(3))
    out, at = [], 0
    for ex in examples:
        n = ex.supervised
        out.append((np.flatnonzero(ex.mask[1:]) + 1, ids[at: at + n], vals[at: at + n], tail[at: at + n]))
        at += n
    return out


def teacher_logprobs(teacher, rows: str | Path, out: str | Path | None = None, *, k: int = 20,
                     batch_size: int = 8, dtype: str = "float32", force: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the sidecar of `rows` (default: beside it, topk_file.default_path) with `teacher`'s top-`k`
    log-probs at T = 1; `progress(rows done, rows total)` after each batch. Returns a summary. An existing
    sidecar is replaced only with `force`, never a file tinygpt did not write (topk_file.check_target)."""
    from tinygpt.trainer.losses import has_plain_head
    from tinygpt.trainer.rows import read_rows

    started = time.perf_counter()
    rows = Path(rows).expanduser()
    if not rows.is_file():
        raise TrainError(f"--rows {rows}: no such file (a rows.jsonl from `tinygpt traces-to-data`)")
    target = topk_file.check_target(Path(out).expanduser() if out else topk_file.default_path(rows), rows, force)
    vocab = teacher.vocab_size
    if not 1 <= k <= vocab:
        raise TrainError(f"--top-k {k}: must be in [1, {vocab}] (the teacher's vocabulary size)")
    from tinygpt.trainer.data import detect_format

    kind = detect_format(rows)
    if kind != "rows":
        raise TrainError(f"--rows {rows}: {kind} records, not traces-to-data rows; the teacher scores a rows.jsonl's "
                         "exact ids (make one with `tinygpt traces-to-data`, or train on chat data with `tinygpt "
                         "train` alone)")
    check_tokenizer(teacher, rows)
    digest = topk_file.file_hash(rows)
    examples, counts = read_rows(rows, tokenizer_hash=teacher.tokenizer_hash, vocab_size=vocab)
    if not examples:
        raise TrainError(f"--rows {rows}: no row has a trained token (counts: {counts})")
    teacher.model.eval()
    plain = has_plain_head(teacher.model)
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i]), i))
    per_row: dict[int, tuple] = {}
    for start in range(0, len(order), batch_size):
        batch = [examples[i] for i in order[start: start + batch_size]]
        for ex, got in zip(batch, _batch_topk(teacher.model, batch, k, plain)):
            per_row[ex.origin[0]] = got
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    arrays = _assemble(per_row, counts["rows"], k, dtype)
    meta = {"teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint,
            "tokenizer_hash": teacher.tokenizer_hash, "vocab_size": vocab, "k": k, "logprob_temperature": 1,
            "logprob_dtype": dtype, "rows_sha256": digest, "rows_file": str(rows.resolve()), "rows": counts["rows"],
            "supervised": int(arrays["positions"].shape[0]), "created_by": topk_file.CREATOR,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if topk_file.file_hash(rows) != digest:
        raise TrainError(f"--rows {rows} changed while the teacher read it; run again")
    path = topk_file.write(target, meta, arrays, rows=rows, force=force)
    return {"sidecar": str(path), "teacher": teacher.name, "rows": counts["rows"], "supervised": meta["supervised"],
            "k": k, "dtype": dtype, "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - started, 3)}


def _assemble(per_row: dict[int, tuple], n_rows: int, k: int, dtype: str) -> dict[str, np.ndarray]:
    offsets = np.zeros(n_rows + 1, np.int64)
    for r in range(n_rows):
        offsets[r + 1] = offsets[r] + (len(per_row[r][0]) if r in per_row else 0)
    kept = [per_row[r] for r in range(n_rows) if r in per_row]
    return {"offsets": offsets,
            "positions": np.concatenate([p[0] for p in kept]).astype(np.int32),
            "ids": np.concatenate([p[1] for p in kept]).reshape(-1, k),
            "logprobs": np.concatenate([p[2] for p in kept]).reshape(-1, k).astype(dtype),
            "tail": np.concatenate([p[3] for p in kept])}
