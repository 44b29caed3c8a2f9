"""llguidance grammar backend (the default): builds a Lark grammar with inline %json schemas and steps an
LLMatcher.

The call syntax is the tool format's (runtime/tool_formats/): each of its markers is named as a special token
(`<[id]>`) where the vocabulary has it as one (llguidance treats added tokens as special), else spelled as text.
In auto mode free text runs until the format's trigger (a marker free text never contains, or the call
object's own start, which free text never begins with), then the grammar writes the calls; a text trigger is
the end of the free-text lexeme. JSON uses json.dumps separators, no free whitespace. Compiling builds one
pristine matcher; each generation works on a deep copy. Not here: caching, masks on logits (grammar.py).

Forcing: where the grammar allows one byte string only, llguidance tokenizes those bytes with the tokenizer and
allows just the first resulting token. The Hugging Face tokenizer turns the *text* of an added token
(`<|eot_id|>`, `[TOOL_CALLS]`, `</tool_call>`) into that special token, so a schema that forces such text (a
`const`, a one-value `enum`, a `pattern`, a property or tool name spelling it) would allow only the special
token, which the JSON string then refuses (or which ends the turn). Such grammars are compiled with
`no_forcing`: every tokenization of the text stays allowed. Other grammars keep forcing (canonical tokens for
forced text, as the chat template's tokenization gives).
"""
from __future__ import annotations

import json
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from tinygpt.runtime.grammar import GrammarError, GrammarSpec
from tinygpt.runtime import tool_formats
from tinygpt.runtime.tool_formats import ToolFormat
from tinygpt.traces.atraj import ToolSpec

# json.dumps(ensure_ascii=False) layout (what the chat template's tojson writes): ", " and ": " separators, no
# other whitespace, and only the short escapes, so every string has exactly one spelling.
JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False,
              "json_allowed_escapes": 'nrbtf\\"'}


def prepare(hf_tokenizer: Any, eos_ids: list[int]) -> LLTokenizer:
    """llguidance's view of the tokenizer (token bytes + trie); ~1.5 s for the Qwen vocabulary."""
    try:
        return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=len(hf_tokenizer), eos_token=eos_ids)
    except ValueError as exc:
        raise GrammarError(f"llguidance cannot use this tokenizer ({exc}); it needs a fast (Rust) "
                           "Hugging Face tokenizer") from exc


def compile(spec: GrammarSpec, vocab: LLTokenizer) -> LLMatcher:
    """A pristine matcher for `spec`; raises GrammarError with llguidance's message if it is refused."""
    try:
        if spec.mode == "json" and _forces_special_text(vocab, [spec.schema]):
            text = LLMatcher.grammar_from_lark(f"{_directive(True)}\nstart: %json {json.dumps(_styled(spec.schema))}\n")
        elif spec.mode == "json":
            text = LLMatcher.grammar_from_json_schema(spec.schema, overrides=JSON_STYLE)
        else:
            own = tool_formats.own_syntax(spec.format)  # a format that writes its calls itself (pythonic)
            text = LLMatcher.grammar_from_lark(own.lark(spec, vocab) if own else lark(spec, vocab))
        matcher = LLMatcher(vocab, text, log_level=0)
    except (ValueError, TypeError, RuntimeError) as exc:  # e.g. integers past 64 bits in a schema
        raise GrammarError(f"llguidance rejected the grammar: {_one_line(str(exc))}") from exc
    if matcher.is_error():
        raise GrammarError(f"llguidance rejected the grammar: {_one_line(matcher.get_error())}")
    return matcher


def _one_line(message: str) -> str:
    """llguidance's message without the parser-state dump, its lines (a regex and a caret) joined."""
    lines = message.split("\n<state>")[0].splitlines()
    return " ".join(line.strip() for line in lines if line.strip())[:500]


