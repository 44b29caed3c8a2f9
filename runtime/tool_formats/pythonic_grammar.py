"""The pythonic format's grammars: one tree per tools spec, built from the tools' JSON schemas, written out as
llguidance Lark (`lark`) or as one outlines-core regex (`regex`), so both backends allow the same text (but for
values with no type: the regex cannot recurse).

A call is `name(` keyword arguments `)`: the schema's properties in their order, required ones always, optional
ones or not, as `k=value`, joined by ", " (arguments it does not declare are never written). Values follow
their schema: strings in double quotes with json.dumps's short escapes only (\\" \\\\ \\n \\r \\t \\b \\f: every
string has one spelling, and control characters are never written), integers, numbers, True / False / None,
lists `[a, b]` and dicts `{"k": v}` (declared keys in order, else any string keys), enum and const members as
`pythonic.literal` writes them, anyOf and type lists as alternatives; an untyped value is any value (in the
regex, which cannot recurse, its lists and dicts hold scalars only). Keywords a grammar here cannot hold to (lengths,
patterns, bounds, counts, uniqueItems, allOf, oneOf, $ref) and names that are not Python identifiers are refused
with a ValueError that says so. Free text (tool_choice auto / none) never starts with "[". Pure Python.
"""
from __future__ import annotations

import json
import keyword
from typing import Any

from tinygpt.runtime.tool_formats.pythonic import CLOSE, OPEN, SEP, literal

STRING_CHARS = r'[^"\\\x{0}-\x{1F}'  # + the class end: the outlines form also keeps out its private characters
STRING_ESCAPES = r'\\["\\nrtbf]'
INTEGER = r"-?(?:0|[1-9][0-9]*)"
NUMBER = INTEGER + r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
ANY_DEPTH = 1  # in the regex, an untyped value's lists and dicts hold scalars (2: ~1.7 s to index, 690 tokens)
IGNORED = {"description", "title", "default", "examples", "format", "$comment", "$schema", "discriminator",
           "$defs", "definitions"}
SUPPORTED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "anyOf"}


class PythonicGrammarError(ValueError):
    """A tool or schema this format's grammar cannot hold to; the message says which and why."""


# ---- the tree: tuples ("lit", text) ("re", rx) ("string",) ("text",) ("seq"|"alt", (nodes)) ("opt"|"star", n) ("any",)
def _seq(*nodes) -> tuple:
    parts = tuple(n for n in nodes if n is not None)
    return parts[0] if len(parts) == 1 else ("seq", parts)


def _alt(nodes: list) -> tuple:
    unique = tuple(dict.fromkeys(nodes))
    return unique[0] if len(unique) == 1 else ("alt", unique)


def _list_of(item: tuple) -> tuple:
    return _seq(("lit", "["), ("opt", _seq(item, ("star", _seq(("lit", SEP), item)))), ("lit", "]"))


def tools_tree(spec: Any) -> tuple:
    """The whole answer for a tools spec (GrammarSpec: mode none | auto | required, tools, parallel)."""
    text = ("text",)
    if spec.mode == "none" or not spec.tools:
        return text
    call = _alt([_call(t.name, t.parameters) for t in spec.tools])
    more = ("star", _seq(("lit", SEP), call)) if spec.parallel else None
    calls = _seq(("lit", OPEN), call, more, ("lit", CLOSE))
    return calls if spec.mode == "required" else _alt([text, calls])


def _call(name: str, schema: Any) -> tuple:
    where = f"tool {name}"
    if not name.isidentifier() or keyword.iskeyword(name):
        raise PythonicGrammarError(f"{where}: the pythonic format writes calls as Python code, and {name!r} is not "
                                   "a Python identifier; rename the tool or use another tool format")
    schema = schema if isinstance(schema, dict) else {}
    _check(schema, where)
    props = schema.get("properties") or {}
    bad = next((p for p in props if not p.isidentifier() or keyword.iskeyword(p)), None)
    if bad is not None:
        raise PythonicGrammarError(f"{where}: parameter {bad!r} is not a Python identifier, so it cannot be a "
                                   "keyword argument; rename it or use another tool format")
    members = [(p, _seq(("lit", f"{p}="), value(s, f"{where}.{p}"))) for p, s in props.items()]
    return _seq(("lit", f"{name}("), _members(members, set(schema.get("required") or ()), where), ("lit", ")"))


