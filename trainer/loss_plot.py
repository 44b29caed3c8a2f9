"""The loss curve as a small PNG, drawn and encoded here (zlib + struct; no plotting dependency).

Training loss per step is a blue line, validation loss orange squares, on a white plot with a light grid: the
x axis spans steps 0..last, the y axis min..max loss (padded 5%). There is no text (no font renderer); the
numbers are in metrics.jsonl, and the run's summary gives the first and last losses and the axis ranges.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

WHITE, GRID, AXIS = (255, 255, 255), (228, 228, 228), (120, 120, 120)
TRAIN, VALID = (31, 119, 180), (255, 127, 14)


class Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(WHITE) * (width * height))

    def dot(self, x: int, y: int, color, size: int = 1) -> None:
        for dx in range(-(size // 2), size - size // 2):
            for dy in range(-(size // 2), size - size // 2):
                px, py = x + dx, y + dy
                if 0 <= px < self.width and 0 <= py < self.height:
                    i = 3 * (py * self.width + px)
                    self.pixels[i: i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color, size: int = 1) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * s / steps), round(y0 + (y1 - y0) * s / steps), color, size)

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        stride = 3 * self.width
        raw = b"".join(b"\x00" + bytes(self.pixels[y * stride:(y + 1) * stride]) for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + \
            chunk(b"IEND", b"")


def plot(train: list[tuple[int, float]], valid: list[tuple[int, float]], width: int = 640, height: int = 360,
         margin: int = 24) -> tuple[bytes, dict]:
    """The PNG bytes and the axis ranges {steps: [0, last], loss: [lo, hi]} of a loss curve."""
    c = Canvas(width, height)
    points = train + valid
    last = max((s for s, _ in points), default=1) or 1
    lo, hi = min((v for _, v in points), default=0.0), max((v for _, v in points), default=1.0)
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad
    w, h = width - 2 * margin, height - 2 * margin

    def xy(step: int, value: float) -> tuple[int, int]:
        return margin + round(w * step / last), margin + round(h * (hi - value) / (hi - lo))

    for i in range(1, 5):
        c.line(margin, margin + h * i // 5, margin + w, margin + h * i // 5, GRID)
        c.line(margin + w * i // 5, margin, margin + w * i // 5, margin + h, GRID)
    c.line(margin, margin + h, margin + w, margin + h, AXIS)
    c.line(margin, margin, margin, margin + h, AXIS)
    for (s0, v0), (s1, v1) in zip(train, train[1:]):
        c.line(*xy(s0, v0), *xy(s1, v1), TRAIN, size=2)
    if len(train) == 1:
        c.dot(*xy(*train[0]), TRAIN, size=3)
    for s, v in valid:
        c.dot(*xy(s, v), VALID, size=6)
    return c.png(), {"steps": [0, last], "loss": [round(lo, 4), round(hi, 4)]}


def write(path: Path, train: list[tuple[int, float]], valid: list[tuple[int, float]]) -> dict:
    """Write the loss curve PNG to `path` (temp file + rename); return its axis ranges."""
    from tinygpt.trainer.run_dir import write_atomic

    data, axes = plot(train, valid)
    write_atomic(Path(path), data)
    return axes
