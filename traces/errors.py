"""The errors `tinygpt.traces` raises, each saying what was wrong and what to do.

`TraceError` covers misuse and bad input (a bad episode id, an event after `end`, a newer format version);
`CorruptTraceError` a file damaged in the middle; `TraceWriteError` a failed append (disk full, size limit).
This module defines types only.
"""


class TraceError(ValueError):
    """Bad input or misuse of the traces API."""


class CorruptTraceError(TraceError):
    """A line that is not the last one fails its CRC or does not decode: the file was damaged, not torn."""


class TraceWriteError(OSError):
    """An append failed (e.g. ENOSPC, EFBIG); the records written before it are intact on disk."""