def _members(members: list[tuple[str, tuple]], required: set[str], where: str) -> tuple | None:
    """Members in order, the required ones always, joined by ", " (None: no members)."""
    missing = sorted(required - {m for m, _ in members})
    if missing:
        raise PythonicGrammarError(f"{where}: required {missing[0]!r} is not among its properties, so no value "
                                   "this grammar writes can have it")
    after: tuple | None = None  # members i.. once one was written (each then opens with ", ")
    first: tuple | None = None  # members i.. when none was written yet
    for name, node in reversed(members):
        written = _seq(node, after)
        if name in required:
            after, first = _seq(("lit", SEP), written), written
        else:  # each part appears once: the tree grows with the square of the members, never exponentially
            after = _seq(("opt", _seq(("lit", SEP), node)), after)
            first = _alt([written, first]) if first is not None else ("opt", written)
    return first


def _check(schema: dict, where: str) -> None:
    unknown = sorted(set(schema) - SUPPORTED - IGNORED)
    if unknown:
        raise PythonicGrammarError(f"{where} uses {', '.join(unknown)}, which the pythonic format's grammar does not "
                                   "enforce; drop it or use a JSON tool format (hermes, llama3, mistral, json)")
    if "anyOf" in schema and set(schema) - IGNORED - {"anyOf"}:
        raise PythonicGrammarError(f"{where}: anyOf beside other keywords is not supported by the pythonic "
                                   "format's grammar; move them into each branch")


def value(schema: Any, where: str) -> tuple:
    """The tree of one value that `schema` accepts."""
    if schema is True or schema == {}:
        return ("any",)
    if not isinstance(schema, dict):
        raise PythonicGrammarError(f"{where}: a schema of {schema!r} allows no value")
    _check(schema, where)
    if "const" in schema:
        return ("lit", _literal(schema["const"], where))
    if "enum" in schema:
        return _alt([("lit", _literal(v, where)) for v in schema["enum"]])
    if "anyOf" in schema:
        return _alt([value(s, f"{where}.anyOf[{i}]") for i, s in enumerate(schema["anyOf"])])
    types = schema.get("type")
    if types is None:
        types = ["object"] if "properties" in schema else ["array"] if "items" in schema else None
    if types is None:
        return ("any",)
    return _alt([_typed(t, schema, where) for t in ([types] if isinstance(types, str) else types)])


def _literal(v: Any, where: str) -> str:
    try:
        return literal(v)
    except ValueError as exc:
        raise PythonicGrammarError(f"{where}: {exc}") from None


def _typed(t: str, schema: dict, where: str) -> tuple:
    if t == "string":
        return ("string",)
    if t == "integer":
        return ("re", INTEGER)
    if t == "number":
        return ("re", NUMBER)
    if t == "boolean":
        return _alt([("lit", "True"), ("lit", "False")])
    if t == "null":
        return ("lit", "None")
    if t == "array":
        items = schema.get("items", True)
        return _list_of(value(items, f"{where}.items"))
    if t == "object":
        return _dict(schema, where)
    raise PythonicGrammarError(f"{where}: unknown type {t!r}")


def _dict(schema: dict, where: str) -> tuple:
    props = schema.get("properties")
    extra = schema.get("additionalProperties", True)
    if props:
        members = [(k, _seq(("lit", json.dumps(k, ensure_ascii=False) + ": "), value(s, f"{where}.{k}")))
                   for k, s in props.items()]
        return _seq(("lit", "{"), _members(members, set(schema.get("required") or ()), where), ("lit", "}"))
    if schema.get("required"):
        raise PythonicGrammarError(f"{where}: required keys without properties are not supported by the pythonic "
                                   "format's grammar; declare them under properties")
    if extra is False:
        return ("lit", "{}")
    entry = _seq(("string",), ("lit", ": "), value(extra, f"{where}.additionalProperties"))
    return _seq(("lit", "{"), ("opt", _seq(entry, ("star", _seq(("lit", SEP), entry)))), ("lit", "}"))


