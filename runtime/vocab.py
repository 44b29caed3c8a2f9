"""Tokenizers for the models tinygpt creates: a small byte-level BPE trained locally, or the real
151,936-slot Qwen2/Qwen3 vocabulary read from `ggml-vocab-qwen2.gguf`.

The GGUF ships (MIT) inside the `llama-cpp-python==0.3.36` sdist; on first use that sdist (77 MB) is fetched
from the package index with a byte progress bar (index_fetch.py, hash-checked, temp name then rename) into the
user cache (never the repo), and only the GGUF and its test vectors are kept. Files in the cache that tinygpt
did not write are never replaced or removed. Qwen3's added tokens are placed at their Qwen3 ids.
Both tokenizers share Qwen2's pre-tokenizer and carry tinygpt's Qwen3-compatible chat template.
This module builds tokenizers; it does not load models.
"""
from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from tinygpt.runtime.chat_template import CHAT_TEMPLATE

SDIST_PROJECT, SDIST_FILE = "llama-cpp-python", "llama_cpp_python-0.3.36.tar.gz"
GGUF_MEMBER = "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"
QWEN_VOCAB_SIZE = 151936  # embedding rows; the tokenizer itself has 151,669 entries, as Qwen3's does
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Qwen3's added tokens, in id order from 151643; True = special (hidden by skip_special_tokens).
QWEN3_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
    ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
]
QWEN3_FIRST_ADDED_ID = 151643
SMALL_ADDED = [(t, s) for t, s in QWEN3_ADDED if not t.startswith(("<|object", "<|box", "<|quad", "<|vision",
                                                                     "<|image", "<|video", "<|fim", "<|repo",
                                                                     "<|file"))]


class VocabError(RuntimeError):
    """The Qwen vocabulary could not be fetched or read; the message says what to do."""


def cache_dir() -> Path:
    """tinygpt's user cache: $TINYGPT_CACHE, else $XDG_CACHE_HOME/tinygpt, else ~/.cache/tinygpt."""
    if os.environ.get("TINYGPT_CACHE"):
        return Path(os.environ["TINYGPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinygpt"


def qwen_gguf_path(fetch: bool = True) -> Path:
    """Path of ggml-vocab-qwen2.gguf ($TINYGPT_QWEN_GGUF, or the cache), fetching the sdist if needed."""
    if os.environ.get("TINYGPT_QWEN_GGUF"):
        return Path(os.environ["TINYGPT_QWEN_GGUF"])
    target = cache_dir() / "vocab" / "ggml-vocab-qwen2.gguf"
    if target.exists() or not fetch:
        return target
    _writable_dir(target.parent)
    from tinygpt.runtime import index_fetch

    try:
        item = index_fetch.find_file(SDIST_PROJECT, SDIST_FILE)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
            print(f"one-time download of the Qwen vocabulary into {target.parent}", file=sys.stderr, flush=True)
            sdist = index_fetch.download(item, Path(tmp))
            _extract(sdist, target, Path(tmp))
    except index_fetch.FetchError as exc:
        raise VocabError(f"{exc}. The Qwen vocabulary needs PyPI access once; or set "
                         f"TINYGPT_QWEN_GGUF=/path/to/ggml-vocab-qwen2.gguf") from exc
    except (OSError, tarfile.TarError) as exc:
        raise VocabError(f"could not unpack {SDIST_FILE} into {target.parent} ({exc}); "
                         f"set TINYGPT_CACHE to a writable directory with ~100 MB free") from exc
    return target


def _writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-")
        probe.close()
    except OSError as exc:
        raise VocabError(f"cannot write tinygpt's cache at {path} ({exc.strerror or exc}); "
                         f"set TINYGPT_CACHE to a writable directory") from exc


def _extract(sdist: Path, target: Path, tmp: Path) -> None:
    """Copy the GGUF and llama.cpp's test vectors (.inp/.out) out of the sdist; the GGUF goes last, as the
    marker that the set is complete. Files already there are left alone (an earlier run wrote them)."""
    with tarfile.open(sdist) as tar:
        for suffix in (".inp", ".out", ""):
            dest = target.with_name(target.name + suffix)
            if dest.exists():
                continue
            member = next((m for m in tar.getmembers() if m.name.endswith(GGUF_MEMBER + suffix)), None)
            if member is None:
                raise VocabError(f"{sdist.name} has no {GGUF_MEMBER + suffix}; set TINYGPT_QWEN_GGUF instead")
            part = tmp / dest.name
            part.write_bytes(tar.extractfile(member).read())
            os.replace(part, dest)


def _pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])


def _finish(tok: Tokenizer, added: list[tuple[str, bool]]) -> Tokenizer:
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    for text, special in added:
        tok.add_tokens([AddedToken(text, special=special, normalized=False)])
    return tok


def qwen_tokenizer() -> Tokenizer:
    """The real Qwen2/Qwen3 tokenizer (151,643 BPE tokens + Qwen3's added tokens at their ids)."""
    built = cache_dir() / "vocab" / "qwen3-tokenizer.json"
    if built.exists():
        return Tokenizer.from_file(str(built))
    from gguf import GGUFReader

    path = qwen_gguf_path()
    try:
        fields = GGUFReader(str(path)).fields
        tokens = fields["tokenizer.ggml.tokens"].contents()
        kinds = fields["tokenizer.ggml.token_type"].contents()
        merges = fields["tokenizer.ggml.merges"].contents()
    except (OSError, KeyError, ValueError) as exc:
        raise VocabError(f"{path} is not a readable Qwen vocabulary GGUF ({exc}); delete it to re-fetch") from exc
    regular = {t: i for i, t in enumerate(tokens) if kinds[i] == 1}
    if len(regular) != QWEN3_FIRST_ADDED_ID:
        raise VocabError(f"{path}: expected {QWEN3_FIRST_ADDED_ID} regular tokens, found {len(regular)}")
    bpe = models.BPE(vocab=regular, merges=[tuple(m.split(" ", 1)) for m in merges], byte_fallback=False)
    tok = _finish(Tokenizer(bpe), QWEN3_ADDED)
    assert tok.token_to_id("<tool_call>") == 151657 and tok.token_to_id("</think>") == 151668
    _writable_dir(built.parent)
    fd, part = tempfile.mkstemp(prefix=built.name + ".", suffix=".part", dir=built.parent)
    os.close(fd)
    try:
        tok.save(part)
        os.replace(part, built)
    finally:
        Path(part).unlink(missing_ok=True)
    return tok


def small_bpe_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """A byte-level BPE trained here on an embedded corpus, for tiny test models; added tokens at the end."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return _finish(tok, SMALL_ADDED)


def _corpus() -> list[str]:
    text = (Path(__file__).parent / "assets" / "bpe_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()] + [CHAT_TEMPLATE]


def save_tokenizer(tok: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    """Write tokenizer.json + tokenizer_config.json (with the chat template) the way transformers loads them."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