def lark(spec: GrammarSpec, vocab: LLTokenizer) -> str:
    """The Lark text for a tools spec (mode none / auto / required) in the spec's tool format. Where the format
    lets content precede the calls, text before them is empty or ends in the format's lead after at least one
    character, as the chat template writes content + lead."""
    fmt = spec.format
    trigger = _regex(fmt.trigger)
    no_call = f"~/(?s:.*){trigger}(?s:.*)/" if fmt.anywhere else f"~/{trigger}(?s:.*)/"
    forces = _forces_special_text(vocab, [{"name": t.name, "parameters": t.parameters} for t in spec.tools])
    lines = [_directive(forces), f"TEXT: /(?s:.*)/ & {no_call}"]
    opening = fmt.section[0] + fmt.call[0]
    lead = "LEAD?" if fmt.lead is not None else ""
    more = f"({_seq(_lit(fmt, vocab, fmt.sep), 'call')})*" if spec.parallel else ""
    rest = _seq("body", _lit(fmt, vocab, fmt.call[1]), more, _lit(fmt, vocab, fmt.section[1]))  # after the opening
    if spec.mode == "none":
        lines.append("start: TEXT")
    elif spec.mode == "required":
        lines.append(f"start: {_seq(_lit(fmt, vocab, opening), rest)}")
    elif not fmt.anywhere or _special(vocab, fmt.trigger) is not None:  # the trigger is a token, or opens the answer
        lines.append(f"start: TEXT | {_seq(lead, _lit(fmt, vocab, opening), rest)}")
    else:  # auto, text trigger: one lexeme runs up to and including the first trigger
        lines += [f"start: TEXT | {_seq('head', _lit(fmt, vocab, opening[len(fmt.trigger):]), rest)}",
                  "head: HEAD", f"HEAD: {_seq(lead, json.dumps(fmt.trigger))}"]
    if fmt.lead is not None:
        lines.append(f"LEAD: /(?s:.+){_regex(fmt.lead)}/ & {no_call}")
    if spec.mode != "none":
        lines += [f"call: {_seq(_lit(fmt, vocab, fmt.call[0]), 'body', _lit(fmt, vocab, fmt.call[1]))}",
                  "body: " + " | ".join(f"tool{i}" for i in range(len(spec.tools)))]
        lines += [f"tool{i}: {_tool_rule(fmt, t)}" for i, t in enumerate(spec.tools)]
        if fmt.id_key is not None:
            lines.append(f"CALL_ID: /{fmt.id_pattern}/")
    return "\n".join(lines) + "\n"


def _seq(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _regex(text: str) -> str:
    """`text` as a regex matching only itself, safe inside Lark's /.../ (every non-alphanumeric escaped)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)


def _directive(no_forcing: bool) -> str:
    return '%llguidance {"no_forcing": true}' if no_forcing else "%llguidance {}"


def _styled(schema: dict) -> dict:
    return {**schema, "x-guidance": JSON_STYLE} if isinstance(schema, dict) else schema


def _forces_special_text(vocab: LLTokenizer, values: list[Any]) -> bool:
    """Whether any string in `values` (keys too; a pattern without its backslashes) spells a special token."""
    strings: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                strings.append(k)
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            strings.append(value.replace("\\", "") if key == "pattern" else value)

    walk(values)
    ids = vocab.tokenize_str("\n".join(strings), parse_special=True) if strings else []
    return any(vocab.is_special_token(i) for i in ids)


def _special(vocab: LLTokenizer, text: str) -> int | None:
    """The id of `text` when it is one special token of the vocabulary, else None."""
    ids = vocab.tokenize_str(text, parse_special=True)
    return ids[0] if len(ids) == 1 and vocab.is_special_token(ids[0]) else None


def _lit(fmt: ToolFormat, vocab: LLTokenizer, literal: str) -> str:
    """Grammar syntax for a literal of the format: its markers as special tokens where they are, else text."""
    parts = []
    for text, marker in fmt.pieces(literal):
        tid = _special(vocab, text) if marker else None
        parts.append(f"<[{tid}]>" if tid is not None else json.dumps(text))
    return " ".join(parts)


def _tool_rule(fmt: ToolFormat, tool: ToolSpec) -> str:
    schema = _styled(tool.parameters)
    if fmt.id_key is None:
        tail = json.dumps(fmt.tail())
    else:
        before, after = fmt.id_slot()
        tail = f"{json.dumps(before)} CALL_ID {json.dumps(after)}"
    return f"{json.dumps(fmt.head(tool.name))} %json {json.dumps(schema)} {tail}"


class Matcher:
    """One generation's grammar state (a deep copy of the compiled matcher)."""

    def __init__(self, compiled: LLMatcher):
        self._m = compiled.deep_copy()

    def fill(self, mask: np.ndarray) -> None:
        """Write the allowed-token bitmask (int32 words, bit i of word w = token 32*w+i) into `mask`."""
        self._m.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)

    def advance(self, token: int) -> bool:
        return self._m.consume_token(token)

    def accepting(self) -> bool:
        return self._m.is_accepting()

    def error(self) -> str | None:
        """llguidance's message without the parser-state dump and grammar it appends."""
        return self._m.get_error().split("\n<state>")[0][:500] or None


def matcher(compiled: LLMatcher, vocab: LLTokenizer) -> Matcher:
    return Matcher(compiled)
