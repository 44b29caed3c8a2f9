"""What the router sees of a request: its text and its tool names, hashed into one sparse feature vector.

Three blocks, each L2-normalised on its own so a long prompt cannot drown the tools: word unigrams and bigrams,
character 4-grams inside words, and the offered tool names (whole, and split into their parts: `move_file` gives
`move` and `file`). Counts are sublinear (1 + log c). Every feature is hashed (CRC-32 of its prefixed text) into
`dim` buckets, so the same text gives the same vector in any process. Only the user and system messages are
read, the last `MAX_CHARS` characters of them (character n-grams: the last `CHAR_GRAM_CHARS`). No vocabulary, no model, no numpy: vectors are (indices, values).
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

MAX_CHARS = 4000  # a request's text beyond this (from the end) is not read: bounds the routing latency
CHAR_GRAM_CHARS = 1500  # character n-grams come from the last this many characters only (they cost the most)
VERSION = 2  # saved with a router: a change to what features mean must bump it (old routers then refuse to load)
_WORD = re.compile(r"[^\W_]+(?:['_][^\W_]+)*")  # letters and digits of any script, joined by ' or _
_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


@dataclass(frozen=True)
class Request:
    """What a routing decision is about: the text the user (and system) wrote, and the tool names offered."""

    text: str
    tools: tuple[str, ...] = ()


def request_from(messages: list[dict] | None = None, tools: list | None = None, text: str | None = None) -> Request:
    """A Request from OpenAI-style chat `messages` (or plain `text`) and `tools` (names, or function declarations
    {"type": "function", "function": {"name": ...}} or {"name": ...}). ValueError, one line, for a bad shape."""
    parts = [text] if text else []
    for i, m in enumerate(messages or []):
        if not isinstance(m, dict):
            raise ValueError(f"message {i} is not an object with 'role' and 'content'")
        if m.get("role") in ("user", "system"):
            parts.append(_content_text(m.get("content")))
    return Request(text="\n".join(p for p in parts if p), tools=tuple(tool_names(tools or [])))


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def tool_names(tools: list) -> list[str]:
    """The names of `tools` given as names or as (OpenAI or plain) function declarations."""
    names = []
    for i, t in enumerate(tools):
        if isinstance(t, str):
            name = t
        elif isinstance(t, dict):
            fn = t.get("function") if isinstance(t.get("function"), dict) else t
            name = fn.get("name")
        else:
            name = None
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"tool {i} has no name: give tool names or function declarations with a 'name'")
        names.append(name.strip())
    return names


def _block(grams: list[str], prefix: str, dim: int, out: dict[int, float]) -> None:
    counts: dict[str, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    if not counts:
        return
    weights = {g: 1.0 + math.log(c) for g, c in counts.items()}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    mask = dim - 1
    for g, w in weights.items():
        i = zlib.crc32((prefix + g).encode()) & mask
        out[i] = out.get(i, 0.0) + w / norm


def featurize(request: Request, dim: int) -> tuple[list[int], list[float]]:
    """The request's sparse vector: sorted bucket indices in [0, dim) and their values. `dim` is a power of 2."""
    text = request.text[-MAX_CHARS:].lower()
    words = _WORD.findall(text)
    out: dict[int, float] = {}
    _block(words + [f"{a} {b}" for a, b in zip(words, words[1:])], "w:", dim, out)
    tail = words if len(text) <= CHAR_GRAM_CHARS else _WORD.findall(text[-CHAR_GRAM_CHARS:])
    _block([w[i:i + 4] for w in (f"<{w}>" for w in tail) for i in range(max(1, len(w) - 3))], "c:", dim, out)
    tool_grams = []
    for name in request.tools:
        tool_grams.append(name.lower())
        tool_grams += ["~" + p.lower() for p in _PARTS.findall(name)]
    _block(tool_grams, "t:", dim, out)
    indices = sorted(out)
    return indices, [out[i] for i in indices]
