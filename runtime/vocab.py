"""Tokenizers for the models tinygpt creates: a small byte-level BPE trained locally, or a model family's real
vocabulary: Qwen2/Qwen3 (151,936 slots, `ggml-vocab-qwen2.gguf`), Llama 3 (128,256, `ggml-vocab-llama-bpe.gguf`)
or Mistral Nemo (131,072, tekken `tekken_240718.json`).

The vocabulary files ship inside packages on PyPI: llama.cpp's test vocabularies and chat templates (MIT) in the
`llama-cpp-python==0.3.36` sdist, Mistral's tekken file (Apache-2.0) in the `mistral-common==1.12.0` wheel. On
first use the archive is fetched from the package index with a byte progress bar (index_fetch.py, hash-checked,
temp name then rename) into the user cache (never the repo), and only the files tinygpt reads are kept. Files in
the cache that tinygpt did not write are never replaced or removed. Added tokens sit at their real ids, with the
names of the family's instruct release (Llama 3.1's <|eom_id|> and <|python_tag|>, Mistral's control tokens).
The small BPE and Qwen tokenizers carry tinygpt's Qwen3-compatible chat template; Llama 3 and Mistral ones carry
their family's real template (Llama 3.1, Mistral Nemo) from llama.cpp's set. This module builds tokenizers; it
does not load models.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from tinygpt.runtime.chat_template import CHAT_TEMPLATE
from tinygpt.runtime.tool_formats import hermes, mistral

SDIST_PROJECT, SDIST_FILE = "llama-cpp-python", "llama_cpp_python-0.3.36.tar.gz"
LLAMA_CPP = "vendor/llama.cpp/models/"
GGUF_MEMBER = LLAMA_CPP + "ggml-vocab-qwen2.gguf"
QWEN_VOCAB_SIZE = 151936  # embedding rows; the tokenizer itself has 151,669 entries, as Qwen3's does
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Qwen3's added tokens, in id order from 151643; True = special (hidden by skip_special_tokens).
QWEN3_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
    ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    (hermes.OPEN, False), (hermes.CLOSE, False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
]
QWEN3_FIRST_ADDED_ID = 151643
SMALL_ADDED = [(t, s) for t, s in QWEN3_ADDED if not t.startswith(("<|object", "<|box", "<|quad", "<|vision",
                                                                     "<|image", "<|video", "<|fim", "<|repo",
                                                                     "<|file"))]
LLAMA3_FIRST_ADDED_ID, LLAMA3_VOCAB_SIZE = 128000, 128256
# Llama 3.1 renamed three of Llama 3's reserved tokens and numbered the rest on from them (ids 128000..128255)
LLAMA31_NAMED = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128004: "<|finetune_right_pad_id|>",
                 128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128008: "<|eom_id|>",
                 128009: "<|eot_id|>", 128010: "<|python_tag|>"}
# Mistral's tekken v3 control tokens (mistral-common's list for tokenizer files that carry none), ids 0..19;
# ids 20..999 are <SPECIAL_n> fillers
TEKKEN_CONTROL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                  "[TOOL_RESULTS]", "[/TOOL_RESULTS]", mistral.MARKER, "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
                  "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"]
MISTRAL_VOCAB_SIZE = 131072


@dataclass(frozen=True, eq=False)  # compared by identity: one per release file
class Archive:
    """A release file on the package index and the members tinygpt keeps from it, by their cache names."""

    project: str
    filename: str
    members: dict[str, str]  # cache file name -> path inside the archive (after its top directory, for sdists)


SDIST = Archive(SDIST_PROJECT, SDIST_FILE, {
    **{f"ggml-vocab-{v}.gguf{s}": f"{LLAMA_CPP}ggml-vocab-{v}.gguf{s}"
       for v in ("qwen2", "llama-bpe") for s in (".inp", ".out", "")},
    "meta-llama-Llama-3.1-8B-Instruct.jinja": LLAMA_CPP + "templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": LLAMA_CPP + "templates/mistralai-Mistral-Nemo-Instruct-2407.jinja",
})
MISTRAL_WHEEL = Archive("mistral-common", "mistral_common-1.12.0-py3-none-any.whl",
                        {"tekken_240718.json": "mistral_common/data/tekken_240718.json"})
# what each real vocabulary needs, in order (the first file named is the one callers ask for)
NEEDS = {
    "qwen": [(SDIST, "ggml-vocab-qwen2.gguf"), (SDIST, "ggml-vocab-qwen2.gguf.inp"),
             (SDIST, "ggml-vocab-qwen2.gguf.out")],
    "llama3": [(SDIST, "ggml-vocab-llama-bpe.gguf"), (SDIST, "ggml-vocab-llama-bpe.gguf.inp"),
               (SDIST, "ggml-vocab-llama-bpe.gguf.out"), (SDIST, "meta-llama-Llama-3.1-8B-Instruct.jinja")],
    "mistral": [(MISTRAL_WHEEL, "tekken_240718.json"), (SDIST, "mistralai-Mistral-Nemo-Instruct-2407.jinja")],
}


class VocabError(RuntimeError):
    """A vocabulary could not be fetched or read; the message says what to do."""


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
    return vocab_files("qwen", hint="or set TINYGPT_QWEN_GGUF=/path/to/ggml-vocab-qwen2.gguf")[0]


def vocab_files(name: str, hint: str = "") -> list[Path]:
    """The cached files the `name` vocabulary needs (NEEDS), fetching each missing one's archive once: every
    member of that archive tinygpt reads is kept, so one download serves all the vocabularies it holds."""
    folder = cache_dir() / "vocab"
    paths = [folder / f for _, f in NEEDS[name]]
    for archive in dict.fromkeys(a for a, f in NEEDS[name] if not (folder / f).exists()):
        _writable_dir(folder)
        want = [f for a, f in NEEDS[name] if a is archive]
        _fetch(archive, folder, want, hint or f"or copy {', '.join(want)} into {folder}")
    return paths


def _fetch(archive: Archive, folder: Path, want: list[str], hint: str) -> None:
    from tinygpt.runtime import index_fetch

    try:
        item = index_fetch.find_file(archive.project, archive.filename)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder) as tmp:
            print(f"one-time download of vocabulary files ({', '.join(want)}) into {folder}", file=sys.stderr,
                  flush=True)
            _extract(index_fetch.download(item, Path(tmp)), archive, folder, want, Path(tmp))
    except index_fetch.FetchError as exc:
        raise VocabError(f"{exc}. The vocabulary needs package-index access once; {hint}") from exc
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise VocabError(f"could not unpack {archive.filename} into {folder} ({exc}); "
                         f"set TINYGPT_CACHE to a writable directory with ~100 MB free") from exc


def _extract(path: Path, archive: Archive, folder: Path, want: list[str], tmp: Path) -> None:
    """Copy the archive's members into `folder`: those in `want` must be there (the first one, the marker that
    the set is complete, goes last); the other members tinygpt reads are kept too where present. Files already
    in `folder` are left alone (an earlier run wrote them, or the user put them there)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = {n: n for n in zf.namelist()}
            _copy(lambda m: zf.read(m), names, archive, folder, want, tmp, path.name)
    else:
        with tarfile.open(path) as tar:
            names = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name and m.isfile()}
            _copy(lambda m: tar.extractfile(m).read(), names, archive, folder, want, tmp, path.name)


