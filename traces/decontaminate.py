"""Decontamination: drop training episodes that contain an eval task.

An episode is contaminated when its task id is an eval task id, or when its dedupe text shares a word n-gram
(default n = 13, after normalization) with an eval text; an eval text shorter than n words counts as one gram
of its own length, so it matches when it appears whole. Eval tasks come from JSONL files (see `load_eval_set`).
This module does not read traces.
"""
from pathlib import Path

import msgspec
import numpy as np

from tinygpt.traces.errors import TraceError
from tinygpt.traces.shingles import Words

_ID_KEYS = ("id", "task_id")
_TEXT_KEYS = ("text", "prompt", "question")


class EvalSet:
    """Eval task ids and the n-gram hashes of eval texts, with `contains(task_id, words)`."""

    def __init__(self, texts: list[str], ids: list[str], n: int = 13):
        if n < 1:
            raise TraceError(f"decontamination n-gram size must be >= 1, got {n}")
        self.n = n
        self.ids = frozenset(ids)
        self.texts = len(texts)
        grams: dict[int, list[np.ndarray]] = {}
        for text in texts:
            words = Words(text)
            if words.count == 0:
                continue
            size = min(n, words.count)
            grams.setdefault(size, []).append(words.ngram_hashes(size))
        self._grams = {size: np.unique(np.concatenate(parts)) for size, parts in grams.items()}

    def contains(self, task_id: str, words: Words) -> bool:
        """True when the episode (its task id, its normalized dedupe text) overlaps the eval set."""
        if task_id in self.ids:
            return True
        for size, table in self._grams.items():
            hashes = words.ngram_hashes(size)
            if len(hashes) == 0:
                continue
            at = np.minimum(np.searchsorted(table, hashes), len(table) - 1)  # table is sorted (np.unique)
            if (table[at] == hashes).any():
                return True
        return False


def _task_fields(item, where: str) -> tuple[str | None, str | None]:
    if isinstance(item, str):
        return None, item
    if not isinstance(item, dict):
        raise TraceError(f"{where}: expected a JSON object or string, got {type(item).__name__}")
    task_id = next((str(item[k]) for k in _ID_KEYS if item.get(k) is not None), None)
    text = next((item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)), None)
    if task_id is None and text is None:
        raise TraceError(f"{where}: an eval task needs an 'id'/'task_id' or a 'text'/'prompt'/'question' field")
    return task_id, text


def load_eval_set(paths: list[str | Path], n: int = 13) -> EvalSet:
    """Read eval tasks from JSONL files: each line an object with an id and/or a text, or a JSON string."""
    texts: list[str] = []
    ids: list[str] = []
    for path in map(Path, paths):
        try:
            lines = path.read_bytes().splitlines()
        except OSError as err:
            raise TraceError(f"cannot read eval tasks from {path}: {err.strerror}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = msgspec.json.decode(line)
            except msgspec.DecodeError as err:
                raise TraceError(f"{path}:{number}: not JSON ({err}); eval task files are JSON Lines") from None
            task_id, text = _task_fields(item, f"{path}:{number}")
            if task_id is not None:
                ids.append(task_id)
            if text is not None:
                texts.append(text)
    return EvalSet(texts, ids, n)
