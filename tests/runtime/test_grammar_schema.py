"""The JSON Schema subset: what it accepts, what it rejects (and says why), and the strict form."""
import pytest

from tinygpt.runtime.grammar_schema import SchemaError, check_schema, strict, validate

ARGS = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z.]+$"},
        "n": {"type": "integer", "minimum": 0, "maximum": 9},
        "mode": {"enum": ["r", "w"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "uniqueItems": True},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "opt": {"type": ["string", "null"]},
    },
    "required": ["path"],
    "additionalProperties": False,
}


def test_a_conforming_value_has_no_error():
    assert validate({"path": "a.md", "n": 3, "mode": "w", "tags": ["x", "y"], "ratio": 0.5, "opt": None},
                    ARGS) is None


@pytest.mark.parametrize("value, expected", [
    ({}, "$: missing required property 'path'"),
    ({"path": "abcdef"}, "$.path: longer than maxLength 5"),
    ({"path": ""}, "$.path: shorter than minLength 1"),
    ({"path": "A"}, "$.path: does not match pattern '^[a-z.]+$'"),
    ({"path": "a", "n": 10}, "$.n: 10 is above maximum 9"),
    ({"path": "a", "n": -1}, "$.n: -1 is below minimum 0"),
    ({"path": "a", "n": True}, "$.n: expected integer, got bool True"),
    ({"path": "a", "n": 2.5}, "$.n: expected integer, got float 2.5"),
    ({"path": "a", "mode": "x"}, "$.mode: 'x' is not one of ['r', 'w']"),
    ({"path": "a", "tags": ["x", "y", "z"]}, "$.tags: more than maxItems 2"),
    ({"path": "a", "tags": ["x", "x"]}, "$.tags[1]: duplicate item (uniqueItems)"),
    ({"path": "a", "tags": [1]}, "$.tags[0]: expected string, got int 1"),
    ({"path": "a", "ratio": 1}, "$.ratio: 1 is not below exclusiveMaximum 1"),
    ({"path": "a", "opt": 3}, "$.opt: expected string or null, got int 3"),
    ({"path": "a", "extra": 1}, "$: unexpected property 'extra' (allowed: path, n, mode, tags, ratio, opt)"),
])
def test_each_violation_is_named_with_its_path(value, expected):
    assert validate(value, ARGS) == expected


def test_integral_float_counts_as_integer_and_bool_never_as_number():
    assert validate(3.0, {"type": "integer"}) is None
    assert validate(False, {"type": "number"}) == "$: expected number, got bool False"
    assert validate(1, {"enum": [True]}) == "$: 1 is not one of [True]"


def test_combinators():
    one = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert validate(2, one) == "$: matches 2 of oneOf (must match exactly one)"
    assert validate(2.5, one) is None
    assert validate("x", {"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "$: matches none of anyOf"
    assert validate(4, {"allOf": [{"minimum": 0}, {"multipleOf": 3}]}) == "$: 4 is not a multiple of 3"


@pytest.mark.parametrize("schema, message", [
    ({"$ref": "#/x"}, "schema: $ref '#/x' names nothing in this schema; define it under $defs"),
    ({"$ref": "other.json#/a"}, "schema: $ref 'other.json#/a' is not a local reference"),
    ({"if": {}}, "schema uses unsupported keyword(s) if"),
    ({"type": "dict"}, "schema: unknown type 'dict'"),
    ({"properties": []}, "schema: 'properties' must be an object"),
    ({"properties": {"a": {"type": "str"}}}, "schema.properties.a: unknown type 'str'"),
    ({"required": "a"}, "schema: 'required' must be a list of property names"),
    ({"enum": []}, "schema: 'enum' must be a non-empty list"),
    ({"pattern": "("}, "schema: 'pattern' is not a valid regex"),
    ([1], "schema must be a JSON object (dict), got list"),
])
def test_schemas_outside_the_subset_are_refused_with_the_reason(schema, message):
    with pytest.raises(SchemaError, match="^" + message.replace("$", r"\$").replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        check_schema(schema)


def test_strict_forbids_extra_keys_only_where_properties_are_listed():
    s = strict({"type": "object", "properties": {"a": {"type": "object", "properties": {}}, "b": {"type": "object"}},
                "additionalProperties": True})
    assert s["additionalProperties"] is True  # an explicit choice is kept
    assert s["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in s["properties"]["b"]  # a free-form map stays free-form