def _copy(read, names: dict, archive: Archive, folder: Path, want: list[str], tmp: Path, label: str) -> None:
    order = [f for f in archive.members if f not in want] + want[1:] + want[:1]
    for cached in order:
        dest = folder / cached
        if dest.exists():
            continue
        member = names.get(archive.members[cached])
        if member is None:
            if cached in want:
                raise VocabError(f"{label} has no {archive.members[cached]}; put {cached} into {folder} instead")
            continue
        part = tmp / cached
        part.write_bytes(read(member))
        os.replace(part, dest)


def _writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-")
        probe.close()
    except OSError as exc:
        raise VocabError(f"cannot write tinygpt's cache at {path} ({exc.strerror or exc}); "
                         f"set TINYGPT_CACHE to a writable directory") from exc


def _pre_tokenizer(split: str = QWEN2_SPLIT):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])


def _finish(tok: Tokenizer, added: list[tuple[str, bool]], split: str = QWEN2_SPLIT, nfc: bool = True) -> Tokenizer:
    if nfc:  # Qwen's tokenizer normalizes to NFC; Llama 3's and tekken's do not normalize
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer(split)
    tok.decoder = decoders.ByteLevel()
    for text, special in added:
        tok.add_tokens([AddedToken(text, special=special, normalized=False)])
    return tok


