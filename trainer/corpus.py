"""A text corpus for tokenizer training and pretraining: files and directories in, documents (strings) out.

A `.txt` / `.md` file is one document. A `.jsonl` file holds one document per line: `{"text": ...}`; a chat
record `{"messages": [...], "tools": [...]}` or `{"prompt": ..., "completion": ...}` (a user + assistant chat)
is rendered to text with a chat template (transformers' Jinja renderer, as `apply_chat_template` renders), so a
model pretrained on it sees the exact text the runtime's template writes. Directories are searched for those
files (sorted; hidden ones skipped). Documents are read lazily, one at a time, so a large corpus streams.
Every bad input is one TrainError naming the file (and line). Not here: tokenizing and packing (packing.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tinygpt.trainer.errors import TrainError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)


CHUNK = 1 << 20  # characters: a long text file is read (and tokenized) in pieces of about this size


@dataclass(frozen=True)
class Document:
    """A document, or one piece of a long one: `part` counts the pieces, `last` is true on the final one."""

    text: str
    source: str  # file, or file:line
    size: int  # bytes of the input it came from (for progress)
    part: int = 0
    last: bool = True


def corpus_files(paths: list[str], flag: str = "--data") -> list[Path]:
    """The corpus files `paths` name (files, or directories searched recursively), in order; TrainError for a
    missing path, a file of another kind, or nothing to read."""
    if not paths:
        raise TrainError(f"{flag}: give the corpus: text files (.txt, .md), JSONL files or directories of them")
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise TrainError(f"{flag} {given}: no such file or directory")
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise TrainError(f"{flag} {given}: the directory holds no .txt, .md or .jsonl files")
            found.extend(inside)
        elif path.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES:
            found.append(path)
        else:
            raise TrainError(f"{flag} {given}: not a .txt, .md or .jsonl file (rename plain text to .txt)")
    return list(dict.fromkeys(found))


def total_bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def render_chat(messages, tools, template: str, source: str) -> str:
    """A conversation (and its tools) as the text `template` writes for it."""
    from jinja2 import TemplateError
    from transformers.utils.chat_template_utils import render_jinja_template

    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise TrainError(f"{source}: \"messages\" must be a list of {{\"role\", \"content\"}} objects")
    try:
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools or None, chat_template=template)
    except (TemplateError, TypeError, KeyError, ValueError) as exc:
        raise TrainError(f"{source}: the chat template cannot render this conversation ({exc})") from exc
    return rendered[0]


def _record_text(record, template: str | None, source: str) -> str:
    if not isinstance(record, dict):
        raise TrainError(f"{source}: not a JSON object")
    if isinstance(record.get("text"), str):
        return record["text"]
    if "messages" in record or "prompt" in record:
        if template is None:
            raise TrainError(f"{source}: a chat record, and the tokenizer has no chat template to render it")
        if "messages" in record:
            return render_chat(record["messages"], record.get("tools"), template, source)
        if isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str):
            chat = [{"role": "user", "content": record["prompt"]},
                    {"role": "assistant", "content": record["completion"]}]
            return render_chat(chat, None, template, source)
    raise TrainError(f"{source}: a record needs \"text\" (a string), \"messages\", or \"prompt\" and \"completion\" "
                     "(strings)")


def _text_file(path: Path) -> Iterator[Document]:
    """A text file as one document, in pieces of about CHUNK characters cut only before a line that starts with
    a non-space character: no pre-tokenizer piece of a byte-level BPE spans such a cut, so the pieces encode to
    the ids of the whole text while a large file never sits in memory at once."""
    part, buffer = 0, ""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            while True:
                block = fh.read(CHUNK)
                buffer += block
                cut = _last_cut(buffer) if block and len(buffer) >= CHUNK else len(buffer) if not block else 0
                if cut:
                    piece, buffer = buffer[:cut], buffer[cut:]
                    empty = part == 0 and not block and not piece.strip()
                    yield Document("" if empty else piece, str(path), len(piece.encode("utf-8")), part, not block)
                    part += 1
                if not block:
                    if part == 0:  # an empty file
                        yield Document("", str(path), 0)
                    return
    except UnicodeDecodeError as exc:
        raise TrainError(f"{path}: not UTF-8 text ({exc.reason}); convert it to UTF-8") from None


def _last_cut(text: str) -> int:
    """The position after the last newline that a non-space character follows (0: none)."""
    i = len(text) - 1
    while (i := text.rfind("\n", 0, i)) >= 0:
        if not text[i + 1].isspace():
            return i + 1
    return 0


def documents(files: list[Path], template: str | None) -> Iterator[Document]:
    """The documents of `files`, one at a time (empty ones skipped; their bytes still count)."""
    for path in files:
        if path.suffix in TEXT_SUFFIXES:
            yield from _text_file(path)
            continue
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                source = f"{path}:{number}"
                if not raw.strip():
                    yield Document("", source, len(raw))
                    continue
                try:
                    record = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise TrainError(f"{source}: not valid JSON ({exc})") from None
                text = _record_text(record, template, source)
                yield Document(text if text.strip() else "", source, len(raw))
