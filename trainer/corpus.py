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


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # file, or file:line
    size: int  # bytes of the input it came from (for progress)


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


def documents(files: list[Path], template: str | None) -> Iterator[Document]:
    """The documents of `files`, one at a time (empty ones skipped; their bytes still count)."""
    for path in files:
        if path.suffix in TEXT_SUFFIXES:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise TrainError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            yield Document(text if text.strip() else "", str(path), path.stat().st_size)
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
