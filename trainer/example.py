"""`Example`: one training sequence — token ids, a per-token loss mask, and where it came from.

`mask[i] == 1` means token i is a target the model is trained to produce (a sampled / assistant id); the loss
never looks at the others. Every data source (traces rows, chat, completions, text) becomes Examples, and
nothing downstream re-tokenizes them. `turn_starts` finds the places a sequence may be split (windows.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)  # arrays: compare examples by identity
class Example:
    """Token ids (int32) and loss mask (uint8, same length); `group` is the unit of the train/valid split
    (an episode id, or a file line), `source` says where to find it (file:line); `origin` is (row number in a
    rows.jsonl, index of ids[0] in that row) for rows and their windows (distillation finds the teacher's
    numbers by it), None otherwise."""

    ids: np.ndarray
    mask: np.ndarray
    group: str
    source: str
    origin: tuple[int, int] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def supervised(self) -> int:
        """Trained targets: mask ones after the first token (the first is never predicted)."""
        return int(self.mask[1:].sum())

    def slice(self, start: int, stop: int) -> "Example":
        origin = None if self.origin is None else (self.origin[0], self.origin[1] + start)
        return Example(self.ids[start:stop], self.mask[start:stop], self.group, f"{self.source}[{start}:{stop}]",
                       origin)


def turn_starts(mask: np.ndarray) -> list[int]:
    """Indexes where a turn starts: a non-trained token at position 0 or right after a trained one.

    A turn is the context appended before a model output (system / user / tool ids, the template's assistant
    header) followed by that output; the sequence can be cut before any of these without splitting one."""
    m = mask.astype(bool)
    starts = np.flatnonzero(~m[1:] & m[:-1]) + 1
    return ([0] if len(m) and not m[0] else []) + starts.tolist()


def make_example(ids, mask, group: str, source: str) -> Example:
    return Example(np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=np.uint8), group, source)
