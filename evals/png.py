"""A tiny raster canvas and PNG encoder (zlib + CRC-32 from the standard library): enough for a bar chart.

`Canvas(w, h)` is 8-bit RGB; it fills rectangles and draws text in a 5x7 pixel font (glyphs.py). `encode`
writes a PNG (filter 0 rows, one IDAT) with a `Software` text chunk naming its maker, which is how a later run
recognises a chart it may replace. No antialiasing, no fonts beyond the built-in one.
"""
from __future__ import annotations

import struct
import zlib

from tinygpt.evals.glyphs import GLYPH_H, GLYPH_W, glyph

SIGNATURE = b"\x89PNG\r\n\x1a\n"
Color = tuple[int, int, int]


class Canvas:
    """An RGB image, drawn on in place; (0, 0) is the top-left pixel."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the pixels x0 <= x < x1, y0 <= y < y1 (clipped to the canvas)."""
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + len(row)] = row

    def pixel(self, x: int, y: int) -> Color:
        i = (y * self.width + x) * 3
        return self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]

    def text(self, x: int, y: int, text: str, color: Color = (0, 0, 0), scale: int = 1) -> int:
        """Draw `text` with its top-left at (x, y); returns the x after it. Unknown characters draw as '?'."""
        for ch in text:
            for r, bits in enumerate(glyph(ch)):
                for c in range(GLYPH_W):
                    if bits >> (GLYPH_W - 1 - c) & 1:
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
            x += (GLYPH_W + 1) * scale
        return x


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * (GLYPH_W + 1) * scale


def text_height(scale: int = 1) -> int:
    return GLYPH_H * scale


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode(canvas: Canvas, software: str) -> bytes:
    """The canvas as PNG bytes (8-bit RGB), with a tEXt chunk Software=`software`."""
    stride = canvas.width * 3
    raw = b"".join(b"\x00" + bytes(canvas.pixels[y * stride:(y + 1) * stride]) for y in range(canvas.height))
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"tEXt", b"Software\x00" + software.encode("latin-1"))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def software_of(data: bytes) -> str | None:
    """The Software text of PNG bytes (None if it is not a PNG or has none); reads chunks up to the first IDAT."""
    if not data.startswith(SIGNATURE):
        return None
    at = len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Software\x00"):
            return body[len(b"Software\x00"):].decode("latin-1")
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + length
    return None