# ---- llguidance Lark --------------------------------------------------------------------------------------
def lark(spec: Any) -> str:
    """The Lark text (llguidance's dialect) of the spec's tree."""
    rules: dict[str, str] = {}
    start = _lark(tools_tree(spec), rules)
    lines = ["%llguidance {}", f"start: {start}"]
    lines += [f"{name}: {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


def _lark(node: tuple, rules: dict[str, str]) -> str:
    kind = node[0]
    if kind == "lit":
        return json.dumps(node[1])
    if kind == "re":
        return "/" + node[1].replace("/", "\\/") + "/"
    if kind == "string":
        return "/" + _string_re("]") + "/"
    if kind == "text":
        rules.setdefault("TEXT", r"/(?s:.*)/ & ~/\x{5B}(?s:.*)/")  # anything not starting with "["
        return "TEXT"
    if kind == "seq":
        return "(" + " ".join(_lark(n, rules) for n in node[1]) + ")"
    if kind == "alt":
        return "(" + " | ".join(_lark(n, rules) for n in node[1]) + ")"
    if kind in ("opt", "star"):
        return "(" + _lark(node[1], rules) + (")?" if kind == "opt" else ")*")
    if kind == "any":
        if "any_value" not in rules:
            rules["any_value"] = ""  # reserve the name: the rule refers to itself
            rules["any_value"] = _lark(_any(("any",)), rules)
        return "any_value"
    raise AssertionError(f"unknown grammar node {kind!r}")


def _any(inner: tuple) -> tuple:
    """Any value, its list items and dict values being `inner`."""
    entry = _seq(("string",), ("lit", ": "), inner)
    return _alt([("string",), ("re", NUMBER), ("lit", "True"), ("lit", "False"), ("lit", "None"), _list_of(inner),
                 _seq(("lit", "{"), ("opt", _seq(entry, ("star", _seq(("lit", SEP), entry)))), ("lit", "}"))])


def _string_re(class_end: str) -> str:
    return f'"(?:{STRING_CHARS}{class_end}|{STRING_ESCAPES})*"'


# ---- outlines-core regex ----------------------------------------------------------------------------------
def regex(spec: Any, spell: dict[str, str]) -> str:
    """The whole output as one regex (Rust syntax, for outlines-core), before the EOS sentinel. `spell` maps the
    formats' marker tokens to the private characters that stand for them: no text here ever holds one."""
    from tinygpt.runtime.grammar_outlines import not_prefixed

    banned = "".join(c for c in spell.values() if len(c) == 1)
    return _regex(tools_tree(spec), {"text": not_prefixed(OPEN, banned=banned)}, ANY_DEPTH)


def _regex(node: tuple, fixed: dict[str, str], depth: int) -> str:
    kind = node[0]
    if kind == "lit":
        return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in node[1])
    if kind == "re":
        return f"(?:{node[1]})"
    if kind == "string":
        return _string_re(r"\x{100000}-\x{10FFFF}]")  # plane 16: the backend's private marker characters
    if kind == "text":
        return fixed["text"]
    if kind == "seq":
        return "".join(_regex(n, fixed, depth) for n in node[1])
    if kind == "alt":
        return "(?:" + "|".join(_regex(n, fixed, depth) for n in node[1]) + ")"
    if kind in ("opt", "star"):
        return "(?:" + _regex(node[1], fixed, depth) + (")?" if kind == "opt" else ")*")
    if kind == "any":
        inner = ("any",) if depth > 1 else _alt([("string",), ("re", NUMBER), ("lit", "True"), ("lit", "False"),
                                                 ("lit", "None")])
        return _regex(_any(inner), fixed, depth - 1)
    raise AssertionError(f"unknown grammar node {kind!r}")