def _cached(name: str, build) -> Tokenizer:
    """The tokenizer built once by `build()` and kept in the cache as `name` (written under a temp name)."""
    built = cache_dir() / "vocab" / name
    if built.exists():
        return Tokenizer.from_file(str(built))
    tok = build()
    _writable_dir(built.parent)
    fd, part = tempfile.mkstemp(prefix=built.name + ".", suffix=".part", dir=built.parent)
    os.close(fd)
    try:
        tok.save(part)
        os.replace(part, built)
    finally:
        Path(part).unlink(missing_ok=True)
    return tok


def _gguf_bpe(path: Path, family: str, regular_count: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(path)).fields
        tokens = fields["tokenizer.ggml.tokens"].contents()
        kinds = fields["tokenizer.ggml.token_type"].contents()
        merges = fields["tokenizer.ggml.merges"].contents()
    except (OSError, KeyError, ValueError) as exc:
        raise VocabError(f"{path} is not a readable {family} vocabulary GGUF ({exc}); delete it to re-fetch") from exc
    regular = {t: i for i, t in enumerate(tokens) if kinds[i] == 1}
    if len(regular) != regular_count:
        raise VocabError(f"{path}: expected {regular_count} regular tokens, found {len(regular)}")
    return regular, [tuple(m.split(" ", 1)) for m in merges]


def qwen_tokenizer() -> Tokenizer:
    """The real Qwen2/Qwen3 tokenizer (151,643 BPE tokens + Qwen3's added tokens at their ids)."""
    def build() -> Tokenizer:
        regular, merges = _gguf_bpe(qwen_gguf_path(), "Qwen", QWEN3_FIRST_ADDED_ID)
        tok = _finish(Tokenizer(models.BPE(vocab=regular, merges=merges, byte_fallback=False)), QWEN3_ADDED)
        assert tok.token_to_id(hermes.OPEN) == 151657 and tok.token_to_id("</think>") == 151668
        return tok

    return _cached("qwen3-tokenizer.json", build)


def llama3_tokenizer() -> Tokenizer:
    """The real Llama 3 tokenizer (128,000 BPE tokens, then 256 special tokens named as in Llama 3.1)."""
    def build() -> Tokenizer:
        regular, merges = _gguf_bpe(vocab_files("llama3")[0], "Llama 3", LLAMA3_FIRST_ADDED_ID)
        bpe = models.BPE(vocab=regular, merges=merges, byte_fallback=False, ignore_merges=True)
        reserved = iter(range(256))
        names = [LLAMA31_NAMED.get(i) or f"<|reserved_special_token_{next(reserved)}|>"
                 for i in range(LLAMA3_FIRST_ADDED_ID, LLAMA3_VOCAB_SIZE)]
        tok = _finish(Tokenizer(bpe), [(n, True) for n in names], LLAMA3_SPLIT, nfc=False)
        assert tok.token_to_id("<|python_tag|>") == 128010
        assert tok.token_to_id("<|reserved_special_token_247|>") == 128255
        return tok

    return _cached("llama3-tokenizer.json", build)


