"""Grammar-constrained decoding: compile tool-call and JSON grammars for a tokenizer, and hand out a fresh
logits processor per generation that masks every token the grammar does not allow.

Backends are modules chosen by name (BACKENDS): `llguidance` (default; lazy "free text until the format's
trigger, then a constrained call") and `outlines` (outlines-core regex index). Each exports
`prepare(hf_tokenizer, eos_ids)`, `compile(spec, vocab)` and `matcher(compiled, vocab)`. The call syntax comes
from the model family's tool format (runtime/tool_formats/: picked from the chat template unless named).
Compiled grammars are kept in an LRU keyed by (backend, tokenizer, format, mode, parallel, tools/schema hash):
the server compiles per request. Calls are exactly the chat template's text (json.dumps separators, no free
whitespace). Schemas reach the
backends in `strict` form; a oneOf whose branches may overlap is refused here for both (no backend can enforce
"exactly one"). Every refusal is a GrammarError (a ValueError; the web layer maps it to 400).
Not here: parsing calls out of the output (tool_calls.py), the decoding loop (engine.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import mlx.core as mx
import numpy as np

from tinygpt.runtime import tool_formats
from tinygpt.runtime.grammar_schema import SchemaError, check_schema, strict
from tinygpt.runtime.tool_calls import tool_specs
from tinygpt.runtime.tool_formats import ToolFormat, ToolFormatError
from tinygpt.traces.atraj import ToolSpec

BACKENDS = {"llguidance": "tinygpt.runtime.grammar_llguidance", "outlines": "tinygpt.runtime.grammar_outlines"}
DEFAULT_BACKEND = "llguidance"
TOOL_CHOICES = ("none", "auto", "required")
CACHE_SIZE = 64


class GrammarError(ValueError):
    """A grammar could not be built (bad tools/tool_choice/schema, or the backend refused); says why."""


@dataclass(frozen=True)
class GrammarSpec:
    """What to constrain, backend-neutral. mode: none | auto | required | json. Named tool_choice arrives
    as required with that one tool and parallel=False. Tool parameters are already `strict`; `format` is the
    call syntax (None only in json mode)."""

    mode: str
    tools: tuple[ToolSpec, ...] = ()
    parallel: bool = False
    schema: dict | None = None
    format: ToolFormat | None = None


@dataclass(frozen=True)
class Grammar:
    """A compiled grammar for one tokenizer; `processor()` gives a fresh per-generation logits processor."""

    spec: GrammarSpec
    choice: str  # "none" | "auto" | "required" | "named:<name>" | "json"
    backend: str
    format: ToolFormat | None  # the call syntax (what tool_calls.parse_tool_calls must read); None for json
    compiled: Any
    vocab: Any
    n_tokens: int  # tokenizer size; logits beyond it (model vocab padding) are always masked
    eos_ids: tuple[int, ...]  # the ids that end the turn (turn_end_ids); every other EOS id is masked
    compile_s: float
    other_eos_ids: tuple[int, ...] = ()

    def processor(self) -> "GrammarProcessor":
        return GrammarProcessor(self)


class GrammarProcessor:
    """An mlx-lm logits processor `(tokens, logits) -> logits` that follows one generation.

    The first call ignores `tokens` (it holds whatever prompt suffix was prefilled); each later call reads
    the token sampled at the previous step from `tokens[-1]`. After generation, `accepted(output_ids)` says
    whether the output is a complete sentence of the grammar (False when the token budget cut it off)."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self._matcher = _backend(grammar.backend).matcher(grammar.compiled, grammar.vocab)
        self._mask = np.zeros((grammar.n_tokens + 31) // 32, dtype=np.int32)
        self._eos_only = _eos_mask(grammar.n_tokens, grammar.eos_ids)
        self._keep = ~_eos_mask(grammar.n_tokens, grammar.other_eos_ids) if grammar.other_eos_ids else None
        self._last: tuple[np.ndarray, mx.array] | None = None  # free text / strings repeat the same mask
        self._started = False
        self._ended = False  # an EOS id was consumed
        self.consumed: list[int] = []
        self.error: str | None = None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self._started:
            self._advance(int(tokens[-1].item()))
        self._started = True
        mx.async_eval(logits)  # let the forward pass run while the mask is computed
        if self._ended or self.error:
            mask = self._eos_only
        else:
            self._matcher.fill(self._mask)
            if self._keep is not None:  # the backend allows every EOS id where the grammar may end
                np.bitwise_and(self._mask, self._keep, out=self._mask)
            mask = self._mask
        return self._apply(logits, mask)

    def _advance(self, token: int) -> None:
        self.consumed.append(token)
        if self._ended or self.error:
            return
        if token in self.grammar.other_eos_ids:
            self.error = f"EOS id {token} is not this template's end of turn (ids {list(self.grammar.eos_ids)})"
            return
        if token in self.grammar.eos_ids:
            self._ended = True
            if not self._matcher.accepting():
                self.error = f"EOS (id {token}) sampled where the grammar is not complete"
            return
        if not self._matcher.advance(token):
            self.error = self._matcher.error() or f"token {token} is not allowed by the grammar here"

    def _apply(self, logits: mx.array, mask: np.ndarray) -> mx.array:
        vocab = logits.shape[-1]
        if self._last is None or self._last[1].shape[0] != vocab or not np.array_equal(self._last[0], mask):
            n = min(vocab, self.grammar.n_tokens)
            bits = np.zeros(vocab, dtype=np.uint8)  # ids past the tokenizer (model vocab padding) stay 0
            bits[:n] = np.unpackbits(mask.view(np.uint8), count=n, bitorder="little")
            self._last = (mask.copy(), mx.array(bits.view(np.bool_)))  # copies: buffers are reused
        return mx.where(self._last[1], logits, mx.array(-mx.inf, dtype=logits.dtype))

    def accepted(self, output_ids: Sequence[int]) -> bool:
        """Catch up with `output_ids` (the generation's sampled ids) and say whether they form a complete
        grammar sentence: ended on EOS in an accepting state, or stopped right where the grammar may end."""
        ids = list(output_ids)
        if ids[: len(self.consumed)] != self.consumed[: len(ids)]:
            raise ValueError("output_ids differ from the tokens this processor saw; use one processor per "
                             "generation and pass that generation's output_ids")
        for token in ids[len(self.consumed):]:
            self._advance(token)
        if self.error:
            return False
        return self._ended or self._matcher.accepting()


def _eos_mask(n_tokens: int, eos_ids: Sequence[int]) -> np.ndarray:
    bits = np.zeros(((n_tokens + 31) // 32) * 32, dtype=np.uint8)
    bits[list(eos_ids)] = 1
    return np.packbits(bits, bitorder="little").view(np.int32)


# ---- compiling ----------------------------------------------------------------------------------------
def compile_tools(tokenizer: Any, tools: Sequence[dict], *, tool_choice: str | dict = "auto",
                  parallel_tool_calls: bool = True, backend: str = DEFAULT_BACKEND,
                  tool_format: ToolFormat | str | None = None) -> Grammar:
    """Grammar for an assistant turn with `tools` (OpenAI shape) under `tool_choice`:
    none = any text but never a call; auto = free text, then optionally calls (several if parallel and the
    format allows it), then EOS; required = only calls (at least one); {"type": "function", "function":
    {"name": N}} = exactly one call of N. Calls are written exactly as the chat template writes them in
    `tool_format` (a format or its name; None: the one the tokenizer's chat template writes).
    Raises GrammarError on bad tools, tool_choice or format name."""
    try:
        fmt = tool_formats.resolve(tool_format, tokenizer)
        specs = tuple(ToolSpec(name=s.name, parameters=_grammar_form(s.parameters, f"tool {s.name} parameters"))
                      for s in tool_specs(tools))
    except (SchemaError, ToolFormatError) as exc:
        raise GrammarError(str(exc)) from exc
    mode, name = _choice(tool_choice, specs)
    if mode == "named":
        spec = GrammarSpec(mode="required", tools=tuple(s for s in specs if s.name == name), parallel=False,
                           format=fmt)
        choice = f"named:{name}"
    elif mode == "none" or not specs:
        spec, choice = GrammarSpec(mode="none", format=fmt), mode
    else:
        parallel = bool(parallel_tool_calls) and fmt.parallel
        spec, choice = GrammarSpec(mode=mode, tools=specs, parallel=parallel, format=fmt), mode
    return _compile_cached(tokenizer, spec, choice, backend)


def compile_json(tokenizer: Any, schema: dict | None = None, *, backend: str = DEFAULT_BACKEND) -> Grammar:
    """Grammar for a response that is one JSON value, then EOS: `schema` None = any JSON object
    (response_format json_object), else that JSON Schema (json_schema). Compact json.dumps separators."""
    schema = {"type": "object"} if schema is None else schema
    try:
        check_schema(schema, "response_format schema")
        form = _grammar_form(schema, "response_format schema")
    except SchemaError as exc:
        raise GrammarError(str(exc)) from exc
    try:  # the template's format, for its end-of-turn token only
        end_format = tool_formats.resolve(None, tokenizer)
    except ToolFormatError:
        end_format = None
    return _compile_cached(tokenizer, GrammarSpec(mode="json", schema=form), "json", backend, end_format)


def _grammar_form(schema: dict, where: str) -> dict:
    """`strict(schema)`, refusing a oneOf that is left (its branches may overlap: no backend can enforce
    "exactly one", and treating it as anyOf would let through values that fail validation). A const or enum
that nothing can satisfy is refused here too (by `strict`), so every backend refuses it alike."""
    form = strict(schema, where)
    stack = [(form, where)]
    while stack:
        node, at = stack.pop()
        if not isinstance(node, dict):
            continue
        if "oneOf" in node:
            raise SchemaError(f"{at}: oneOf branches that may overlap cannot be enforced (a value must match "
                              "exactly one); use anyOf, or give each branch its own type or a const "
                              "discriminator property")
        for key in ("properties", "$defs", "definitions"):
            stack += [(v, f"{at}.{key}.{k}") for k, v in node.get(key, {}).items()]
        stack += [(node[k], f"{at}.{k}") for k in ("items", "additionalProperties") if k in node]
        stack += [(v, f"{at}.{k}[{i}]") for k in ("anyOf", "allOf") for i, v in enumerate(node.get(k, []))]
    return form


def _choice(tool_choice: str | dict, specs: tuple[ToolSpec, ...]) -> tuple[str, str | None]:
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise GrammarError(f"tool_choice {tool_choice!r} is not one of {', '.join(TOOL_CHOICES)} or "
                               '{"type": "function", "function": {"name": ...}}')
        if tool_choice == "required" and not specs:
            raise GrammarError("tool_choice 'required' needs at least one tool; pass tools or use 'auto'")
        return tool_choice, None
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or tool_choice.get("type", "function") != "function":
        raise GrammarError(f'a named tool_choice must be {{"type": "function", "function": {{"name": ...}}}}, '
                           f"got {tool_choice!r:.200}")
    if name not in {s.name for s in specs}:
        raise GrammarError(f"tool_choice names {name!r}, which is not among the tools "
                           f"({', '.join(s.name for s in specs) or 'none given'})")
    return "named", name


# ---- backends and caches ------------------------------------------------------------------------------
_lock = threading.Lock()
_vocabs: dict[str, "weakref.WeakKeyDictionary[Any, tuple[int, Any]]"] = {}
_serial = itertools.count()
_grammars: "OrderedDict[tuple, Grammar]" = OrderedDict()


def _backend(name: str):
    if name not in BACKENDS:
        raise GrammarError(f"unknown grammar backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


def hf_tokenizer(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside an mlx-lm TokenizerWrapper (or the argument itself)."""
    return getattr(tokenizer, "_tokenizer", tokenizer)


def eos_ids(tokenizer: Any) -> tuple[int, ...]:
    """The tokenizer's EOS ids plus the end-of-turn tokens the tool formats name (e.g. <|im_end|>,
    <|eot_id|>, </s>) where the vocabulary has them as tokens of their own."""
    hf = hf_tokenizer(tokenizer)
    ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
    if hf.eos_token_id is not None:
        ids.add(hf.eos_token_id)
    added = {t.content for t in hf.added_tokens_decoder.values()}
    for name in {t for fmt in tool_formats.all_formats() for t in fmt.stop_tokens} & added:
        tid = hf.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid >= 0:
            ids.add(tid)
    if not ids:
        raise GrammarError("the tokenizer has no EOS token; a grammar needs one to end the output")
    return tuple(sorted(ids))


def turn_end_ids(tokenizer: Any, fmt: ToolFormat | None) -> tuple[int, ...]:
    """The EOS ids a constrained turn may end with: the format's end-of-turn token (the first of its stop tokens
    the vocabulary has as an EOS id: Qwen's <|im_end|>, not its <|endoftext|>; Llama's <|eot_id|>), so a turn
    ends as the chat template writes it and rows train that ending; every EOS id when the format names none."""
    ids = eos_ids(tokenizer)
    hf = hf_tokenizer(tokenizer)
    added = {t.content for t in hf.added_tokens_decoder.values()}
    for name in (fmt.stop_tokens if fmt is not None else ()):
        tid = hf.convert_tokens_to_ids(name) if name in added else None
        if tid in ids:
            return (tid,)
    return ids


def _vocab(backend: str, tokenizer: Any) -> tuple[int, Any]:
    """(serial, backend vocabulary) for this tokenizer object, built once (≈1.5 s for the Qwen vocab)."""
    hf = hf_tokenizer(tokenizer)
    with _lock:
        table = _vocabs.setdefault(backend, weakref.WeakKeyDictionary())
        if hf in table:
            return table[hf]
    built = (next(_serial), _backend(backend).prepare(hf, list(eos_ids(tokenizer))))
    with _lock:
        return table.setdefault(hf, built)


def _compile_cached(tokenizer: Any, spec: GrammarSpec, choice: str, backend: str,
                    end_format: ToolFormat | None = None) -> Grammar:
    mod = _backend(backend)
    serial, vocab = _vocab(backend, tokenizer)
    body = json.dumps([spec.mode, spec.parallel, spec.schema, [[t.name, t.parameters] for t in spec.tools],
                       spec.format.name if spec.format else None], sort_keys=True)
    key = (backend, serial, hashlib.sha256(body.encode()).hexdigest())
    with _lock:
        if key in _grammars:
            _grammars.move_to_end(key)
            return dataclasses.replace(_grammars[key], choice=choice)
    t0 = time.perf_counter()
    compiled = mod.compile(spec, vocab)
    ends = turn_end_ids(tokenizer, spec.format or end_format)
    grammar = Grammar(spec=spec, choice=choice, backend=backend, format=spec.format, compiled=compiled, vocab=vocab,
                      n_tokens=len(hf_tokenizer(tokenizer)), eos_ids=ends, compile_s=time.perf_counter() - t0,
                      other_eos_ids=tuple(i for i in eos_ids(tokenizer) if i not in ends))
    with _lock:
        _grammars[key] = grammar
        while len(_grammars) > CACHE_SIZE:
            _grammars.popitem(last=False)
    return grammar


def clear_cache() -> None:
    """Drop all compiled grammars (tokenizer vocabularies stay until their tokenizer is freed)."""
    with _lock:
        _grammars.clear()
