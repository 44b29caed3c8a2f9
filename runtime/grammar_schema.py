"""The JSON Schema subset used for tool arguments and response formats: check that a schema stays inside it,
validate a value against it, and derive the strict form that grammars compile.

Supported: type (one or a list), enum, const, properties, required, additionalProperties (bool or schema),
items, minItems, maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, multipleOf, anyOf, oneOf, allOf, and local references ($ref "#/$defs/X", "#/definitions/X"
or any "#/..." pointer into the same schema, recursion included); annotations (description, title, default,
examples, format, discriminator, $comment) are accepted and not checked. Keyword values of the wrong type
(e.g. draft-4 `exclusiveMinimum: true`), schemas nested deeper than MAX_DEPTH and reference loops that never
reach a value are refused. Patterns follow ECMA-262: `\\d` and `\\w` are ASCII (see grammar_regex.py).
Not here: remote $ref, if/then/else, patternProperties, dependent*, formats — a SchemaError names them.
"""
from __future__ import annotations

import math
import re
import reprlib
from fractions import Fraction
from typing import Any
from urllib.parse import unquote

from tinygpt.runtime.grammar_regex import PatternError, ecma_pattern

TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
KEYWORDS = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
}
ANNOTATIONS = {"description", "title", "default", "examples", "format", "$comment", "$schema", "discriminator"}
MAX_DEPTH = 64  # nesting of schemas inside schemas; deeper ones are refused, never a RecursionError
COUNTS = ("minItems", "maxItems", "minLength", "maxLength")
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
SAME_VALUE = ("anyOf", "oneOf", "allOf")  # subschemas applied to the value itself (no value consumed)


class SchemaError(ValueError):
    """A schema uses something outside the supported subset, or is malformed; the message says where."""


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise SchemaError unless `schema` is a well-formed schema of the supported subset."""
    _check(schema, where, schema, 0)
    _check_ref_loops(schema, where)


def _check(schema: Any, where: str, root: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: the schema is nested deeper than {MAX_DEPTH} levels; flatten it (use $defs "
                          "and $ref for repeated parts)")
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{where} must be a JSON object (dict), got {type(schema).__name__}")
    unknown = sorted(set(schema) - KEYWORDS - ANNOTATIONS)
    if unknown:
        raise SchemaError(f"{where} uses unsupported keyword(s) {', '.join(unknown)}; supported: "
                          f"{', '.join(sorted(KEYWORDS))}")
    _check_values(schema, where)
    if "$ref" in schema:
        resolve(root, schema["$ref"], where)

    def sub(s: Any, w: str) -> None:
        _check(s, w, root, depth + 1)

    for name, s in schema.get("properties", {}).items():
        sub(s, f"{where}.properties.{name}")
    for key in ("$defs", "definitions"):
        for name, s in schema.get(key, {}).items():
            sub(s, f"{where}.{key}.{name}")
    for key in ("additionalProperties", "items"):
        if key in schema:
            sub(schema[key], f"{where}.{key}")
    for key in SAME_VALUE:
        for i, s in enumerate(schema.get(key, [])):
            sub(s, f"{where}.{key}[{i}]")


def _check_values(schema: dict, where: str) -> None:
    """Each keyword's value has the type JSON Schema (2020-12) gives it."""
    def bad(key: str, want: str) -> SchemaError:
        return SchemaError(f"{where}: '{key}' must be {want}, got {reprlib.repr(schema[key])}")

    types = schema.get("type")
    if types is not None:
        if not isinstance(types, (str, list)) or (isinstance(types, list) and not types):
            raise bad("type", "a type name or a non-empty list of type names")
        for t in [types] if isinstance(types, str) else types:
            if t not in TYPES:
                raise SchemaError(f"{where}: unknown type {t!r}; use one of {', '.join(TYPES)}")
    for key in ("properties", "$defs", "definitions"):
        if key in schema and not isinstance(schema[key], dict):
            raise SchemaError(f"{where}: '{key}' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}: 'required' must be a list of property names")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise SchemaError(f"{where}: 'enum' must be a non-empty list")
    for key in ("enum", "const", "default", "examples", "discriminator"):
        if key in schema and not _is_json(schema[key], 0):
            raise bad(key, f"JSON values (no NaN or Infinity, nested at most {MAX_DEPTH} levels)")
    for key in COUNTS:
        if key in schema and (type(schema[key]) is not int or schema[key] < 0):
            raise bad(key, "a non-negative integer")
    for key in BOUNDS:
        v = schema.get(key)
        if key in schema and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            hint = " (the draft-4 boolean form is not supported: give the bound itself)" if isinstance(v, bool) else ""
            raise bad(key, "a finite number" + hint)
    if "multipleOf" in schema and schema["multipleOf"] <= 0:
        raise bad("multipleOf", "a number above 0")
    if "uniqueItems" in schema and not isinstance(schema["uniqueItems"], bool):
        raise bad("uniqueItems", "true or false")
    for key in ("additionalProperties", "items"):
        if key in schema and not isinstance(schema[key], (bool, dict)):
            raise bad(key, "a schema (an object or a boolean)")
    for key in SAME_VALUE:
        if key in schema and (not isinstance(schema[key], list) or not schema[key]):
            raise SchemaError(f"{where}: '{key}' must be a non-empty list of schemas")
    if "$ref" in schema and not isinstance(schema["$ref"], str):
        raise bad("$ref", "a string")
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise bad("pattern", "a string")
        try:
            re.compile(ecma_pattern(schema["pattern"]))
        except (re.error, PatternError) as exc:
            raise SchemaError(f"{where}: 'pattern' is not a valid regex ({exc})") from exc


