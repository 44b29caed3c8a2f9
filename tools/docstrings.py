"""Reads a tool function's docstring: its description and one description per parameter.

Understands Google style (`Args:` / `name (type): text`) and numpy style (`Parameters` / `----` /
`name : type`). Continuation lines are joined with single spaces. It does NOT read types from the
docstring: types come from the signature only (see tools/schema.py).
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_GOOGLE_PARAM_HEADERS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")
_GOOGLE_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(:.*)?$")


@dataclass(frozen=True)
class Docstring:
    """What a docstring says: the text before the first section, and parameter descriptions by name."""
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into its description and its per-parameter descriptions."""
    lines = inspect.cleandoc(doc or "").splitlines()
    sections = _sections(lines)
    description = _join_paragraphs(sections.pop("", []))
    params: dict[str, str] = {}
    for header, body in sections.items():
        if header in _GOOGLE_PARAM_HEADERS:
            params.update(_items(body))
    return Docstring(description=description, params=params)


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Group lines under their section header (lower-cased); the untitled lead section is ''."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        google = _GOOGLE_HEADER.match(line)
        numpy = i + 1 < len(lines) and line.strip() and not line.startswith(" ") \
            and _NUMPY_RULE.match(lines[i + 1])
        if google and not line.startswith(" "):
            current = google.group(1).strip().lower()
            sections.setdefault(current, [])
        elif numpy:
            current = line.strip().lower()
            sections.setdefault(current, [])
            i += 1  # skip the dashes
        else:
            sections[current].append(line)
        i += 1
    return sections


def _items(body: list[str]) -> dict[str, str]:
    """Parse `name (type): text` or `name : type` items, each followed by more-indented continuation lines."""
    indents = [len(ln) - len(ln.lstrip()) for ln in body if ln.strip()]
    if not indents:
        return {}
    base = min(indents)
    items: dict[str, list[str]] = {}
    name = None
    for line in body:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == base:
            google = _GOOGLE_ITEM.match(text)
            numpy = _NUMPY_ITEM.match(text)
            if google and (google.group(2) or google.group(3) or text.endswith(":")) and " : " not in text:
                name = google.group(1)
                items[name] = [google.group(3)] if google.group(3) else []
                continue
            if numpy:
                name = numpy.group(1)
                items[name] = []
                continue
        if name is not None:
            items[name].append(text)
    return {k: " ".join(p for p in v if p).strip() for k, v in items.items()}


def _join_paragraphs(lines: list[str]) -> str:
    """Collapse each paragraph to one line; paragraphs are joined by a blank line."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)
