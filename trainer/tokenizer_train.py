"""Train a byte-level BPE tokenizer on a corpus (`tinygpt train-tokenizer`): a tokenizer directory for pretraining.

The BPE itself is `tokenizers`' BpeTrainer (runtime/vocab.py's `train_bpe`: Qwen2's split pattern, NFC, the 256
byte tokens, so any text encodes); on top come the chat model's added tokens — `<|endoftext|>` (the document
separator in pretraining), `<|im_start|>` / `<|im_end|>` (ChatML turns; `<|im_end|>` is EOS), `<tool_call>` /
`</tool_call>` and `<tool_response>` / `</tool_response>` (the Hermes tool format), `<think>` / `</think>` — and
tinygpt's ChatML template with tools, from which the runtime picks the Hermes format. The directory is what
transformers' `AutoTokenizer` and mlx-lm load (tokenizer.json, tokenizer_config.json, chat_template.jinja) plus
tinygpt.json (who made it, from what). It is written into a temp directory and renamed: only a new or empty
`--out` is taken, nothing of the user's is ever replaced. Not here: BPE itself, reading the corpus (corpus.py).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from tinygpt.trainer.errors import TrainError

CREATOR = "tinygpt train-tokenizer"
MARKER = "tinygpt.json"
BYTE_TOKENS = 256
MODEL_MAX_LENGTH = 131072  # what tokenizer_config.json says before a model exists; pretrain's model sets its own


def check_out(given: str, flag: str = "--out") -> Path:
    """`given` as a directory a tokenizer (or model) may be written to: new, or empty; TrainError otherwise."""
    if not str(given).strip():
        raise TrainError(f"{flag}: name the directory to create, e.g. {flag} tokenizers/mine")
    out = Path(given).expanduser()
    if out.is_symlink():
        raise TrainError(f"{flag} {out} is a symbolic link; name a new directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"{flag} {out} exists and is not an empty directory; tinygpt writes only a new one and "
                         "never replaces files it did not create. Name a new directory")
    return out


def minimum_vocab_size() -> int:
    from tinygpt.runtime.vocab import SMALL_ADDED

    return BYTE_TOKENS + len(SMALL_ADDED) + 1


def train_tokenizer(data: list[str], out: str, *, vocab_size: int, min_frequency: int = 2) -> dict:
    """Train on the corpus `data` and write the tokenizer directory `out`; return what was made (a report)."""
    from tinygpt.runtime.vocab import SMALL_ADDED

    least = minimum_vocab_size()
    if vocab_size < least:
        raise TrainError(f"--vocab-size {vocab_size} is too small: the vocabulary holds the {BYTE_TOKENS} byte tokens "
                         f"and {len(SMALL_ADDED)} special tokens ({', '.join(t for t, _ in SMALL_ADDED)}) before any "
                         f"merge; use at least {least}")
    target = check_out(out)
    from tinygpt.runtime import vocab
    from tinygpt.runtime.chat_template import CHAT_TEMPLATE
    from tinygpt.trainer.corpus import corpus_files, documents, total_bytes
    from tinygpt.trainer.progress import WorkProgress

    files = corpus_files(data, "corpus")
    started, counts = time.perf_counter(), {"documents": 0, "bytes": 0}

    def texts(progress: WorkProgress):
        for doc in documents(files, CHAT_TEMPLATE):
            progress.advance(doc.size)
            counts["bytes"] += doc.size
            if doc.text:
                counts["documents"] += doc.part == 0
                yield doc.text

    with WorkProgress("reading and training BPE", total_bytes(files)) as progress:
        # an error reading the corpus (a TrainError from `documents`) comes out of BpeTrainer as it is
        tok = vocab.train_bpe(texts(progress), vocab_size - len(SMALL_ADDED), min_frequency=min_frequency)
    if not counts["documents"]:
        raise TrainError(f"corpus {', '.join(data)}: no text in it (every document is empty)")
    report = {"path": str(target), "vocab_size": tok.get_vocab_size(), "requested_vocab_size": vocab_size,
              "bpe_tokens": tok.get_vocab_size() - len(SMALL_ADDED), "special_tokens": [t for t, _ in SMALL_ADDED],
              "documents": counts["documents"], "bytes": counts["bytes"], "files": [str(f) for f in files],
              "min_frequency": min_frequency}
    meta = {"created_by": CREATOR, "kind": "tokenizer", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **{k: v for k, v in report.items() if k != "path"}}
    _write(target, lambda tmp: vocab.save_tokenizer(tok, tmp, model_max_length=MODEL_MAX_LENGTH, vocab="bpe"), meta)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _write(out: Path, write, meta: dict) -> None:
    """`write(tmp)` + the marker into a temp directory beside `out`, renamed to `out` (new or empty: rename(2)
    replaces an empty directory); checked again just before, in case `out` changed meanwhile."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()
    try:
        write(tmp)
        meta = {**meta, "files": sorted({p.name for p in tmp.iterdir()} | {MARKER})}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        check_out(str(out))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
