"""check_schema refuses malformed keyword values and over-deep nesting cleanly; `$ref`s resolve (and loops
that never reach a value are refused); patterns mean what ECMA-262 says; strict turns provably disjoint
oneOf into anyOf."""
import pytest

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_schema import MAX_DEPTH, SchemaError, check_schema, strict, validate
from tinygpt.runtime.tool_calls import tool_specs

ADDR = {"type": "object", "properties": {"street": {"type": "string"}, "zip": {"anyOf": [{"type": "string"},
                                                                                          {"type": "null"}]}},
        "required": ["street", "zip"], "additionalProperties": False}
PERSON = {"$defs": {"Addr": ADDR}, "type": "object", "additionalProperties": False, "required": ["home", "others"],
          "properties": {"home": {"$ref": "#/$defs/Addr"}, "others": {"type": "array", "items": {"$ref": "#/$defs/Addr"}}}}
NODE = {"definitions": {"Node": {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {
    "type": "array", "items": {"$ref": "#/definitions/Node"}}}, "required": ["v"]}}, "$ref": "#/definitions/Node"}


@pytest.mark.parametrize("schema, message", [
    ({"type": "number", "exclusiveMinimum": True}, "schema: 'exclusiveMinimum' must be a finite number (the draft-4 "
                                                   "boolean form is not supported"),
    ({"maximum": "3"}, "schema: 'maximum' must be a finite number, got '3'"),
    ({"minimum": float("nan")}, "schema: 'minimum' must be a finite number"),
    ({"minLength": -1}, "schema: 'minLength' must be a non-negative integer, got -1"),
    ({"maxItems": 1.5}, "schema: 'maxItems' must be a non-negative integer, got 1.5"),
    ({"maxLength": True}, "schema: 'maxLength' must be a non-negative integer, got True"),
    ({"multipleOf": 0}, "schema: 'multipleOf' must be a number above 0"),
    ({"uniqueItems": "yes"}, "schema: 'uniqueItems' must be true or false"),
    ({"items": [{"type": "string"}]}, "schema: 'items' must be a schema (an object or a boolean)"),
    ({"additionalProperties": "no"}, "schema: 'additionalProperties' must be a schema"),
    ({"type": []}, "schema: 'type' must be a type name or a non-empty list of type names"),
    ({"pattern": 5}, "schema: 'pattern' must be a string"),
    ({"pattern": "[\\D]"}, "schema: 'pattern' is not a valid regex (\\D inside [...]"),
    ({"$ref": 5}, "schema: '$ref' must be a string"),
    ({"$defs": []}, "schema: '$defs' must be an object"),
    ({"properties": {"a": {"minItems": "1"}}}, "schema.properties.a: 'minItems' must be a non-negative integer"),
])
def test_keyword_values_of_the_wrong_type_are_refused(schema, message):
    with pytest.raises(SchemaError) as err:
        check_schema(schema)
    assert str(err.value).startswith(message)


def nested(depth, how):
    schema = {"type": "string"}
    for _ in range(depth):
        schema = {"properties": {"a": {"type": "object", **schema}}, "type": "object"} if how == "properties" \
            else {"type": "array", "items": schema} if how == "items" else {"anyOf": [schema]}
    return {"type": "object", "properties": {"x": schema}}