def _is_json(value: Any, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return value is None or isinstance(value, (str, int, bool))


def resolve(root: Any, ref: str, where: str = "schema") -> Any:
    """The subschema that a local `$ref` ("#", "#/$defs/X", any "#/..." JSON pointer) names in `root`."""
    if not ref.startswith("#"):
        raise SchemaError(f"{where}: $ref {ref!r} is not a local reference; only refs into the same schema "
                          "(#/$defs/Name) are supported")
    node = root
    for part in (ref[1:].split("/")[1:] if ref != "#" else []):
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"{where}: $ref {ref!r} names nothing in this schema; define it under $defs")
    if not isinstance(node, (dict, bool)):
        raise SchemaError(f"{where}: $ref {ref!r} does not name a schema")
    return node


def _same_value_refs(schema: Any) -> list[str]:
    """The refs applied to the same value as `schema` itself (through $ref and anyOf/oneOf/allOf)."""
    if not isinstance(schema, dict):
        return []
    refs = [schema["$ref"]] if "$ref" in schema else []
    for key in SAME_VALUE:
        for s in schema.get(key, []):
            refs += _same_value_refs(s)
    return refs


def _check_ref_loops(root: Any, where: str) -> None:
    """Refuse a $ref that leads back to itself before any property or item is entered (`{"$ref": "#"}` at
    the root): no value could ever satisfy it and a validator would recurse forever."""
    chain: dict[str, int] = {}  # ref -> the most refs that lead one to the next from it (itself included)

    def visit(ref: str, stack: tuple[str, ...]) -> int:
        if ref in stack:
            raise SchemaError(f"{where}: $ref {ref!r} refers back to itself without a property or item in "
                              f"between ({' -> '.join(stack + (ref,))}); no value can satisfy it")
        if ref not in chain:
            if len(stack) >= MAX_DEPTH:
                raise SchemaError(f"{where}: more than {MAX_DEPTH} $refs lead one to the next ({stack[0]!r} ...); "
                                  "shorten the chain")
            chain[ref] = 1 + max((visit(n, stack + (ref,)) for n in _same_value_refs(resolve(root, ref, where))),
                                 default=0)
        if len(stack) + chain[ref] > MAX_DEPTH:
            raise SchemaError(f"{where}: more than {MAX_DEPTH} $refs lead one to the next ({(stack or (ref,))[0]!r} "
                              "...); shorten the chain")
        return chain[ref]

    def walk(schema: Any, depth: int) -> None:
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return
        if "$ref" in schema:
            visit(schema["$ref"], ())
        children = [*schema.get("properties", {}).values(), *schema.get("$defs", {}).values(),
                    *schema.get("definitions", {}).values(),
                    *(schema.get(k) for k in ("items", "additionalProperties")),
                    *(s for k in SAME_VALUE for s in schema.get(k, []))]
        for s in children:
            walk(s, depth + 1)

    walk(root, 0)


