"""The pythonic tool format (runtime/tool_formats/pythonic.py): what its grammar lets a tiny random model write
parses and validates against the tools' schemas for every tool_choice on both backends; every valid call, string
arguments holding `)]`, quotes and backslashes included, is accepted by both grammars and parses back to itself,
whole and streamed in any pieces; the parser reads Python's own spellings and names what is wrong with the rest,
never raising. Both grammar backends build the format's own grammar (tool_formats.own_syntax: pythonic.lark /
pythonic.regex)."""
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tinygpt.runtime import grammar as G
from tinygpt.runtime import tool_formats
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output, parse_tool_calls
from tinygpt.runtime.tool_formats import pythonic
from tinygpt.runtime.tool_formats.split import CallArgs, CallStart, CallStream, Content

pytestmark = pytest.mark.usefixtures("one_blas_thread")
FMT = pythonic.FORMAT
TOOLS = [
    {"type": "function", "function": {"name": "echo", "parameters": {
        "type": "object", "properties": {"s": {"type": "string"}, "t": {"type": "array", "items": {"type": "string"}}},
        "required": ["s"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pwd", "parameters": {"type": "object", "properties": {}}}},
]
BACKENDS = ["llguidance", "outlines"]
CHOICES = ["auto", "required", "none", {"type": "function", "function": {"name": "f"}}]


def accepts(grammar, tokenizer, text: str) -> bool:
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return grammar.processor().accepted(ids + [grammar.eos_ids[0]])


# ---- schemas and values --------------------------------------------------------------------------------
CHARS = st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t\"'\\")
PIECES = st.sampled_from([")]", "), ", '"', "'", "\\", '\\"', "]", "[", "(", "=", ", ", "\n", "True", "é", "日本"])
STRINGS = st.lists(PIECES | st.text(CHARS, max_size=3), max_size=5).map(
    lambda parts: unicodedata.normalize("NFC", "".join(parts)))  # the test tokenizer normalizes to NFC
NAMES = st.sampled_from(["a", "b_2", "path", "x", "count"])


def leaves():
    return st.one_of(
        st.just({"type": "string"}), st.just({"type": "integer"}), st.just({"type": "number"}),
        st.just({"type": "boolean"}), st.just({"type": "null"}), st.just({"type": ["integer", "null"]}),
        st.lists(STRINGS, min_size=1, max_size=3, unique=True).map(lambda e: {"type": "string", "enum": e}),
        st.just({"enum": [1, "one", None, [1, 2]]}),
        st.just({"type": "array", "items": {"type": "integer"}}),
        st.just({"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]}),
        st.just({"type": "object", "additionalProperties": {"type": "integer"}}),
        st.just({"description": "anything"}))


@st.composite
def params(draw, depth=1):
    child = leaves() if depth == 0 else st.one_of(leaves(), params(depth=0))
    props = draw(st.dictionaries(NAMES, child, max_size=3))
    required = [k for k in props if draw(st.booleans())]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def values(schema):
    """Values that conform to `schema` (of the shapes drawn above), in schema order."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind is None:  # the regex holds scalars inside an untyped value's lists and dicts (pythonic_grammar.py)
        scalar = st.none() | st.booleans() | st.integers() | STRINGS
        return scalar | st.lists(scalar, max_size=2) | st.dictionaries(STRINGS, scalar, max_size=2)
    if isinstance(kind, list):
        return st.one_of([values({**schema, "type": k}) for k in kind])
    simple = {"string": STRINGS, "integer": st.integers(-10**12, 10**12), "boolean": st.booleans(),
              "null": st.none(), "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-99, 99)}
    if kind in simple:
        return simple[kind]
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=3)
    if "properties" not in schema:
        return st.dictionaries(STRINGS, values(schema["additionalProperties"]), max_size=2)
    props = schema["properties"]
    return st.fixed_dictionaries({k: values(s) for k, s in props.items() if k in schema["required"]},
                                 optional={k: values(s) for k, s in props.items() if k not in schema["required"]}
                                 ).map(lambda d: {k: d[k] for k in props if k in d})


@st.composite
def schema_and_value(draw):
    schema = draw(params())
    return schema, draw(values(schema))


# ---- the grammar, on both backends ---------------------------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sv=schema_and_value(), backend=st.sampled_from(BACKENDS))
def test_every_valid_call_is_accepted_and_parses_back_to_itself(sv, backend, bpe_engine):
    schema, value = sv
    assert validate(value, schema) is None  # the strategy itself is right
    tok = bpe_engine.tokenizer
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    text = FMT.render([("f", value, None)])
    assert accepts(G.compile_tools(tok, tools, tool_choice="required", backend=backend, tool_format="pythonic"),
                   tok, text), text
    out = parse_tool_calls(text, tok, tools, tool_format="pythonic", finish_reason="stop")
    assert out.error is None and [(c.name, c.arguments) for c in out.calls] == [("f", value)]


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=params(), seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(BACKENDS),
       choice=st.sampled_from(CHOICES), parallel=st.booleans())
def test_what_the_grammar_lets_a_random_model_write_parses_and_validates(schema, seed, backend, choice, parallel,
                                                                         bpe_engine):
    tok = bpe_engine.tokenizer
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}, TOOLS[1]]
    grammar = G.compile_tools(tok, tools, tool_choice=choice, parallel_tool_calls=parallel, backend=backend,
                              tool_format="pythonic")
    proc = grammar.processor()
    prompt = bpe_engine.encode_chat([{"role": "user", "content": "go"}])
    r = bpe_engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=80, seed=seed),
                            logits_processors=[proc])
    assert proc.error is None
    parsed = parse_tool_calls(r.output_ids, tok, tools, tool_format="pythonic")
    text, ended = decode_output(r.output_ids, tok)
    assert parsed.error is None, (text, parsed.error)
    event("calls" if parsed.calls else "cut off in a call" if parsed.truncated else "text")
    specs = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert all(validate(c.arguments, specs[c.name]) is None for c in parsed.calls)
    if choice == "none":
        assert not parsed.calls and not text.startswith("[")
    elif choice != "auto" and ended:  # required / named: calls and nothing else
        assert parsed.calls and parsed.content == ""
    if isinstance(choice, dict) and parsed.calls:
        assert [c.name for c in parsed.calls] == ["f"]
    if not parallel or isinstance(choice, dict):
        assert len(parsed.calls) <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_string_holding_the_closing_marker_and_quotes_round_trips(backend, bpe_engine):
    tricky = 'a)], pwd()]"\'\\"x\\\n(b=1)'
    text = FMT.render([("echo", {"s": tricky, "t": [")]", "]"]}, None), ("pwd", {}, None)])
    tok = bpe_engine.tokenizer
    grammar = G.compile_tools(tok, TOOLS, tool_choice="required", backend=backend, tool_format="pythonic")
    assert accepts(grammar, tok, text)
    for reply in (text, "[echo(s='a)], pwd()]\"\\'', t=[')]']), pwd()]"):  # also Python's own single quotes
        out = parse_tool_calls(reply, tok, TOOLS, tool_format="pythonic", finish_reason="stop")
        assert out.error is None and [c.name for c in out.calls] == ["echo", "pwd"]
    out = parse_tool_calls(text, tok, TOOLS, tool_format="pythonic", finish_reason="stop")
    assert out.calls[0].arguments == {"s": tricky, "t": [")]", "]"]}
    cut = text[: text.index("pwd()") + 2]  # inside the string, right after a "pwd(" that is not a call
    assert parse_tool_calls(cut, tok, TOOLS, tool_format="pythonic", finish_reason="length") == \
        type(out)(content="", calls=[], truncated=True, error=None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_grammar_writes_one_spelling_and_never_free_text_that_opens_a_list(backend, bpe_engine):
    tok = bpe_engine.tokenizer
    auto = G.compile_tools(tok, TOOLS, tool_choice="auto", backend=backend, tool_format="pythonic")
    assert accepts(auto, tok, "Sure, done.") and accepts(auto, tok, '[pwd(), echo(s="x", t=[])]')
    for text in ["[Sure]", "[pwd() ]", "[pwd(),echo(s=\"x\")]", "[echo(s='x')]", '[echo(s="\\u0041")]',
                 "[echo(t=[], s=\"x\")]", "[echo(s=\"x\", u=1)]", "[pwd()] done"]:
        assert not accepts(auto, tok, text), text
    named = G.compile_tools(tok, TOOLS, tool_choice={"type": "function", "function": {"name": "pwd"}},
                            backend=backend, tool_format="pythonic")
    assert accepts(named, tok, "[pwd()]") and not accepts(named, tok, "[pwd(), pwd()]")
    assert not accepts(named, tok, "hello") and not accepts(named, tok, '[echo(s="x")]')
    none = G.compile_tools(tok, TOOLS, tool_choice="none", backend=backend, tool_format="pythonic")
    assert accepts(none, tok, "hello") and not accepts(none, tok, "[pwd()]")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tools_and_schemas_it_cannot_write_are_refused_with_the_reason(backend, bpe_engine):
    tok = bpe_engine.tokenizer
    cases = {
        "'my-tool' is not a Python identifier": {"name": "my-tool", "parameters": {"type": "object"}},
        "parameter 'class' is not a Python identifier": {"name": "f", "parameters": {
            "type": "object", "properties": {"class": {"type": "string"}}}},
        "uses pattern, which the pythonic format's grammar does not enforce": {"name": "f", "parameters": {
            "type": "object", "properties": {"p": {"type": "string", "pattern": "^a$"}}}},
    }
    for why, fn in cases.items():
        with pytest.raises(G.GrammarError, match=why):
            G.compile_tools(tok, [{"type": "function", "function": fn}], backend=backend, tool_format="pythonic")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_backends_build_the_formats_own_grammar(backend, bpe_engine):
    G.clear_cache()
    grammar = G.compile_tools(bpe_engine.tokenizer, TOOLS, tool_choice="required", backend=backend,
                              tool_format="pythonic")
    G.clear_cache()
    assert accepts(grammar, bpe_engine.tokenizer, '[echo(s="x"), pwd()]')


# ---- the parser -----------------------------------------------------------------------------------------
ANY = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    k: {} for k in ("a", "b", "c", "d", "e")}, "additionalProperties": False}}}


def test_the_parser_reads_pythons_own_spellings():
    cases = {
        "[f()]": {},
        "[f(a=[1, [2, {'k': (3, 4)}]], b={\"x\": {'y': None}})]": {"a": [1, [2, {"k": [3, 4]}]],
                                                                     "b": {"x": {"y": None}}},
        "[f(a='it\\'s', b=\"say \\\"hi\\\"\", c='\\\\', d=\"\\n\")]": {"a": "it's", "b": 'say "hi"', "c": "\\",
                                                                        "d": "\n"},
        "[f(a=-3, b=-0.5, c=1e3, d=+2, e=0x1F)]": {"a": -3, "b": -0.5, "c": 1000.0, "d": 2, "e": 31},
        "[f(a=True, b=False, c=None)]": {"a": True, "b": False, "c": None},
        "  [ f ( a = 1 ) , ]  ": {"a": 1},
        "[f(a='x' 'y')]": {"a": "xy"},
    }
    for text, arguments in cases.items():
        out = parse_tool_calls(text, None, [ANY], tool_format="pythonic", finish_reason="stop")
        assert out.error is None and [(c.name, c.arguments) for c in out.calls] == [("f", arguments)], text
    for text in ["[]", "[ ]"]:
        assert parse_tool_calls(text, None, [ANY], tool_format="pythonic", finish_reason="stop") == \
            type(out)(content="", calls=[], truncated=False, error=None)
    stopped = parse_tool_calls("[f(a=1), f(b=2)", None, [ANY], tool_format="pythonic", finish_reason="stop")
    assert stopped.error is None and len(stopped.calls) == 2  # BFCL's own decoder adds a missing "]" too
    for text in ["hello", "[Note] no calls", "[1, 2]", "{'f': 1}", "Sure: [f(a=1)]", "[f[0](a=1)]", "[ f ]"]:
        out = parse_tool_calls(text, None, [ANY], tool_format="pythonic", finish_reason="stop")
        assert (out.content, out.calls, out.error) == (text, [], None)


def test_malformed_calls_are_errors_that_say_what_is_wrong_and_never_calls():
    cases = {
        "[f(1)]": "tool call f has positional arguments; write each one as name=value",
        "[f(**{'a': 1})]": "tool call f unpacks **",
        "[f(a=x)]": "argument a of f is not a Python literal: 'x'",
        "[f(a=true)]": "argument a of f is not a Python literal: 'true'",
        "[f(a=g(b=1))]": "argument a of f is not a Python literal",
        "[f(a=1+2j)]": "a complex is not a JSON value",
        "[f(a={1, 2})]": "a set is not a JSON value",
        "[f(a={1: 2})]": "dict keys must be strings",
        "[f(a=b'x')]": "a bytes is not a JSON value",
        "[f(a=1, a=2)]": "argument a of f is given twice",
        "[f(a=1) f(b=2)]": "tool call is not a Python call (invalid syntax)",
        "[f(a=(1]]": "tool call is not a Python call",
        "[f(a=1),, f()]": "expected a tool call before ','",
        "[f(a=1)] and more": "unexpected text after the tool calls: 'and more'",
        "[g(a=1)]": "unknown tool 'g'; available: f",
        "[f(z=1)]": "arguments of f do not match its schema",
        "[f(a=1), g[0](b=1)]": "tool call must start with the function's name",
        "[f(a=1), 3]": "tool call must be name(arg=value, ...), got '3'",
        "[f(a='" + "[" * 200 + "')]": None,  # deep brackets inside a string are text
        "[f(a=" + "[" * 2000 + "]" * 2000 + ")]": "tool call is not a Python call (too many nested parentheses)",
    }
    for text, why in cases.items():
        out = parse_tool_calls(text, None, [ANY], tool_format="pythonic", finish_reason="stop")
        if why is None:
            assert out.error is None and len(out.calls) == 1
            continue
        assert not out.truncated and why in (out.error or ""), (text, out.error)
        assert all(c.name == "f" for c in out.calls) and len(out.calls) <= 1
    opened = parse_tool_calls("[f(a='x", None, [ANY], tool_format="pythonic", finish_reason="stop")
    assert opened.calls == [] and "never closed" in opened.error
    cut = parse_tool_calls("[f(a=1), f(a='x", None, [ANY], tool_format="pythonic", finish_reason="length")
    assert cut.truncated and cut.error is None


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from("[](){}'\"\\,=: fa1.-_*\nTrueNon"), max_size=40),
       stopped=st.booleans())
def test_the_parser_never_raises(text, stopped):
    out = parse_tool_calls(text, None, [ANY], tool_format="pythonic", finish_reason="stop" if stopped else "length")
    assert all(c.name == "f" and validate(c.arguments, ANY["function"]["parameters"]) is None for c in out.calls)


# ---- streaming ----------------------------------------------------------------------------------------------
def cuts(text: str, points: list[int]) -> list[str]:
    idx = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in zip(idx, idx[1:])]


@settings(max_examples=80, deadline=None)
@given(calls=st.lists(st.one_of(
    st.tuples(st.just("echo"), st.fixed_dictionaries({"s": STRINGS}, optional={"t": st.lists(STRINGS, max_size=2)})
              .map(lambda d: {k: d[k] for k in ("s", "t") if k in d})),
    st.tuples(st.just("pwd"), st.just({}))), min_size=1, max_size=3),
    points=st.lists(st.integers(0, 400), max_size=12))
def test_streamed_calls_start_at_their_name_and_their_arguments_are_json(calls, points):
    text = FMT.render([(n, a, None) for n, a in calls])
    # where each call's "name(" ends and where the call itself ends
    ends = [len("[" + "".join(pythonic.call_text(n, a) + ", " for n, a in calls[:i])) + len(calls[i][0]) + 1
            for i in range(len(calls))]
    done = [e - len(calls[i][0]) - 1 + len(pythonic.call_text(*calls[i])) for i, e in enumerate(ends)]
    stream = CallStream(FMT)
    pieces, seen = [], 0
    for part in cuts(text, points):
        got = stream.feed(part)
        seen += len(part)
        for p in got:  # a call starts once its "name(" is read (not earlier), its arguments once it is over
            if isinstance(p, CallStart):
                assert seen >= ends[p.index]
            if isinstance(p, CallArgs):
                assert seen > done[p.index]
        pieces += got
    pieces += stream.finish()
    assert [p.name for p in pieces if isinstance(p, CallStart)] == [n for n, _ in calls]
    args = [p for p in pieces if isinstance(p, CallArgs)]
    assert [json.loads(a.text) for a in args] == [a for _, a in calls]
    assert [a.index for a in args] == list(range(len(calls)))
    assert not [p for p in pieces if isinstance(p, Content)]


def test_a_call_starts_as_soon_as_its_name_is_read():
    stream = CallStream(FMT)
    assert stream.feed("[ec") == [] and stream.feed("ho") == []
    (start,) = stream.feed("(s=")
    assert (start.index, start.name) == (0, "echo") and start.id.startswith("call_")
    assert stream.feed('"x")') == []  # the call is over at the "," or "]" that follows it
    assert [type(p) for p in stream.feed("]")] == [CallArgs]


def test_a_stream_cut_inside_a_call_starts_it_and_gives_back_no_arguments():
    stream = CallStream(FMT)
    pieces = stream.feed('[echo(s="a), b') + stream.finish(stopped=False)
    assert [type(p) for p in pieces] == [CallStart] and pieces[0].name == "echo"
    assert stream.splitter.truncated


# ---- choosing the format --------------------------------------------------------------------------------
def test_a_turn_ends_with_the_familys_own_end_of_turn_token(bpe_engine):
    tok = bpe_engine.tokenizer  # ChatML: <|im_end|>, not <|endoftext|>
    assert G.turn_end_ids(tok, FMT) == (tok.convert_tokens_to_ids("<|im_end|>"),) != G.eos_ids(tok)


@pytest.mark.slow  # builds the tiny Llama 3 model (128k vocabulary)
def test_a_llama3_turn_ends_with_eot(llama3_engine):
    tok = llama3_engine.tokenizer
    assert G.turn_end_ids(tok, FMT) == (tok.convert_tokens_to_ids("<|eot_id|>"),)


def test_it_is_picked_only_by_name_or_from_a_template_that_spells_it_out():
    from tinygpt.runtime.chat_template import CHAT_TEMPLATE

    assert tool_formats.get("pythonic") is FMT
    llama_pythonic = ("{{- 'If you decide to invoke any of the function(s), you MUST put it in the format of "
                      "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]' }}")
    assert tool_formats.detect(llama_pythonic) is FMT
    assert tool_formats.detect(CHAT_TEMPLATE).name == "hermes" and tool_formats.detect("").name == "json"


# ---- the agent --------------------------------------------------------------------------------------------
def test_the_agent_lists_the_tools_itself_only_where_the_template_shows_none(plain_engine, tiny_engine):
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.policy import ScriptedPolicy
    from tinygpt.tools.catalog import open_filesystem
    from tinygpt.tools.fs_tools import fs_toolset
    from tinygpt.traces.atraj import Message, ToolResult

    def first_turn(engine, **config):
        tools = fs_toolset(open_filesystem("fs:virtual"), timeout_s=None)
        reply = FMT.render([("ls", {}, None), ("cd", {"folder": "docs)]"}, None)])
        agent = Agent(engine, tools, AgentConfig(tool_format="pythonic", **config),
                      policy=ScriptedPolicy(engine, [reply, "done"]))
        return agent, list(agent.run("list it"))

    agent, events = first_turn(plain_engine, system="Be brief.")  # a ChatML template that knows no tools
    (system,) = [e for e in events if isinstance(e, Message) and e.role == "system"]
    assert system.content == pythonic.system_prompt(agent.tools) + "\n\nBe brief."
    assert '"name": "ls"' in system.content and system.content in plain_engine.tokenizer.decode(agent.transcript.ids)
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.name for r in results] == ["ls", "cd"] and "docs)]" in results[1].content
    _, events = first_turn(plain_engine, template_tools=False)  # the caller lists them (BFCL's prompting mode)
    assert not [e for e in events if isinstance(e, Message) and e.role == "system"]
    agent, events = first_turn(tiny_engine)  # tinygpt's template lists the tools in its own system block
    assert not [e for e in events if isinstance(e, Message) and e.role == "system"]
    assert "<tools>" in tiny_engine.tokenizer.decode(agent.transcript.ids)
