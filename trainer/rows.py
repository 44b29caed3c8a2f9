"""Read `rows.jsonl` from `tinygpt traces-to-data`: pre-tokenized ids and loss masks, taken exactly as given.

A row is traces.export.TrainingRow (episode_id, task_id, tokenizer_hash, input_ids, loss_mask). Rows are
never re-tokenized; they are checked: same length of ids and mask, mask values 0/1, ids inside the model's
vocabulary, and the row's tokenizer hash equal to the model's (runtime.models.LoadedModel.tokenizer_hash, the
hash trajectory headers carry) — rows of another tokenizer would train on the wrong tokens, so they stop the run.
"""
from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import Example
from tinygpt.traces.export import TrainingRow

_DECODER = msgspec.json.Decoder(TrainingRow)


def is_row(record: dict) -> bool:
    return isinstance(record, dict) and "input_ids" in record and "loss_mask" in record


def read_rows(path: str | Path, *, tokenizer_hash: str, vocab_size: int) -> tuple[list[Example], dict]:
    """The rows of `path` as Examples, and counts {rows, no_supervised}; TrainError on any bad row."""
    path = Path(path)
    examples: list[Example] = []
    foreign: dict[str, int] = {}
    counts = {"rows": 0, "no_supervised": 0}
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = _DECODER.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise TrainError(f"{where}: not a traces-to-data row ({exc})") from None
            counts["rows"] += 1
            if row.tokenizer_hash != tokenizer_hash:
                foreign[row.tokenizer_hash] = foreign.get(row.tokenizer_hash, 0) + 1
                continue
            ids = np.asarray(row.input_ids, dtype=np.int64)
            mask = np.asarray(row.loss_mask, dtype=np.int64)
            _check(ids, mask, vocab_size, where)
            if not mask[1:].any():
                counts["no_supervised"] += 1
                continue
            examples.append(Example(ids.astype(np.int32), mask.astype(np.uint8), row.episode_id,
                                    f"{where} (episode {row.episode_id})", (counts["rows"] - 1, 0)))
    if foreign:
        listed = ", ".join(f"{h} ({n} rows)" for h, n in sorted(foreign.items()))
        raise TrainError(f"{path}: {sum(foreign.values())} of {counts['rows']} rows were tokenized by another "
                         f"tokenizer ({listed}); this model's tokenizer hash is {tokenizer_hash}. Train the model "
                         "the traces were recorded with, or record new traces with this one")
    return examples, counts


def _check(ids: np.ndarray, mask: np.ndarray, vocab_size: int, where: str) -> None:
    if ids.shape != mask.shape:
        raise TrainError(f"{where}: input_ids has {ids.size} ids but loss_mask has {mask.size} entries")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise TrainError(f"{where}: token id {int(ids.max() if ids.max() >= vocab_size else ids.min())} is outside "
                         f"the model's vocabulary [0, {vocab_size})")
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise TrainError(f"{where}: loss_mask holds values other than 0 and 1")