def mistral_tokenizer() -> Tokenizer:
    """The real Mistral Nemo tokenizer (tekken: 1,000 control tokens, then 130,072 byte-level BPE tokens)."""
    def build() -> Tokenizer:
        path = vocab_files("mistral")[0]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            pattern = data["config"]["pattern"]
            n_special = data["config"]["default_num_special_tokens"]
            ranks = {base64.b64decode(t["token_bytes"]): t["rank"]
                     for t in data["vocab"][: data["config"]["default_vocab_size"] - n_special]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VocabError(f"{path} is not a readable tekken vocabulary ({exc}); delete it to re-fetch") from exc
        to_text = bytes_to_unicode()
        spell = lambda b: "".join(to_text[x] for x in b)  # noqa: E731
        vocab = {spell(b): r + n_special for b, r in ranks.items()}
        merges = [(spell(a), spell(b)) for _, a, b in sorted(_tiktoken_merges(ranks))]
        specials = TEKKEN_CONTROL + [f"<SPECIAL_{i}>" for i in range(len(TEKKEN_CONTROL), n_special)]
        tok = Tokenizer(models.BPE(vocab={**{s: i for i, s in enumerate(specials)}, **vocab}, merges=merges,
                                   byte_fallback=False, ignore_merges=True))
        tok = _finish(tok, [(s, True) for s in specials], pattern, nfc=False)
        assert tok.token_to_id(mistral.MARKER) == 9 and tok.get_vocab_size() == MISTRAL_VOCAB_SIZE
        return tok

    return _cached("mistral-nemo-tokenizer.json", build)


def _tiktoken_merges(ranks: dict[bytes, int]) -> list[tuple[int, bytes, bytes]]:
    """(rank, left, right) for every multi-byte token: the two parts byte-pair encoding joins last to make it
    (tiktoken merges the lowest-ranked adjacent pair first), found by encoding the token with lower ranks only."""
    out = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 62))
            if ranks.get(parts[best] + parts[best + 1], 1 << 62) >= rank:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) == 2:
            out.append((rank, parts[0], parts[1]))
    return out


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character table used by byte-level BPE vocabularies (and grammar_outlines)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def train_bpe(texts, vocab_size: int, *, min_frequency: int = 2, length: int | None = None) -> Tokenizer:
    """A byte-level BPE (Qwen2's split pattern, NFC) trained by `tokenizers`' BpeTrainer on the strings `texts`
    (any iterable; `length` is its size if known): `vocab_size` BPE entries (the 256 byte tokens included, fewer
    when the text has no more pairs seen `min_frequency` times), then SMALL_ADDED (the chat, tool-call and
    think tokens of the small vocabulary and tinygpt's template) as added tokens at the end."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return _finish(tok, SMALL_ADDED)


def small_bpe_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """A byte-level BPE trained here on an embedded corpus, for tiny test models; added tokens at the end."""
    return train_bpe(_corpus(), vocab_size)


def _corpus() -> list[str]:
    text = (Path(__file__).parent / "assets" / "bpe_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()] + [CHAT_TEMPLATE]


@dataclass(frozen=True)
class Family:
    """What a vocabulary's tokenizer files say besides the tokens: its special tokens, chat template, and the
    tool-call format that template writes (whose end-of-turn tokens are the model's EOS ids)."""

    bos: str | None
    eos: str
    pad: str
    template: str | None  # cache file name of the family's chat template; None: tinygpt's own (CHAT_TEMPLATE)
    tool_format: str


FAMILIES = {
    "bpe": Family(None, "<|im_end|>", "<|endoftext|>", None, "hermes"),
    "qwen": Family(None, "<|im_end|>", "<|endoftext|>", None, "hermes"),
    "llama3": Family("<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>",
                     "meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"),
    "mistral": Family("<s>", "</s>", "<pad>", "mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral"),
}


def tokenizer_for(vocab: str) -> Tokenizer:
    """The tokenizer of a vocabulary name (presets.VOCABS)."""
    build = {"bpe": small_bpe_tokenizer, "qwen": qwen_tokenizer, "llama3": llama3_tokenizer,
             "mistral": mistral_tokenizer}
    return build[vocab]()


def chat_template(vocab: str) -> str:
    """The chat template a model of this vocabulary carries (the family's own, from the cache)."""
    name = FAMILIES[vocab].template
    if name is None:
        return CHAT_TEMPLATE
    path = next(p for p in vocab_files(vocab) if p.name == name)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabError(f"cannot read the chat template {path} ({exc}); delete it to re-fetch") from exc


def save_tokenizer(tok: Tokenizer, out_dir: Path, model_max_length: int, vocab: str = "bpe",
                   template: str | None = None) -> None:
    """Write tokenizer.json + tokenizer_config.json (with the family's special tokens and chat template, or
    `template`) the way transformers loads them."""
    from transformers import PreTrainedTokenizerFast

    family = FAMILIES[vocab]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos, pad_token=family.pad,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )
    fast.chat_template = template if template is not None else chat_template(vocab)
    fast.save_pretrained(str(out_dir))
