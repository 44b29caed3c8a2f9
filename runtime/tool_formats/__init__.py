"""Tool-call formats: how a model family writes calls, one named plugin per format.

A format is one `ToolFormat` value (format.py) exported as `FORMAT` by a module here, found by name in FORMATS
(as mlx-lm's `tool_parsers/` are). That one value is all the grammars (grammar_llguidance.py,
grammar_outlines.py), the parser (tool_calls.py), the stream splitter (split.py) and the chat templates know
of a family's call syntax, so they cannot disagree. `detect` picks the format a chat template writes (each
module's `matches`), falling back to the generic `json` format; `resolve` applies a user's override by name.
Pure Python (no MLX): the web layer imports it. Not here: tokenizers, grammars, running tools.
"""
from __future__ import annotations

import importlib
from typing import Any

from tinygpt.runtime.tool_formats.format import ToolFormat

FORMATS = {
    "hermes": "tinygpt.runtime.tool_formats.hermes",
    "llama3": "tinygpt.runtime.tool_formats.llama3",
    "mistral": "tinygpt.runtime.tool_formats.mistral",
    "json": "tinygpt.runtime.tool_formats.generic",
    "pythonic": "tinygpt.runtime.tool_formats.pythonic",
}
DETECT_ORDER = ("pythonic", "hermes", "mistral", "llama3")  # the first whose `matches` accepts the template; else FALLBACK
FALLBACK = "json"
AUTO = ("", "auto")  # names that mean "detect from the chat template"

__all__ = ["FORMATS", "ToolFormat", "ToolFormatError", "all_formats", "check_name", "detect", "get", "own_syntax",
           "resolve"]


class ToolFormatError(ValueError):
    """An unknown tool-format name; the message lists the known ones."""


def _module(name: str):
    return importlib.import_module(FORMATS[name])


def check_name(name: str | None) -> None:
    """Raise ToolFormatError unless `name` is a known format, or empty/None/"auto" (detect)."""
    if name is not None and name not in AUTO and name not in FORMATS:
        raise ToolFormatError(f"unknown tool format {name!r}; known: {', '.join(FORMATS)} (or 'auto': pick from "
                              "the model's chat template)")


def get(name: str) -> ToolFormat:
    """The format called `name`; ToolFormatError (listing the known ones) for any other name."""
    check_name(name)
    if name in AUTO:
        raise ToolFormatError(f"{name!r} names no format by itself; use detect() or resolve() with a tokenizer")
    return _module(name).FORMAT


def own_syntax(fmt: ToolFormat):
    """The plugin module of `fmt` when it writes and reads its calls itself (its module exports `Splitter`,
    `lark` and `regex`: a syntax the ToolFormat fields cannot say, e.g. pythonic's Python calls); else None."""
    module = _module(fmt.name) if fmt.name in FORMATS else None
    return module if module is not None and hasattr(module, "Splitter") else None


def all_formats() -> list[ToolFormat]:
    return [_module(n).FORMAT for n in FORMATS]


def detect(chat_template: str | None) -> ToolFormat:
    """The format `chat_template` writes tool calls in; the generic `json` format when it names none."""
    text = chat_template or ""
    for name in DETECT_ORDER:
        if _module(name).matches(text):
            return _module(name).FORMAT
    return _module(FALLBACK).FORMAT


def resolve(name: str | ToolFormat | None, tokenizer: Any) -> ToolFormat:
    """`name` (a ToolFormat, a format name) or, when it is None/""/"auto", the format of `tokenizer`'s chat
    template. Raises ToolFormatError for an unknown name."""
    if isinstance(name, ToolFormat):
        return name
    check_name(name)
    if name is None or name in AUTO:
        return detect(_template(tokenizer))
    return get(name)


def _template(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)  # an mlx-lm TokenizerWrapper passes it through
    return template if isinstance(template, str) else ""
