"""outlines-core grammar backend (the second choice): each mode becomes one regex, compiled into an
outlines-core `Index` over token bytes and stepped by a `Guide`. The call syntax is the tool format's
(runtime/tool_formats/); free text is "any text without the format's trigger" (or, where calls open the
answer, "any text that does not start with it") written out as a regex, so `auto` is exact. JSON is outlines'
schema regex with json.dumps separators. EOS ids and the formats' marker tokens (where the vocabulary has them
as tokens of their own) stand for private characters no other token can spell;
the EOS sentinel also works around outlines-core 0.2.14 dropping tokens that end one byte past a possible
match end (fixed upstream later). Local $refs are inlined (recursive ones refused); string patterns are
spliced in as regexes over the JSON text (grammar_regex.py). Everything outlines-core 0.2 would compile and
then not enforce raises GrammarError (bounds it ignores, pattern + length, overlapping oneOf, allOf of
several, required keys missing from properties, integers past 2**53, formats it drops or spells unsafely).
Limits: compiling costs about one vocabulary pass per repeated part, so length/count bounds and pattern
quantifiers past MAX_WORK / vocabulary size (7 on a 150k vocabulary) are refused before anything is built;
byte-level BPE only. Not here: caching, logits.
"""
from __future__ import annotations

import json
import math
import re._constants as sre  # the parser the `re` module itself uses; patterns were checked with it
import re._parser as sre_parse
from typing import Any

import numpy as np
from outlines_core import Guide, Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema

from tinygpt.runtime.grammar import GrammarError, GrammarSpec
from tinygpt.runtime.grammar_regex import PatternError, ecma_pattern, json_text_pattern
from tinygpt.runtime.grammar_schema import ANNOTATIONS, resolve
from tinygpt.runtime.tool_formats import ToolFormat, all_formats, own_syntax