def strict(schema: Any, where: str = "schema") -> Any:
    """The form grammars compile: a copy in which every object that lists `properties` but says nothing of
    `additionalProperties` (and pins no const/enum) forbids extra keys (grammars then never wander into
    free-form keys), patterns are in ECMA form, an enum keeps only the members that pass the rest of their
    schema (no value can be the others), and a `oneOf` whose branches provably never overlap becomes `anyOf`
    (same values; backends cannot enforce "exactly one"). Values it accepts also pass `validate` against the
    original schema. Raises SchemaError for a const, or an enum with no member, that fails the rest of its
    schema: nothing can satisfy it, and a backend would refuse it or emit the value anyway."""
    return _strict(schema, schema, 0, where)


def _strict(schema: Any, root: Any, depth: int, where: str) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return schema
    out = dict(schema)
    for key in ("properties", "$defs", "definitions"):
        if key in out:
            out[key] = {k: _strict(v, root, depth + 1, f"{where}.{key}.{k}") for k, v in out[key].items()}
    if "properties" in out and "const" not in out and "enum" not in out:
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key], root, depth + 1, f"{where}.{key}")
    for key in SAME_VALUE:
        if key in out:
            out[key] = [_strict(s, root, depth + 1, f"{where}.{key}[{i}]") for i, s in enumerate(out[key])]
    if "enum" in out or "const" in out:
        out["enum" if "const" not in out else "const"] = _possible_values(schema, root, where)
    if "oneOf" in out and "anyOf" not in out and disjoint(out["oneOf"], root):
        out["anyOf"] = out.pop("oneOf")
    if isinstance(out.get("pattern"), str):
        out["pattern"] = ecma_pattern(out["pattern"])
    return out


def _possible_values(schema: dict, root: Any, where: str) -> Any:
    """The const, or the enum members, that pass the rest of `schema`; SchemaError when none does."""
    key = "const" if "const" in schema else "enum"
    rest = {k: v for k, v in schema.items() if k != key}  # a const must also be in a sibling enum
    values = [schema["const"]] if key == "const" else schema["enum"]
    errors = [validate(v, rest, "value", root) for v in values]
    keep = [v for v, err in zip(values, errors) if err is None]
    if not keep:
        what = f"const {values[0]!r:.60}" if key == "const" else f"every enum member ({values!r:.100})"
        raise SchemaError(f"{where}: {what} fails the rest of its schema ({errors[0]}), so no value can satisfy "
                          f"it; fix the {key} or the keywords next to it")
    return keep[0] if key == "const" else keep


def disjoint(branches: list, root: Any) -> bool:
    """True when no value can match two of `branches` (so oneOf = anyOf): their types never overlap, or they
    are objects that all require one property whose const/enum values never overlap (a discriminator)."""
    seen = [_deref(b, root) for b in branches]
    if not all(isinstance(b, dict) for b in seen):
        return False
    types = [_type_set(b) for b in seen]
    if all(types) and all(not (a & b) for i, a in enumerate(types) for b in types[:i]):
        return True
    common = set.intersection(*(set(b.get("required", [])) for b in seen))
    for prop in sorted(common):
        values = [_values(_deref(b.get("properties", {}).get(prop, {}), root)) for b in seen]
        if all(v is not None for v in values) and all(
                not any(_equal(x, y) for x in a for y in b) for i, a in enumerate(values) for b in values[:i]):
            return True
    return False


def _deref(schema: Any, root: Any) -> Any:
    for _ in range(MAX_DEPTH):  # a chain of bare refs; loops were refused by check_schema
        if not (isinstance(schema, dict) and set(schema) - ANNOTATIONS == {"$ref"}):
            break
        schema = resolve(root, schema["$ref"])
    return schema


def _type_set(schema: dict) -> set[str]:
    t = schema.get("type")
    names = {t} if isinstance(t, str) else set(t or ())
    return names | {"number"} if "integer" in names else names | ({"integer"} if "number" in names else set())


