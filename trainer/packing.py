"""Pretraining data: a corpus tokenized into one token stream and packed into fixed-length training sequences.

Each document is encoded as the tokenizer encodes a prompt (with its BOS if it adds one) and followed by the
end-of-text separator (`<|endoftext|>` where the vocabulary has it, else the tokenizer's EOS), so the model
learns where documents end. The stream is cut into windows of `seq_length + 1` tokens overlapping by one, so
every token after the first is a target exactly once and every position is trained (mask all ones): no padding,
no compute spent on pad tokens, and the same shape every step. A window may hold the end of one document and the
start of the next; attention is not masked at the separator (as GPT-2 and most pretraining), the separator
says the context before it is another document. The last partial window (fewer than seq_length targets) is
dropped and counted. Windows are `Example`s, so batches.BucketedBatches serves them (micro-batch k a pure
function of (data, seed, k): exact resume). Not here: reading files (corpus.py).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from tinygpt.trainer.corpus import Document
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import Example

ENCODE_BATCH = 256  # documents per encode_batch call (tokenizers encodes a batch in parallel)


def separator_id(tokenizer) -> int:
    """The id put after every document: <|endoftext|> if the vocabulary has it, else the EOS token."""
    found = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(found, int) and found != tokenizer.unk_token_id and found is not None:
        return found
    if tokenizer.eos_token_id is None:
        raise TrainError("the tokenizer has neither <|endoftext|> nor an EOS token to separate documents with; use a "
                         "tokenizer from `tinygpt train-tokenizer` or one that defines eos_token")
    return int(tokenizer.eos_token_id)


def tokenize(docs: Iterable[Document], tokenizer, separator: int, progress=None) -> tuple[np.ndarray, int]:
    """(the token stream of the non-empty documents, each followed by `separator`; how many documents). A
    document's first piece starts with the ids the tokenizer adds to any text (its BOS, if it adds one); the
    pieces of one long document (corpus.py) follow each other with nothing between them."""
    backend = tokenizer.backend_tokenizer  # the fast (Rust) tokenizer: encode_batch runs on every core
    opening = backend.encode("", add_special_tokens=True).ids
    parts: list[np.ndarray] = []
    pending: list[Document] = []
    count = 0

    def flush() -> None:
        for doc, enc in zip(pending, backend.encode_batch([d.text for d in pending], add_special_tokens=False)):
            ids = (opening if doc.part == 0 else []) + enc.ids + ([separator] if doc.last else [])
            parts.append(np.asarray(ids, dtype=np.int32))
        pending.clear()

    for doc in docs:
        if progress is not None:
            progress.advance(doc.size)
        if doc.text:
            pending.append(doc)
            count += doc.part == 0
            if len(pending) == ENCODE_BATCH:
                flush()
    if pending:
        flush()
    return (np.concatenate(parts) if parts else np.zeros(0, np.int32)), count


def pack(stream: np.ndarray, seq_length: int, group: str) -> list[Example]:
    """Windows of seq_length + 1 tokens from `stream`, each overlapping the next by one token; all trained."""
    n = max(0, (len(stream) - 1) // seq_length)
    ones = np.ones(seq_length + 1, np.uint8)
    return [Example(stream[i * seq_length: (i + 1) * seq_length + 1], ones, group, f"{group}[{i}]")
            for i in range(n)]


def split(windows: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """(train, valid): the last `fraction` of the windows (at least one, when there are two or more) held out."""
    if fraction <= 0 or len(windows) < 2:
        return windows, []
    held = min(len(windows) - 1, max(1, round(len(windows) * fraction)))
    return windows[:-held], windows[-held:]


def check_enough(stream: np.ndarray, seq_length: int, what: str) -> None:
    if len(stream) < seq_length + 1:
        raise TrainError(f"{what} has {len(stream):,} tokens, fewer than one sequence of --seq-length {seq_length} "
                         f"(+1 for the last target); add text or lower --seq-length")
