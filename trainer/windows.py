"""Sequences longer than --max-seq-length: split into windows of whole turns, or skipped — and counted.

Cutting a long episode at its end would drop its last agent turns, the ones that finish the task; so a long
sequence is either skipped (`skip`) or cut only at turn starts (`split`: example.turn_starts) into windows of as
many whole turns as fit. A window drops the earlier turns as context (it starts like a conversation that began
there). A single turn longer than the limit cannot be trained whole and is dropped. Text (every token trained,
no turns) is cut into consecutive chunks. Every drop is counted.
"""
from __future__ import annotations

from tinygpt.trainer.example import Example, turn_starts


def fit(examples: list[Example], max_len: int, mode: str) -> tuple[list[Example], dict]:
    """The examples with none longer than `max_len`, and counts {long, windows, long_skipped, turns_dropped,
    supervised_dropped}."""
    out: list[Example] = []
    counts = {"long": 0, "windows": 0, "long_skipped": 0, "turns_dropped": 0, "supervised_dropped": 0}
    for ex in examples:
        if len(ex) <= max_len:
            out.append(ex)
            continue
        counts["long"] += 1
        if mode == "skip":
            counts["long_skipped"] += 1
            counts["supervised_dropped"] += ex.supervised
            continue
        windows = split(ex, max_len, counts)
        counts["windows"] += len(windows)
        out += windows
    return out, counts


def split(ex: Example, max_len: int, counts: dict) -> list[Example]:
    """Windows of consecutive whole turns, each at most `max_len` tokens and holding a trained token."""
    starts = turn_starts(ex.mask)
    if not starts and ex.mask.all():  # text: chunks overlapping by one token, so each token is a target once
        return [ex.slice(i, i + max_len) for i in range(0, len(ex) - 1, max_len - 1)]
    bounds = ([] if starts and starts[0] == 0 else [0]) + starts + [len(ex)]
    windows, start = [], bounds[0]
    for i in range(1, len(bounds)):
        prev, end = bounds[i - 1], bounds[i]
        if end - prev > max_len:  # one turn alone is too long: close the window before it and drop it
            if prev > start:
                windows.append(ex.slice(start, prev))
            counts["turns_dropped"] += 1
            counts["supervised_dropped"] += int(ex.mask[prev:end].sum())
            start = end
        elif end - start > max_len:
            windows.append(ex.slice(start, prev))
            start = prev
    if bounds[-1] > start:
        windows.append(ex.slice(start, bounds[-1]))
    return [w for w in windows if w.supervised]
