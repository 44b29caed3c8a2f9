"""parse_tool_calls: content and calls split as the chat template writes them; truncated or invalid calls are
never returned as calls."""
import pytest

from tinygpt.runtime.grammar_schema import SchemaError
from tinygpt.runtime.tool_calls import parse_tool_calls, tool_specs
from tinygpt.runtime.tool_formats import hermes


def call_text(name: str, arguments: dict) -> str:
    """One call as the Hermes format (tinygpt's own chat template) writes it."""
    return hermes.FORMAT.render([(name, arguments, None)])


TOOLS = [
    {"type": "function", "function": {"name": "cp", "description": "copy", "parameters": {
        "type": "object", "properties": {"source": {"type": "string"}, "destination": {"type": "string"}},
        "required": ["source", "destination"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pwd", "parameters": {"type": "object", "properties": {}}}},
]
CP = call_text("cp", {"source": "a.txt", "destination": "b.txt"})
PWD = call_text("pwd", {})


def test_call_text_matches_the_chat_template(bpe_engine):
    msgs = [{"role": "user", "content": "x"},
            {"role": "assistant", "content": "Copying.", "tool_calls": [
                {"type": "function", "function": {"name": "cp", "arguments": {"source": "é", "destination": "b"}}},
                {"type": "function", "function": {"name": "pwd", "arguments": {}}}]}]
    rendered = bpe_engine.render(msgs, TOOLS, add_generation_prompt=False)
    want = "Copying.\n" + call_text("cp", {"source": "é", "destination": "b"}) + "\n" + PWD + "<|im_end|>"
    assert want in rendered


def test_content_and_parallel_calls():
    out = parse_tool_calls("Sure.\n" + CP + "\n" + PWD, None, TOOLS, tool_format="hermes")
    assert out.content == "Sure." and out.error is None and not out.truncated
    assert [(c.name, c.arguments) for c in out.calls] == [("cp", {"source": "a.txt", "destination": "b.txt"}),
                                                          ("pwd", {})]
    assert out.calls[0].id.startswith("call_") and out.calls[0].id != out.calls[1].id


def test_plain_text_has_no_calls():
    out = parse_tool_calls("just words <tool", None, TOOLS, tool_format="hermes")
    assert (out.content, out.calls, out.truncated, out.error) == ("just words <tool", [], False, None)


def test_from_ids_drops_the_final_eos_and_keeps_special_tokens(bpe_engine):
    ids = bpe_engine.encode(CP) + [bpe_engine.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    out = parse_tool_calls(ids, bpe_engine.tokenizer, TOOLS)
    assert [c.name for c in out.calls] == ["cp"] and out.content == "" and out.error is None


def test_a_call_cut_off_by_the_budget_is_truncated_not_returned(bpe_engine):
    ids = bpe_engine.encode(PWD + "\n" + CP)[:-5]  # no EOS: the budget ran out inside the second call
    out = parse_tool_calls(ids, bpe_engine.tokenizer, TOOLS)
    assert out.truncated and out.error is None and [c.name for c in out.calls] == ["pwd"]


def test_an_unclosed_call_that_stopped_on_eos_is_an_error_not_truncation(bpe_engine):
    eos = bpe_engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = parse_tool_calls(bpe_engine.encode(CP[:-12]) + [eos], bpe_engine.tokenizer, TOOLS)
    assert not out.truncated and out.calls == [] and "never closed" in out.error
    assert parse_tool_calls(CP[:-12], None, TOOLS, tool_format="hermes", finish_reason="stop").truncated is False
    assert parse_tool_calls(CP[:-12], None, TOOLS, tool_format="hermes", finish_reason="length").truncated is True


@pytest.mark.parametrize("body, message", [
    ('{"name": "cp", "arguments": {"source": "a"}}', "arguments of cp do not match its schema: $: missing "
                                                      "required property 'destination'"),
    ('{"name": "rm", "arguments": {}}', "unknown tool 'rm'; available: cp, pwd"),
    ('{"name": "pwd", "arguments": {}', "tool call is not valid JSON"),
    ('{"name": "pwd", "arguments": {}, "x": 1}', "tool call has unexpected key(s) x"),
    ('{"name": "pwd", "arguments": [1]}', "arguments of pwd must be a JSON object, got list"),
    ('["pwd"]', "tool call must be"),
])
def test_bad_calls_are_left_out_and_described(body, message):
    out = parse_tool_calls(f"<tool_call>\n{body}\n</tool_call>\n" + PWD, None, TOOLS, tool_format="hermes")
    assert [c.name for c in out.calls] == ["pwd"]  # the good call after the bad one is kept
    assert out.error.startswith(message)


def test_arguments_given_as_a_json_string_are_accepted():
    out = parse_tool_calls('<tool_call>\n{"name": "pwd", "arguments": "{}"}\n</tool_call>', None, TOOLS,
                           tool_format="hermes")
    assert [(c.name, c.arguments) for c in out.calls] == [("pwd", {})]


def test_text_after_the_calls_is_an_error():
    out = parse_tool_calls(CP + "\nand more", None, TOOLS, tool_format="hermes")
    assert [c.name for c in out.calls] == ["cp"] and out.error.startswith("unexpected text after a tool call")


@pytest.mark.parametrize("tools, message", [
    ([{"type": "function", "function": {"parameters": {}}}], "tools[0] has no function name"),
    ([{"type": "retrieval"}], "tools[0] must be"),
    ([TOOLS[0], TOOLS[0]], "tools[1]: duplicate tool name 'cp'"),
    ([{"function": {"name": "f", "parameters": {"type": "array"}}}], "tools[0] (f) parameters must be an object"),
    ([{"function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "dict"}}}}}],
     "tools[0] (f) parameters.properties.a: unknown type 'dict'"),
    ({"name": "f"}, "tools must be a list"),
])
def test_malformed_tools_are_refused(tools, message):
    with pytest.raises(SchemaError) as err:
        tool_specs(tools)
    assert str(err.value).startswith(message)


def test_bare_name_parameters_dicts_and_missing_parameters_are_accepted():
    specs = tool_specs([{"name": "pwd"}, {"name": "cd", "parameters": {"type": "object", "properties": {}}}])
    assert [s.name for s in specs] == ["pwd", "cd"]
    assert specs[0].parameters["properties"] == {}
