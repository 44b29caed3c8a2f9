"""Redaction of outgoing text: what is sent to a remote backend passes through a `Redactor` first.

A redactor is any callable `str -> str` (the hook); `RegexRedactor` is the built-in one: named built-in rules
(API keys and tokens, e-mail addresses) plus the user's own regular expressions from backends.toml, each match
replaced by a marker. `redact_messages` applies one to every text an OpenAI-format conversation carries
(contents, text parts, tool-call arguments); tool declarations are tinygpt's own and are left as they are.
Not here: deciding which backend redacts (backends.py).
"""
from __future__ import annotations

import re
from typing import Callable

Redactor = Callable[[str], str]

BUILTIN = {
    # provider keys and tokens: sk-..., sk-ant-..., AWS access key ids, GitHub and Slack tokens, bearer headers
    "api_key": r"\b(?:sk-(?:ant-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|"
               r"xox[abpr]-[A-Za-z0-9-]{10,})|(?<=Bearer )[A-Za-z0-9._~+/-]{16,}=*",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
}
DEFAULT_RULES = ("api_key", "email")


class RegexRedactor:
    """Replaces every match of the chosen built-in `rules` and of `patterns` with `[redacted:<rule>]`."""

    def __init__(self, rules=DEFAULT_RULES, patterns=(), replacement: str = "[redacted:{rule}]"):
        unknown = sorted(set(rules) - set(BUILTIN))
        if unknown:
            raise ValueError(f"unknown redaction rules {unknown}; built-in ones: {sorted(BUILTIN)}")
        self._rules = [(name, re.compile(BUILTIN[name])) for name in rules]
        for i, pattern in enumerate(patterns):
            try:
                self._rules.append((f"pattern{i + 1}", re.compile(pattern)))
            except re.error as exc:
                raise ValueError(f"redaction pattern {pattern!r} is not a valid regular expression ({exc})") from None
        self.replacement = replacement

    def __call__(self, text: str) -> str:
        for name, rule in self._rules:
            text = rule.sub(self.replacement.format(rule=name), text)
        return text


def redact_messages(messages: list[dict], redactor: Redactor) -> list[dict]:
    """A copy of `messages` with every text passed through `redactor` (the originals are left as they are)."""
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), str):
            m["content"] = redactor(m["content"])
        elif isinstance(m.get("content"), list):
            m["content"] = [dict(p, text=redactor(p["text"])) if isinstance(p, dict) and isinstance(p.get("text"), str)
                            else p for p in m["content"]]
        if m.get("tool_calls"):
            m["tool_calls"] = [dict(c, function=dict(c["function"], arguments=redactor(c["function"]["arguments"])))
                               for c in m["tool_calls"]]
        out.append(m)
    return out
