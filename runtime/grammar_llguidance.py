"""llguidance grammar backend (the default): builds a Lark grammar with inline %json schemas and steps an
LLMatcher.

`<tool_call>` is named as a special token when the vocabulary has it as one (llguidance treats added tokens
as special), else as text after a lazy free-text lexeme. Free text never contains the text `<tool_call>`
either, so a call can only start through the grammar. JSON uses json.dumps separators, no free whitespace.
Compiling builds one pristine matcher; each generation works on a deep copy. Not here: caching, masks on
logits (grammar.py).
"""
from __future__ import annotations

import json
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from tinygpt.runtime.grammar import GrammarError, GrammarSpec
from tinygpt.runtime.tool_calls import CALL_CLOSE, CALL_OPEN, ToolSpec

# json.dumps(ensure_ascii=False) layout (what the chat template's tojson writes): ", " and ": " separators, no
# other whitespace, and only the short escapes, so every string has exactly one spelling.
JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False,
              "json_allowed_escapes": 'nrbtf\\"'}
NO_CALL = "~/(?s:.*)<tool_call>(?s:.*)/"  # free text never spells the call opener either


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
        if spec.mode == "json":
            text = LLMatcher.grammar_from_json_schema(spec.schema, overrides=JSON_STYLE)
        else:
            text = LLMatcher.grammar_from_lark(lark(spec, vocab))
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
    """The Lark text for a tools spec (mode none / auto / required). In auto, text before the first call is
    empty or ends in "\\n" after at least one character, as the chat template writes content + "\\n"."""
    opener, closer = _marker(vocab, CALL_OPEN), _marker(vocab, CALL_CLOSE)
    more = ' ("\\n" call)*' if spec.parallel else ""
    lines = ["%llguidance {}", f"TEXT: /(?s:.*)/ & {NO_CALL}", f"LEAD: /(?s:.+\\n)/ & {NO_CALL}"]
    if spec.mode == "none":
        lines.append("start: TEXT")
    elif spec.mode == "required":
        lines.append(f"start: call{more}")
    elif opener.startswith("<"):  # auto, special-token trigger: free text can never contain it
        lines.append(f"start: TEXT | LEAD? call{more}")
    else:  # auto, text trigger: one lexeme runs up to and including the first "<tool_call>"
        lines += [f"start: TEXT | head call_body{more}", "head: HEAD", f"HEAD: LEAD? {opener}"]
    if spec.mode != "none":
        lines += [f"call: {opener} call_body", f'call_body: "\\n" body "\\n" {closer}',
                  "body: " + " | ".join(f"tool{i}" for i in range(len(spec.tools)))]
        lines += [f"tool{i}: {_tool_rule(t)}" for i, t in enumerate(spec.tools)]
    return "\n".join(lines) + "\n"


def _marker(vocab: LLTokenizer, text: str) -> str:
    """`<tool_call>` as special-token syntax when it is one special token, else as a string literal."""
    ids = vocab.tokenize_str(text, parse_special=True)
    if len(ids) == 1 and vocab.is_special_token(ids[0]):
        return text
    return json.dumps(text)


def _tool_rule(tool: ToolSpec) -> str:
    head = '{"name": ' + json.dumps(tool.name) + ', "arguments": '
    schema = {**tool.parameters, "x-guidance": JSON_STYLE}
    return f"{json.dumps(head)} %json {json.dumps(schema)} {json.dumps('}')}"


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