@pytest.mark.parametrize("how", ["properties", "items", "anyOf"])
def test_a_schema_nested_500_deep_is_refused_cleanly_and_64_is_accepted(how):
    with pytest.raises(SchemaError, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_schema(nested(500, how))
    with pytest.raises(SchemaError, match="nested deeper than"):
        tool_specs([{"name": "f", "parameters": nested(500, how)}])
    check_schema(nested(MAX_DEPTH // (2 if how == "properties" else 1) - 2, how))


def test_values_nested_past_the_limit_in_enum_const_default_are_refused():
    deep = []
    for _ in range(5000):
        deep = [deep]
    for key in ("enum", "const", "default", "examples"):
        with pytest.raises(SchemaError, match=f"schema.properties.a: '{key}' must be JSON values"):
            check_schema({"properties": {"a": {key: [deep]}}})


def test_compiling_a_500_deep_tool_schema_is_a_grammar_error(bpe_engine):
    with pytest.raises(G.GrammarError, match="nested deeper than 64 levels"):
        G.compile_tools(bpe_engine.tokenizer, [{"name": "f", "parameters": nested(500, "properties")}])
    with pytest.raises(G.GrammarError, match="nested deeper than 64 levels"):
        G.compile_json(bpe_engine.tokenizer, nested(500, "items"))


def test_validate_follows_local_refs_in_defs_and_definitions():
    check_schema(PERSON)
    check_schema(NODE)
    good = {"home": {"street": "a", "zip": None}, "others": [{"street": "b", "zip": "1"}]}
    assert validate(good, PERSON) is None
    assert validate({**good, "others": [{"street": "b"}]}, PERSON) == "$.others[0]: missing required property 'zip'"
    assert validate({"home": {"street": 1, "zip": None}, "others": []}, PERSON) == \
        "$.home.street: expected string, got int 1"
    assert validate({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}, NODE) is None
    assert validate({"v": 1, "kids": [{"v": 2, "kids": [{"v": "x"}]}]}, NODE) == \
        "$.kids[0].kids[0].v: expected integer, got str 'x'"
    escaped = {"$defs": {"a/b": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/a~1b"}}}
    check_schema(escaped)
    assert validate({"n": "1"}, escaped) == "$.n: expected integer, got str '1'"


@pytest.mark.parametrize("schema", [
    {"$ref": "#"},
    {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]}, "B": {"allOf": [{"$ref": "#/$defs/A"}]}},
     "properties": {"x": {"$ref": "#/$defs/A"}}},
])
def test_reference_loops_that_never_reach_a_value_are_refused(schema):
    with pytest.raises(SchemaError, match="refers back to itself without a property or item in between"):
        check_schema(schema)


def test_patterns_have_their_ecma_meaning_ascii_digits_and_word_characters():
    assert validate("١٢", {"pattern": "^\\d+$"}) == "$: does not match pattern '^\\\\d+$'"
    assert validate("12", {"pattern": "^\\d+$"}) is None
    assert validate("é", {"pattern": "^\\w$"}) is not None
    assert validate("é", {"pattern": "^\\W$"}) is None
    assert validate("a1", {"pattern": "^[a\\d]+$"}) is None and validate("a١", {"pattern": "^[a\\d]+$"})


def test_strict_makes_provably_disjoint_one_of_an_any_of_and_keeps_the_rest():
    cat = {"type": "object", "properties": {"t": {"const": "cat"}}, "required": ["t"]}
    dog = {"type": "object", "properties": {"t": {"enum": ["dog", "wolf"]}}, "required": ["t"]}
    pets = {"$defs": {"Cat": cat, "Dog": dog}, "discriminator": {"propertyName": "t"},
            "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}
    check_schema(pets)
    assert "anyOf" in strict(pets) and "oneOf" not in strict(pets)
    assert "anyOf" in strict({"oneOf": [{"type": "string"}, {"type": ["integer", "null"]}]})
    assert "oneOf" in strict({"oneOf": [{"type": "integer"}, {"type": "number"}]})  # 1 matches both
    assert "oneOf" in strict({"oneOf": [cat, {**dog, "properties": {"t": {"enum": ["cat"]}}}]})


@pytest.mark.parametrize("order", [1, -1])
def test_a_chain_of_a_thousand_refs_is_refused_cleanly_in_any_order(order):
    defs = dict(list({f"A{i}": {"$ref": f"#/$defs/A{i + 1}"} for i in range(1000)}.items())[::order])
    schema = {"$defs": {**defs, "A1000": {"type": "integer"}}}
    with pytest.raises(SchemaError, match="more than 64 \\$refs lead one to the next"):
        check_schema(schema)
    chain = {f"A{i}": {"$ref": f"#/$defs/A{i + 1}"} for i in range(60)}
    check_schema({"$defs": {**chain, "A60": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/A0"}}})


def test_strict_keeps_only_the_enum_members_that_pass_the_rest_of_their_schema():
    assert strict({"type": "integer", "enum": [1, "x", 2.5, None, 3]})["enum"] == [1, 3]
    assert strict({"type": "string", "maxLength": 2, "enum": ["ab", "abc"]})["enum"] == ["ab"]
    pinned = strict({"properties": {"a": {}}, "const": {"a": 1, "b": 2}})
    assert pinned["const"] == {"a": 1, "b": 2} and "additionalProperties" not in pinned  # the const stays valid


@pytest.mark.parametrize("schema, message", [
    ({"type": "integer", "const": "x"}, "const 'x' fails the rest of its schema (value: expected integer, got str"),
    ({"type": "string", "pattern": "^b", "enum": ["a", "c"]}, "every enum member (['a', 'c']) fails the rest of its "
                                                                "schema (value: does not match pattern '^b')"),
    ({"const": 3, "enum": [1, 2]}, "const 3 fails the rest of its schema (value: 3 is not one of [1, 2])"),
    ({"type": "number", "minimum": 5, "const": 4},
     "const 4 fails the rest of its schema (value: 4 is below minimum 5)"),
    ({"$ref": "#/$defs/S", "const": "abc"},
     "const 'abc' fails the rest of its schema (value: longer than maxLength 2)"),
    ({"type": "object", "properties": {"n": {"type": "integer"}}, "const": {"n": "1"}},
     "const {'n': '1'} fails the rest of its schema (value.n: expected integer"),
])
def test_a_const_or_enum_nothing_can_satisfy_is_refused_where_it_is(schema, message):
    root = {"$defs": {"S": {"type": "string", "maxLength": 2}}, "properties": {"a": schema}}
    with pytest.raises(SchemaError) as err:
        strict(root, "tool f parameters")
    assert str(err.value).startswith(f"tool f parameters.properties.a: {message}")


@pytest.mark.parametrize("backend", ["llguidance", "outlines"])
def test_tools_with_an_unsatisfiable_const_are_refused_by_every_backend(backend, bpe_engine):
    tool = {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "boolean", "const": 1}}}}
    with pytest.raises(G.GrammarError, match="^tool f parameters.properties.a: const 1 fails the rest of its schema"):
        G.compile_tools(bpe_engine.tokenizer, [tool], backend=backend)