def _values(schema: Any) -> list | None:
    if isinstance(schema, dict) and "const" in schema:
        return [schema["const"]]
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list):
        return schema["enum"]
    return None


def _type_ok(value: Any, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if t == "number":
        return math.isfinite(value)
    return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())


def validate(value: Any, schema: Any, path: str = "$", root: Any = None) -> str | None:
    """The first way `value` violates `schema`, as '<path>: <what>', or None when it conforms. `$ref`s are
    resolved in `root` (default: `schema` itself)."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return None
    if schema is False:
        return f"{path}: no value is allowed here"
    if "$ref" in schema:
        err = validate(value, resolve(root, schema["$ref"]), path, root)
        if err:
            return err
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else types
        if not any(_type_ok(value, t) for t in allowed):
            return f"{path}: expected {' or '.join(allowed)}, got {type(value).__name__} {value!r:.60}"
    if "const" in schema and not _equal(value, schema["const"]):
        return f"{path}: must be {schema['const']!r}"
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        return f"{path}: {value!r:.60} is not one of {schema['enum']!r:.200}"
    for check in (_check_string, _check_number, _check_array, _check_object, _check_combinators):
        err = check(value, schema, path, root)
        if err:
            return err
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _check_string(value: Any, schema: dict, path: str, root: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{path}: shorter than minLength {schema['minLength']}"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{path}: longer than maxLength {schema['maxLength']}"
    if "pattern" in schema and re.search(ecma_pattern(schema["pattern"]), value) is None:
        return f"{path}: does not match pattern {schema['pattern']!r}"
    return None


def _check_number(value: Any, schema: dict, path: str, root: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if "minimum" in schema and value < schema["minimum"]:
        return f"{path}: {value} is below minimum {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{path}: {value} is above maximum {schema['maximum']}"
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return f"{path}: {value} is not above exclusiveMinimum {schema['exclusiveMinimum']}"
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        return f"{path}: {value} is not below exclusiveMaximum {schema['exclusiveMaximum']}"
    if "multipleOf" in schema and not _multiple(value, schema["multipleOf"]):
        return f"{path}: {value} is not a multiple of {schema['multipleOf']}"
    return None


def _multiple(value: int | float, step: int | float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0  # exact, whatever the size
    try:
        q = value / step
    except OverflowError:  # an integer too large for a float: compare exactly in fractions
        return Fraction(value) % Fraction(step) == 0
    return math.isclose(q, round(q), rel_tol=0, abs_tol=1e-9)


def _check_array(value: Any, schema: dict, path: str, root: Any) -> str | None:
    if not isinstance(value, list):
        return None
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"{path}: fewer than minItems {schema['minItems']}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{path}: more than maxItems {schema['maxItems']}"
    if schema.get("uniqueItems"):
        for i, a in enumerate(value):
            if any(_equal(a, b) for b in value[:i]):
                return f"{path}[{i}]: duplicate item (uniqueItems)"
    if "items" in schema:
        for i, item in enumerate(value):
            err = validate(item, schema["items"], f"{path}[{i}]", root)
            if err:
                return err
    return None


def _check_object(value: Any, schema: dict, path: str, root: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"{path}: missing required property {name!r}"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            err = validate(item, props[key], f"{path}.{key}", root)
        elif extra is False:
            err = f"{path}: unexpected property {key!r} (allowed: {', '.join(props) or 'none'})"
        else:
            err = validate(item, extra, f"{path}.{key}", root)
        if err:
            return err
    return None


def _check_combinators(value: Any, schema: dict, path: str, root: Any) -> str | None:
    for sub in schema.get("allOf", []):
        err = validate(value, sub, path, root)
        if err:
            return err
    if "anyOf" in schema and all(validate(value, s, path, root) for s in schema["anyOf"]):
        return f"{path}: matches none of anyOf"
    if "oneOf" in schema:
        hits = sum(validate(value, s, path, root) is None for s in schema["oneOf"])
        if hits != 1:
            return f"{path}: matches {hits} of oneOf (must match exactly one)"
    return None
