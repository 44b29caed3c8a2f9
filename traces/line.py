"""Line framing of `.atraj` files: `<crc32 as 8 lowercase hex> <json>\\n`, CRC-32 over the exact JSON bytes.

From version 2 every JSON object begins with `"seq":N`, the line's 0-based index, so a duplicated, dropped or
reordered line (each CRC still good) is damage; version 1 lines have no `seq`. `encode_line` frames a record
(in an older version's terms when continuing an older file: no `seq` before 2, no field added after it);
`split_lines` cuts a file's bytes into checked payloads (with `seq` taken out) and says whether the tail was
torn. Works on bytes only, so a tail cut inside a multi-byte UTF-8 character is just a torn line.
This module does not open files and does not decode JSON into Structs.
"""
import zlib

import msgspec

from tinygpt.traces.atraj import ADDED_FIELDS, FORMAT_VERSION, Line
from tinygpt.traces.errors import CorruptTraceError

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Line)
_PREFIX = 9  # 8 hex digits and one space
_SEQ = b'{"seq":'


def encode_line(record: Line, seq: int, version: int = FORMAT_VERSION) -> bytes:
    """Return the framed line (with trailing newline) for record number `seq` of a file of `version`."""
    payload = _ENCODER.encode(record) if version == FORMAT_VERSION else _older(record, version)
    if version >= 2:
        payload = b'{"seq":%d,%s' % (seq, payload[1:])
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _older(record: Line, version: int) -> bytes:
    """`record` as JSON of an older `version`: the fields added since are left out (the file never mixes two)."""
    tag = type(record).__struct_config__.tag
    fields = msgspec.to_builtins(record)
    for added in range(version + 1, FORMAT_VERSION + 1):
        for name in ADDED_FIELDS.get(added, {}).get(tag, ()):
            *outer, last = name.split(".")
            holder = fields
            for part in outer:
                holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                holder.pop(last, None)
    return _ENCODER.encode(fields)


def payload_ok(line: bytes) -> bool:
    """True when `line` (without its newline) is well framed and its CRC matches."""
    if len(line) < _PREFIX + 2 or line[8] != 0x20:
        return False
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return False
    return zlib.crc32(memoryview(line)[_PREFIX:]) == crc


def _check_crcs(lines: list[bytes], payloads: list[bytes], name: str) -> None:
    crc32 = zlib.crc32
    try:  # fast path; payload_ok below finds and names the bad line
        if all(line[8] == 0x20 and crc32(p) == int(line[:8], 16) for line, p in zip(lines, payloads)):
            return
    except (ValueError, IndexError):
        pass
    offset = 0
    for number, line in enumerate(lines, 1):
        if not payload_ok(line):
            raise CorruptTraceError(
                f"{name}: line {number} (byte {offset}) fails its CRC check; the file was damaged after it "
                "was written. Restore it from a copy or delete it."
            )
        offset += len(line) + 1


_SEQ_PREFIXES = [b'{"seq":%d,' % index for index in range(1024)]  # what line `index` starts with, precomputed


def _unsequence(payloads: list[bytes], name: str) -> list[bytes]:
    """Version-2 payloads without their `seq`; CorruptTraceError unless the seqs count 0, 1, 2, ..."""
    out = []
    for index, payload in enumerate(payloads):
        prefix = _SEQ_PREFIXES[index] if index < 1024 else b'{"seq":%d,' % index
        if not payload.startswith(prefix):
            offset = sum(len(earlier) + _PREFIX + 1 for earlier in payloads[:index])
            comma = payload.find(b",")
            seq = payload[len(_SEQ):comma].decode(errors="replace") if payload.startswith(_SEQ) else "none"
            raise CorruptTraceError(
                f"{name}: line {index + 1} (byte {offset}) has sequence number {seq}, expected {index}: a line was "
                "duplicated, reordered or removed after it was written. Restore the file from a copy or delete it."
            )
        out.append(b"{" + payload[len(prefix):])
    return out


def split_lines(data: bytes, name: str = "<bytes>", finished: bool = False) -> tuple[list[bytes], int, bool]:
    """Split file bytes into JSON payloads with good CRCs; return (payloads, torn_bytes, sequenced).

    The last line is dropped (its length counted in torn_bytes) when it lacks a newline or fails its CRC; in a
    `finished` file (an `.atraj`, renamed only after its end line was synced) that is damage instead. Any
    earlier bad line, and a line out of sequence, raises CorruptTraceError: append-only writes cannot cause it.
    `sequenced` says whether the lines carry `seq` (version 2 on) or not (version 1), judged by the first line.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: b"" for a clean file
    torn = len(tail)
    if not tail and lines and not payload_ok(lines[-1]):
        torn = len(lines.pop()) + 1
    if torn and finished:
        raise CorruptTraceError(
            f"{name}: the last line ({torn} bytes) is damaged, but the episode was finished (an .atraj is "
            "renamed only after its end line is on disk). Restore it from a copy or delete it."
        )
    payloads = [line[_PREFIX:] for line in lines]
    _check_crcs(lines, payloads, name)
    if not payloads or not payloads[0].startswith(_SEQ):
        return payloads, torn, False
    return _unsequence(payloads, name), torn, True


def decode_payload(payload: bytes, name: str = "<bytes>", number: int = 0) -> Line:
    """Decode one checked JSON payload into its record, with an error that names the file and line."""
    try:
        return _DECODER.decode(payload)
    except msgspec.ValidationError as err:
        raise CorruptTraceError(f"{name}: line {number} is not a valid .atraj record: {err}") from err
    except msgspec.DecodeError as err:
        raise CorruptTraceError(f"{name}: line {number} is not valid JSON: {err}") from err
