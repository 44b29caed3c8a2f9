"""The JSON Schema subset used for tool arguments and response formats: check that a schema stays inside it,
validate a value against it, and derive the strict form that grammars compile.

Supported: type (one or a list), enum, const, properties, required, additionalProperties (bool or schema),
items, minItems, maxItems, uniqueItems, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, multipleOf, anyOf, oneOf, allOf; annotations (description, title, default, examples,
format, $comment) are accepted and not checked. Not here: $ref/$defs, if/then/else, patternProperties,
dependent*, formats — a schema using them is rejected with a SchemaError naming the keyword.
"""
from __future__ import annotations

import math
import re
from typing import Any

TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
KEYWORDS = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "anyOf", "oneOf", "allOf",
}
ANNOTATIONS = {"description", "title", "default", "examples", "format", "$comment", "$schema"}


class SchemaError(ValueError):
    """A schema uses something outside the supported subset, or is malformed; the message says where."""


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise SchemaError unless `schema` is a well-formed schema of the supported subset."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{where} must be a JSON object (dict), got {type(schema).__name__}")
    unknown = sorted(set(schema) - KEYWORDS - ANNOTATIONS)
    if unknown:
        raise SchemaError(f"{where} uses unsupported keyword(s) {', '.join(unknown)}; supported: "
                          f"{', '.join(sorted(KEYWORDS))}")
    types = schema.get("type")
    for t in ([types] if isinstance(types, str) else types or []):
        if t not in TYPES:
            raise SchemaError(f"{where}: unknown type {t!r}; use one of {', '.join(TYPES)}")
    if types is not None and not isinstance(types, (str, list)):
        raise SchemaError(f"{where}: 'type' must be a string or a list of strings")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError(f"{where}: 'properties' must be an object")
    for name, sub in props.items():
        check_schema(sub, f"{where}.properties.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}: 'required' must be a list of property names")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise SchemaError(f"{where}: 'enum' must be a non-empty list")
    for key in ("additionalProperties", "items"):
        if key in schema:
            check_schema(schema[key], f"{where}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise SchemaError(f"{where}: '{key}' must be a non-empty list of schemas")
            for i, sub in enumerate(schema[key]):
                check_schema(sub, f"{where}.{key}[{i}]")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            raise SchemaError(f"{where}: 'pattern' is not a valid regex ({exc})") from exc


def strict(schema: Any) -> Any:
    """A copy in which every object that lists `properties` but says nothing of `additionalProperties`
    forbids extra keys (grammars then never wander into free-form keys). Values it accepts also pass
    `validate` against the original schema."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = [strict(s) for s in out[key]]
    return out


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


def validate(value: Any, schema: Any, path: str = "$") -> str | None:
    """The first way `value` violates `schema`, as '<path>: <what>', or None when it conforms."""
    if schema is True or schema == {}:
        return None
    if schema is False:
        return f"{path}: no value is allowed here"
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
        err = check(value, schema, path)
        if err:
            return err
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _check_string(value: Any, schema: dict, path: str) -> str | None:
    if not isinstance(value, str):
        return None
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{path}: shorter than minLength {schema['minLength']}"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{path}: longer than maxLength {schema['maxLength']}"
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        return f"{path}: does not match pattern {schema['pattern']!r}"
    return None


def _check_number(value: Any, schema: dict, path: str) -> str | None:
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
    if "multipleOf" in schema:
        q = value / schema["multipleOf"]
        if not math.isclose(q, round(q), rel_tol=0, abs_tol=1e-9):
            return f"{path}: {value} is not a multiple of {schema['multipleOf']}"
    return None


def _check_array(value: Any, schema: dict, path: str) -> str | None:
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
            err = validate(item, schema["items"], f"{path}[{i}]")
            if err:
                return err
    return None


def _check_object(value: Any, schema: dict, path: str) -> str | None:
    if not isinstance(value, dict):
        return None
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"{path}: missing required property {name!r}"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            err = validate(item, props[key], f"{path}.{key}")
        elif extra is False:
            err = f"{path}: unexpected property {key!r} (allowed: {', '.join(props) or 'none'})"
        else:
            err = validate(item, extra, f"{path}.{key}")
        if err:
            return err
    return None


def _check_combinators(value: Any, schema: dict, path: str) -> str | None:
    for sub in schema.get("allOf", []):
        err = validate(value, sub, path)
        if err:
            return err
    if "anyOf" in schema and all(validate(value, s, path) for s in schema["anyOf"]):
        return f"{path}: matches none of anyOf"
    if "oneOf" in schema:
        hits = sum(validate(value, s, path) is None for s in schema["oneOf"])
        if hits != 1:
            return f"{path}: matches {hits} of oneOf (must match exactly one)"
    return None
