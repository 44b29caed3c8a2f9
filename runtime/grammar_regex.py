"""JSON Schema `pattern`s for the grammar backends: ECMA-262 meaning in Python `re` syntax (`ecma_pattern`,
used by the validator and by both backends), and the regex over a string's json.dumps spelling that the
outlines backend splices between the quotes (`json_text_pattern`).

ECMA-262 (what JSON Schema means) makes `\\d` and `\\w` ASCII; Python and Rust make them Unicode, so they are
written out as ASCII classes, and `\\D`/`\\W` inside `[...]` (not expressible that way) are refused.
outlines matches a pattern against the JSON text, not the value, so `json_text_pattern` keeps every
character class away from `"`, `\\`, control characters and the private plane-16 markers (whose JSON spelling
differs from the character) and refuses literals of them: it may allow fewer strings than the pattern, never
one that fails it. Not here: other dialect differences (lookarounds, `\\u` escapes: a backend refuses them).
"""
from __future__ import annotations

ASCII = {"d": "0-9", "w": "0-9A-Za-z_"}
# characters whose JSON text is not the character itself (or that no ordinary token spells: plane 16)
UNSAFE = '"\\\\\\x00-\\x1F\\x{100000}-\\x{10FFFF}'
SAFE_CLASS = f"[^{UNSAFE}]"


class PatternError(ValueError):
    """A pattern this module cannot translate exactly; the message says which part and what to do."""


def ecma_pattern(pattern: str) -> str:
    """`pattern` with `\\d`, `\\w`, `\\D`, `\\W` spelled as ASCII classes (the ECMA-262 meaning)."""
    out: list[str] = []
    i, in_class, class_start = 0, False, -1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e in ASCII:
                out.append(ASCII[e] if in_class else f"[{ASCII[e]}]")
            elif e.lower() in ASCII:
                if in_class:
                    raise PatternError(f"\\{e} inside [...] in pattern {pattern!r} cannot be made ASCII; write "
                                       "the class out (e.g. [^0-9] for \\D)")
                out.append(f"[^{ASCII[e.lower()]}]")
            else:
                out.append(c + e)
            i += 2
            continue
        if in_class and c == "]" and i > class_start:
            in_class = False
        elif not in_class and c == "[":
            in_class = True
            class_start = i + (2 if pattern[i + 1:i + 2] == "^" else 1)  # a "]" right here is a literal
        out.append(c)
        i += 1
    return "".join(out)


def json_text_pattern(pattern: str) -> str:
    """A Rust regex (no anchors) for the json.dumps text between the quotes of strings that fully match
    the ECMA form of `pattern`, restricted to characters written as themselves. A leading `^` and a
    trailing `$` are dropped (the whole string is matched, which implies the pattern's search)."""
    p = ecma_pattern(pattern)
    if p.startswith("^"):
        p = p[1:]
    if p.endswith("$") and not _escaped(p, len(p) - 1):
        p = p[:-1]
    out: list[str] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == "[":
            j = _class_end(p, i)
            out.append(f"[{p[i:j + 1]}&&{SAFE_CLASS}]")
            i = j + 1
            continue
        if c == "\\":
            e = p[i + 1:i + 2]
            if e in ("s", "S"):
                out.append(f"[\\{e}&&{SAFE_CLASS}]")
            elif not e or e.isalnum() or e in '"\\':
                raise _refuse(pattern, f"the escape \\{e}")
            else:
                out.append(c + e)
            i += 2
            continue
        if c == ".":
            out.append(SAFE_CLASS)
        elif c in "^$":
            raise _refuse(pattern, f"an anchor {c!r} inside it")
        elif c == '"' or ord(c) < 0x20 or ord(c) >= 0x100000:
            raise _refuse(pattern, f"the character {c!r}")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _refuse(pattern: str, what: str) -> PatternError:
    return PatternError(f"the outlines backend cannot enforce pattern {pattern!r} exactly ({what}); use "
                        "backend='llguidance'")


def _escaped(p: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and p[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _class_end(p: str, start: int) -> int:
    """Index of the `]` that closes the class opened at `p[start]`."""
    i = start + 1
    if p[i:i + 1] == "^":
        i += 1
    if p[i:i + 1] == "]":
        i += 1
    while i < len(p):
        if p[i] == "\\":
            i += 2
            continue
        if p[i] == "]":
            return i
        i += 1
    raise PatternError(f"unterminated character class in pattern {p!r}")