SLOT = "\u27e8WS\u27e9"  # placeholder whitespace pattern, replaced after outlines builds the regex
PLACEHOLDER = "tinygptpattern"  # + n: stands for the n-th string pattern while outlines builds the regex
# Private characters no token can spell (tokens holding their lead byte 0xF4 are left out): EOS ids are the
# only spelling of SENTINEL, and each format's marker tokens, where the vocabulary has them, of their MARKS.
SENTINEL = "\U0010ffff"
MARKS = {m: chr(0x10FFFD - i) for i, m in enumerate(dict.fromkeys(m for f in all_formats() for m in f.markers))}
MAX_ENUM_RANGE = 1000
MAX_INLINED = 2000  # subschemas after inlining $refs
STRING_ESCAPES = r'\\["\\/bfnrt]'  # outlines' escape class inside strings; json.dumps never writes \/
DUMPS_ESCAPES = r'\\["\\bfnrt]'
STRING_CLASS_END = r"\x7F-\x9F]"  # end of outlines' string-character class; plane 16 holds our markers
NO_MARKS_CLASS_END = r"\x7F-\x9F\x{100000}-\x{10FFFF}]"
IGNORED_BY_OUTLINES = ("multipleOf", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum")
EXACT_FORMATS = ("date", "date-time", "time", "uuid")  # outlines' email and uri regexes can spell '"' or '\\'
# repeated parts x tokens: outlines-core 0.2.14 takes ~0.09 s per character of maxLength on the 151,669-token
# Qwen vocabulary and ~0.14 ms on a 690-token one (2-core dev box); this keeps a compile under ~1 s
MAX_WORK = 1_200_000
COUNTS = ("minLength", "maxLength", "minItems", "maxItems")


class Vocab:
    """Token bytes for outlines plus what the matcher needs: EOS ids, the mask size, and how the regex
    spells each format marker (its private character when it is one token, else its text)."""

    def __init__(self, vocabulary: Vocabulary, eos_ids: list[int], n_tokens: int, spell: dict[str, str]):
        self.vocabulary, self.eos_ids, self.n_tokens, self.spell = vocabulary, eos_ids, n_tokens, spell


def prepare(hf_tokenizer: Any, eos_ids: list[int]) -> Vocab:
    """Map each ordinary token to its bytes, the formats' marker tokens to their private characters and the
    EOS ids to the sentinel; every other added token is left out, so never allowed.
    outlines' own EOS slot gets an id past the tokenizer (never sampled: those logits are always masked)."""
    decoder = getattr(hf_tokenizer.backend_tokenizer, "decoder", None)
    if type(decoder).__name__ != "ByteLevel":
        raise GrammarError("the outlines backend supports byte-level BPE tokenizers only; use "
                           "backend='llguidance' for this tokenizer")
    from tinygpt.runtime.vocab import bytes_to_unicode

    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    added = {t.content: i for i, t in hf_tokenizer.added_tokens_decoder.items()}
    table: dict[bytes, list[int]] = {}
    lead = SENTINEL.encode()[0]
    for token, tid in hf_tokenizer.get_vocab().items():
        if any(c not in to_byte for c in token) and token not in added:
            raise GrammarError(f"token {token!r} is not in byte-level BPE form; use backend='llguidance'")
        raw = bytes(to_byte[c] for c in token) if token not in added else b""
        if raw and lead not in raw:  # no token may spell the sentinel (nor U+100000..U+10FFFF) piecewise
            table.setdefault(raw, []).append(tid)
    spell = {}
    for marker, char in MARKS.items():
        spell[marker] = char if marker in added else marker
        if marker in added:
            table[char.encode()] = [added[marker]]
    table[SENTINEL.encode()] = list(eos_ids)
    n_tokens = len(hf_tokenizer)
    return Vocab(Vocabulary(n_tokens, table), list(eos_ids), n_tokens, spell)


def compile(spec: GrammarSpec, vocab: Vocab) -> Index:
    """The outlines-core Index for `spec`; raises GrammarError if outlines refuses or cannot enforce it, or
    if it would take more than about a second to build (see MAX_WORK)."""
    pattern = regex(spec, vocab.spell, _Budget(vocab.n_tokens))
    try:
        return Index(pattern, vocab.vocabulary)
    except (ValueError, RuntimeError) as exc:
        raise GrammarError(f"outlines-core could not build an index for the grammar: {_one_line(exc)}") from exc


class _Budget:
    """The repeated parts a grammar may still spell out for a vocabulary of `n_tokens` (see MAX_WORK)."""

    def __init__(self, n_tokens: int):
        self.n_tokens, self.limit = n_tokens, max(1, MAX_WORK // max(1, n_tokens))
        self.left = self.limit


def regex(spec: GrammarSpec, spell: dict[str, str], budget: _Budget) -> str:
    """The whole output, then the EOS sentinel, as one regex (Rust regex syntax)."""
    return f"(?:{body_regex(spec, spell, budget)}){_lit(SENTINEL)}"


def body_regex(spec: GrammarSpec, spell: dict[str, str], budget: _Budget) -> str:
    """The whole output as one regex; `spell` maps each format marker to what stands for it."""
    if spec.mode == "json":
        return _json_regex(spec.schema, budget)
    own = own_syntax(spec.format)  # a format that writes its calls itself (pythonic)
    if own is not None:
        return own.regex(spec, spell, budget)
    fmt = spec.format
    marks = "".join(c for c in spell.values() if len(c) == 1)  # free text never holds a marker token
    text = _free_text(fmt, marks, nonempty=False)
    if spec.mode == "none":
        return text

    def lit(literal: str) -> str:
        return _lit("".join(spell.get(t, t) if marker else t for t, marker in fmt.pieces(literal)))

    if fmt.id_key is None:
        tail = _lit(fmt.tail())
    else:
        before, after = fmt.id_slot()
        tail = _lit(before) + f"(?:{fmt.id_pattern})" + _lit(after)
    bodies = "|".join(_lit(fmt.head(t.name)) + _json_regex(t.parameters, budget) + tail for t in spec.tools)
    rest = f"(?:{bodies})" + lit(fmt.call[1])
    more = f"(?:{lit(fmt.sep)}{lit(fmt.call[0])}{rest})*" if spec.parallel else ""
    calls = lit(fmt.section[0] + fmt.call[0]) + rest + more + lit(fmt.section[1])
    if spec.mode == "required":
        return calls
    if fmt.lead is None:
        return f"{text}|{calls}"
    lead = _free_text(fmt, marks, nonempty=True) + _lit(fmt.lead)  # content + lead (the template's layout)
    return f"{text}|(?:{lead})?{calls}"


def _free_text(fmt: ToolFormat, banned: str, nonempty: bool) -> str:
    """Text that cannot start the calls: without the trigger anywhere, or (where calls open the answer) not
    starting with it; never a character of `banned`."""
    if fmt.anywhere:
        return no_substring(fmt.trigger, nonempty=nonempty, banned=banned)
    return not_prefixed(fmt.trigger, banned=banned)


def not_prefixed(word: str, banned: str = "") -> str:
    """Regex for any text that does not start with `word` and holds no character of `banned`: its first k
    characters then another one, then anything (one shared tail: separate tails per k make outlines-core's
    index build grow exponentially with len(word)), or a proper prefix of it."""
    no = "".join(_lit(c) for c in banned)
    differ, prefix = "", ""
    for c in reversed(word):
        first = f"[^{_lit(c)}{no}]"
        differ = f"(?:{first}|{_lit(c)}{differ})" if differ else first
        prefix = f"(?:{_lit(c)}{prefix})?"
    anything = f"[^{no}]*" if no else "[\\s\\S]*"
    return f"(?:{differ}{anything}|{prefix})"


def _lit(text: str) -> str:
    return "".join(c if c.isalnum() and c.isascii() else f"\\x{{{ord(c):X}}}" for c in text)


def no_substring(word: str, nonempty: bool = False, banned: str = "") -> str:
    """Regex for any text (non-empty if asked) without `word` or any character of `banned`; `word[0]` must
    occur only once in `word`."""
    first, rest = word[0], word[1:]
    if first in rest:
        raise ValueError(f"no_substring needs a word whose first character is unique, got {word!r}")
    f = _lit(first)
    no = f + "".join(_lit(c) for c in banned)
    seg = ""  # after `first`: a run without `first` that does not start with `rest`
    for c in reversed(rest):
        seg = f"(?:[^{no}{_lit(c)}][^{no}]*" + (f"|{_lit(c)}{seg}" if seg else "") + ")?"
    if nonempty:
        return f"(?:[^{no}]+(?:{f}{seg})*|[^{no}]*(?:{f}{seg})+)"
    return f"[^{no}]*(?:{f}{seg})*"


def _json_regex(schema: dict, budget: _Budget) -> str:
    """outlines' regex for `schema` in json.dumps layout: ", " and ": " separators, no other whitespace."""
    ctx = _Inlining(schema)
    plain = _outlines_schema(schema, "schema", ctx, ())
    budget.left -= _parts(plain, "schema", ctx, budget)
    patterns = ctx.patterns
    text = json.dumps(plain)
    if SLOT in text or text.count(PLACEHOLDER) != len(patterns):
        raise GrammarError(f"the schema contains the reserved text {SLOT!r} or {PLACEHOLDER!r}")
    try:
        pattern = build_regex_from_schema(text, SLOT)
    except (ValueError, TypeError) as exc:
        raise GrammarError(f"outlines-core cannot turn this schema into a regex: {_one_line(exc)}") from exc
    # object separators are "SLOT:SLOT" and "SLOT," (an optional property's group ends in its comma);
    # array separators are ",SLOT"
    for old, new in ((f"{SLOT}:{SLOT}", ": "), (f"{SLOT},", ", "), (f",{SLOT}", ", "), (SLOT, ""),
                     (STRING_ESCAPES, DUMPS_ESCAPES), (STRING_CLASS_END, NO_MARKS_CLASS_END)):
        pattern = pattern.replace(old, new)
    for i, text_regex in enumerate(patterns):
        pattern = pattern.replace(f'"{PLACEHOLDER}{i}"', f'"(?:{text_regex})"')
    return pattern


class _Inlining:
    """What one schema's rewrite shares: the root refs resolve in, the patterns set aside, a size budget."""

    def __init__(self, root: Any):
        self.root, self.patterns, self.nodes = root, [], 0
        self.pattern_parts: list[tuple[str, int]] = []  # (pattern, its repeated parts) of each set aside


def _outlines_schema(schema: Any, where: str, ctx: _Inlining, refs: tuple[str, ...]) -> Any:
    """The schema outlines gets: refs inlined, integer ranges as enums (outlines ignores minimum/maximum),
    patterns as placeholders; every keyword outlines would ignore or get wrong is refused."""
    if not isinstance(schema, dict):
        return schema
    ctx.nodes += 1
    if ctx.nodes > MAX_INLINED:  # refs used several times at several levels multiply
        raise GrammarError(f"{where}: the schema grows past {MAX_INLINED} subschemas once its $refs are "
                           "inlined; the outlines backend cannot take it; use backend='llguidance'")
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in refs:
            raise GrammarError(f"{where}: $ref {ref!r} is recursive; the outlines backend cannot enforce a "
                               "recursive schema; use backend='llguidance'")
        if set(schema) - {"$ref", "$defs", "definitions"} - ANNOTATIONS:
            raise GrammarError(f"{where}: the outlines backend cannot enforce keywords next to $ref; use "
                               "backend='llguidance'")
        return _outlines_schema(resolve(ctx.root, ref, where), f"{where}.$ref", ctx, refs + (ref,))
    _refuse_inexact(schema, where)
    out = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    if "minimum" in schema or "maximum" in schema:
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = _integer_range(schema, where)
    if "pattern" in schema:
        try:
            ctx.patterns.append(json_text_pattern(schema["pattern"]))
            ctx.pattern_parts.append((schema["pattern"], _pattern_parts(ecma_pattern(schema["pattern"]))))
        except PatternError as exc:
            raise GrammarError(f"{where}: {exc}") from exc
        out["pattern"] = f"{PLACEHOLDER}{len(ctx.patterns) - 1}"

    def sub(s: Any, w: str) -> Any:
        return _outlines_schema(s, w, ctx, refs)

    if "properties" in out:
        out["properties"] = {k: sub(v, f"{where}.{k}") for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = sub(out[key], f"{where}.{key}")
    for key in ("anyOf", "allOf"):
        if key in out:
            out[key] = [sub(s, f"{where}.{key}[{i}]") for i, s in enumerate(out[key])]
    return out


def _refuse_inexact(schema: dict, where: str) -> None:
    """Raise GrammarError for what outlines-core 0.2 would compile and then not enforce."""
    used = [k for k in IGNORED_BY_OUTLINES if k in schema]
    bounded = "minimum" in schema or "maximum" in schema
    if bounded and schema.get("type") != "integer":
        used.append("minimum/maximum on non-integers")
    if "pattern" in schema and ({"minLength", "maxLength", "format"} & set(schema)):
        used.append("pattern together with minLength/maxLength/format (it applies only the pattern)")
    elif "format" in schema and "string" in _types(schema):
        if {"minLength", "maxLength"} & set(schema):
            used.append("format together with minLength/maxLength (it applies only the lengths)")
        if {"const", "enum"} & set(schema):
            used.append("format together with const/enum (it applies only the values)")
        if schema["format"] not in EXACT_FORMATS:
            used.append(f"format {schema['format']!r} (only {', '.join(EXACT_FORMATS)} are exact inside a "
                        "JSON string)")
    if "oneOf" in schema:
        used.append("oneOf with branches that may overlap (it treats oneOf as anyOf)")
    missing = [r for r in schema.get("required", []) if r not in schema.get("properties", {})]
    if missing:
        used.append(f"required names {', '.join(map(repr, missing))}, which 'properties' lacks")
    if any(_big_int(schema.get(k)) for k in ("enum", "const", "minimum", "maximum")):
        used.append("integers beyond ±2**53 (it writes them as floats)")
    if "allOf" in schema and len(schema["allOf"]) > 1:
        used.append("allOf of more than one schema")
    if used:
        raise GrammarError(f"{where}: the outlines backend cannot enforce {'; '.join(used)}; use "
                           "backend='llguidance'")


def _one_line(exc: Exception) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:500]


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _parts(node: Any, where: str, ctx: _Inlining, budget: _Budget) -> int:
    """About how many parts outlines' regex repeats for `node` (each of these costs a pass over the
    vocabulary when the Index is built): a character per unit of a length bound, an item (times its own
    parts) per unit of a count bound, and a pattern's quantified parts. GrammarError past the budget."""
    if not isinstance(node, dict):
        return 0
    subs = [(v, f"{where}.{k}") for k, v in node.get("properties", {}).items()]
    if isinstance(node.get("additionalProperties"), dict):
        subs.append((node["additionalProperties"], f"{where}.additionalProperties"))
    subs += [(s, f"{where}.{k}[{i}]") for k in ("anyOf", "allOf") for i, s in enumerate(node.get(k, []))]
    n = sum(_parts(s, w, ctx, budget) for s, w in subs)
    item = _parts(node["items"], f"{where}.items", ctx, budget) if isinstance(node.get("items"), dict) else 0
    count = max(node.get("minItems", 0), node.get("maxItems", 0))
    n += count * max(item, 1) if count else item
    n += max(node.get("minLength", 0), node.get("maxLength", 0))
    bounds = [f"{k} {node[k]}" for k in COUNTS if k in node]
    if str(node.get("pattern", "")).startswith(PLACEHOLDER):
        source, parts = ctx.pattern_parts[int(node["pattern"][len(PLACEHOLDER):])]
        n += parts
        bounds.append(f"pattern {source!r:.80}")
    if n > budget.left:
        bounds = ", ".join(bounds) or "its parts together"
        raise GrammarError(f"{where}: {bounds} would make the outlines backend spell out about {n} repeated parts "
                           f"(bounds multiply when nested), past its limit of {budget.limit} for a "
                           f"{budget.n_tokens}-token vocabulary (each costs a vocabulary pass, ~0.1 s on 150k "
                           "tokens); use backend='llguidance' (the default), which has no such limit")
    return n


def _pattern_parts(pattern: str) -> int:
    """The parts a Python-syntax regex repeats: each `{m,n}` counts n (or m when unbounded) times its body."""
    def size(items: Any) -> int:
        n = 0
        for op, arg in items:
            if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
                lo, hi, body = arg
                count = lo if hi == sre.MAXREPEAT else hi
                n += count * max(size(body), 1) if count > 1 else size(body)
            elif op in (sre.SUBPATTERN, sre.ATOMIC_GROUP):
                n += size(arg[-1])
            elif op == sre.BRANCH:
                n += sum(size(b) for b in arg[1])
        return n
    return size(sre_parse.parse(pattern))


def _big_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 2**53
    if isinstance(value, float):  # a float bound that becomes an integer past 2**53
        return value.is_integer() and abs(value) > 2**53
    if isinstance(value, list):
        return any(_big_int(v) for v in value)
    return isinstance(value, dict) and any(_big_int(v) for v in value.values())


def _integer_range(schema: dict, where: str) -> list[int]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is None or hi is None or hi - lo > MAX_ENUM_RANGE:
        raise GrammarError(f"{where}: the outlines backend enforces integer bounds only as an enum of at "
                           f"most {MAX_ENUM_RANGE} values; use backend='llguidance'")
    values = list(range(math.ceil(lo), math.floor(hi) + 1))
    if not values:
        raise GrammarError(f"{where}: no integer lies between minimum {lo} and maximum {hi}; fix the bounds")
    return values


class Matcher:
    """One generation's Guide. EOS ids are allowed where the sentinel may follow; the processor never
    advances on them (it ends the generation), so the Guide never steps past the sentinel."""

    def __init__(self, index: Index, vocab: Vocab):
        self._index = index
        self._guide = Guide(index)
        self._eos = vocab.eos_ids[0]
        self._eos_ids = vocab.eos_ids
        self._buf = np.zeros((vocab.n_tokens + 1 + 31) // 32, dtype=np.int32)  # room for outlines' EOS slot
        self._error: str | None = None

    def fill(self, mask: np.ndarray) -> None:
        self._guide.write_mask_into(self._buf.ctypes.data, self._buf.size, self._buf.itemsize)
        mask[:] = self._buf[: mask.size]
        if not self.accepting():  # the sentinel is also an ordinary character inside strings and text
            words = mask.view(np.uint32)
            for tid in self._eos_ids:
                words[tid // 32] &= ~np.uint32(1 << (tid % 32))

    def advance(self, token: int) -> bool:
        if self._error:
            return False
        try:
            self._guide.advance(token, return_tokens=False)
        except ValueError as exc:
            self._error = f"token {token} is not allowed by the grammar here ({exc})"
            return False
        return True

    def accepting(self) -> bool:
        after = self._index.get_next_state(self._guide.get_state(), self._eos)
        return after is not None and self._index.is_final_state(after)

    def error(self) -> str | None:
        return self._error


def matcher(compiled: Index, vocab: Vocab) -> Matcher:
    return Matcher(compiled, vocab)
