"""Line framing of `.atraj` files: `<crc32 as 8 lowercase hex> <json>\\n`, CRC-32 over the exact JSON bytes.

`encode_line` frames a record; `split_lines` cuts a file's bytes into checked payloads and says whether the tail
was torn. Works on bytes only, so a tail cut inside a multi-byte UTF-8 character is just a torn line.
This module does not open files and does not decode JSON into Structs.
"""
import zlib

import msgspec

from tinygpt.traces.atraj import Line
from tinygpt.traces.errors import CorruptTraceError

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Line)
_PREFIX = 9  # 8 hex digits and one space


def encode_line(record: Line) -> bytes:
    """Return the framed line (with trailing newline) for one record."""
    payload = _ENCODER.encode(record)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def payload_ok(line: bytes) -> bool:
    """True when `line` (without its newline) is well framed and its CRC matches."""
    if len(line) < _PREFIX + 2 or line[8] != 0x20:
        return False
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return False
    return zlib.crc32(memoryview(line)[_PREFIX:]) == crc


def split_lines(data: bytes, name: str = "<bytes>") -> tuple[list[bytes], int]:
    """Split file bytes into JSON payloads with good CRCs; return (payloads, torn_bytes).

    The last line is dropped (its length counted in torn_bytes) when it lacks a newline or fails its CRC.
    Any earlier bad line raises CorruptTraceError, because append-only writes cannot damage it.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: b"" for a clean file
    torn = len(tail)
    if not tail and lines and not payload_ok(lines[-1]):
        torn = len(lines.pop()) + 1
    payloads = [line[_PREFIX:] for line in lines]
    crc32 = zlib.crc32
    try:  # fast path; payload_ok below finds and names the bad line
        good = all(line[8] == 0x20 and crc32(p) == int(line[:8], 16) for line, p in zip(lines, payloads))
    except (ValueError, IndexError):
        good = False
    if not good:
        offset = 0
        for number, line in enumerate(lines, 1):
            if not payload_ok(line):
                raise CorruptTraceError(
                    f"{name}: line {number} (byte {offset}) fails its CRC check; the file was damaged after it "
                    "was written. Restore it from a copy or delete it."
                )
            offset += len(line) + 1
    return payloads, torn


def decode_payload(payload: bytes, name: str = "<bytes>", number: int = 0) -> Line:
    """Decode one checked JSON payload into its record, with an error that names the file and line."""
    try:
        return _DECODER.decode(payload)
    except msgspec.ValidationError as err:
        raise CorruptTraceError(f"{name}: line {number} is not a valid .atraj record: {err}") from err
    except msgspec.DecodeError as err:
        raise CorruptTraceError(f"{name}: line {number} is not valid JSON: {err}") from err

