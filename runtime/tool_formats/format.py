"""`ToolFormat`: one model family's tool-call syntax as plain data, the single definition its grammar, parser,
stream splitter and call text are all built from.

An answer with calls is `content + lead + section[0] + call[0] OBJ call[1] (sep call[0] OBJ call[1])* +
section[1]`, where OBJ is `{"name": NAME, "<args_key>": ARGS}` (plus `"<id_key>": ID` after ARGS where the model
writes call ids) in json.dumps layout (", " and ": ", as the templates' `tojson` writes it). `trigger` is the
text that starts the calls: a marker (free text never holds it) or, for formats whose calls are the whole
answer, the object's own start. Not here: parsing (split.py) or grammars (grammar_*.py).
"""
from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ToolFormat:
    """A family's call syntax (see the module docstring for how the fields compose)."""

    name: str
    trigger: str
    anywhere: bool                      # the trigger is a marker that may follow content; else calls open the answer
    lead: str | None = None             # between content and the calls; None: the template writes no content with calls
    section: tuple[str, str] = ("", "")
    call: tuple[str, str] = ("", "")
    sep: str = ""
    parallel: bool = True               # the template holds several calls in one turn
    args_key: str = "arguments"
    id_key: str | None = None           # the model writes each call's id after its arguments under this key
    id_pattern: str = ""                # regex (no anchors) such an id must match in full
    markers: tuple[str, ...] = ()       # literals above that the family's vocabulary has as single special tokens
    stop_tokens: tuple[str, ...] = ()   # tokens that end an assistant turn in the family's template
    prefixes: tuple[str, ...] = ()      # read (never written) before the calls, e.g. Llama's <|python_tag|>

    def head(self, name: str) -> str:
        """The text of a call object up to its arguments: `{"name": "NAME", "<args_key>": `."""
        return "{" + f'"name": {json.dumps(name, ensure_ascii=False)}, {json.dumps(self.args_key)}: '

    def tail(self, call_id: str | None = None) -> str:
        """The text of a call object after its arguments (the id, where the model writes one, then `}`)."""
        if self.id_key is None:
            return "}"
        before, after = self.id_slot()
        return before + str(call_id) + after  # an id matches id_pattern (alphanumeric): its JSON is itself

    def id_slot(self) -> tuple[str, str]:
        """The text around a call's id in its object: `, "<id_key>": "` and `"}`."""
        return f", {json.dumps(self.id_key)}: " + '"', '"}'

    def render(self, calls: list[tuple[str, dict, str | None]], content: str = "") -> str:
        """The exact text of an answer holding `content` and `calls` [(name, arguments, id)], as the family's
        chat template writes it (ids are written only where the model writes them)."""
        objs = [self.call[0] + self.head(n) + json.dumps(a, ensure_ascii=False) + self.tail(i) + self.call[1]
                for n, a, i in calls]
        if not objs:
            return content
        lead = content + self.lead if content and self.lead is not None else ""
        return lead + self.section[0] + self.sep.join(objs) + self.section[1]

    def new_id(self) -> str:
        """A fresh call id in the form the family's template accepts."""
        if self.id_key is not None:  # the template checks the model's own id form (e.g. Mistral: 9 alphanumerics)
            return "".join(secrets.choice(ALNUM) for _ in range(9))
        return "call_" + secrets.token_hex(12)

    def valid_id(self, call_id: object) -> bool:
        return isinstance(call_id, str) and re.fullmatch(self.id_pattern, call_id) is not None

    def pieces(self, literal: str) -> list[tuple[str, bool]]:
        """`literal` split into (text, is_marker) runs, markers being this format's special-token literals."""
        if not self.markers or not literal:
            return [(literal, False)] if literal else []
        parts = re.split("(" + "|".join(map(re.escape, self.markers)) + ")", literal)
        return [(p, p in self.markers) for p in parts if p]
