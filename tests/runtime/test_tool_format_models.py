"""Each tool-call format with a tiny random model of its family (real vocabulary, special tokens and chat template:
Qwen -> hermes, Llama 3 -> llama3, Mistral Nemo -> mistral, a template naming no format -> json): the format is
picked from the template; under every tool_choice mode, what the grammar lets the model write parses, validates
against the tools' schemas and is byte-exact template text; a string argument holding the format's markers
round-trips through the real tokenizer, the grammar and the parser.

Default run: a few generations per (family, mode) chosen by hypothesis; `-m slow`: 60 per (family, mode). In auto
mode every other run lifts the format's trigger tokens, so calls are exercised (the grammar decides the rest).
"""
import json
import math
import re

import mlx.core as mx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygpt.runtime import grammar as G
from tinygpt.runtime import tool_formats
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output, parse_tool_calls

pytestmark = pytest.mark.usefixtures("one_blas_thread")

S6 = {"type": "string", "maxLength": 6}
TOOLS = [
    {"type": "function", "function": {"name": "cp", "description": "copy a file", "parameters": {
        "type": "object", "properties": {"source": S6, "destination": S6},
        "required": ["source", "destination"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "tail", "description": "last lines", "parameters": {
        "type": "object", "properties": {"file": {"enum": ["a.txt", "notes.md"]},
                                         "lines": {"type": "integer", "minimum": 0, "maximum": 50}},
        "required": ["file"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "echo", "description": "say", "parameters": {
        "type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
FAMILIES = {"hermes": "qwen_engine", "llama3": "llama3_engine", "mistral": "mistral_engine", "json": "plain_engine"}
MODES = ["none", "auto", "required", "named"]
MAX_TOKENS = {"none": 24, "auto": 64, "required": 80, "named": 64}


@pytest.fixture(scope="module")
def engines(request):
    return {name: request.getfixturevalue(fixture) for name, fixture in FAMILIES.items()}


def lift(ids: list[int]):
    """Make the output start with `ids` (the trigger's tokens) wherever the grammar allows them (~95% each)."""
    step = 0

    def processor(tokens, logits):
        nonlocal step
        if step < len(ids):
            top = logits.max() + math.log(logits.shape[-1]) + 3.0
            logits = mx.where(mx.arange(logits.shape[-1]) == ids[step], top, logits)
        step += 1
        return logits
    return processor


def problems(engine, fmt, mode, seed) -> list[str]:
    """One constrained generation checked against every rule of the bar."""
    tok = engine.tokenizer
    choice = {"type": "function", "function": {"name": "tail"}} if mode == "named" else mode
    grammar = G.compile_tools(tok, TOOLS, tool_choice=choice)
    assert grammar.format == fmt  # picked from the model's chat template
    proc = grammar.processor()
    trigger = engine.encode(fmt.trigger)
    extra = [lift(trigger)] if mode == "auto" and seed % 2 == 0 else []
    prompt = engine.encode_chat([{"role": "user", "content": "copy a.txt to b.txt"}], tools=TOOLS)
    r = engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS[mode], seed=seed),
                        logits_processors=extra + [proc])
    parsed = parse_tool_calls(r.output_ids, tok, TOOLS, tool_format=grammar.format, finish_reason=r.finish_reason)
    text, _ = decode_output(r.output_ids, tok)
    stopped = r.finish_reason == "stop"
    bad = [f"grammar error: {proc.error[:200]}"] if proc.error else []
    bad += [f"parse error: {parsed.error}"] if parsed.error else []
    bad += [f"{c.name} fails its schema" for c in parsed.calls if validate(c.arguments, SCHEMAS[c.name])]
    if mode == "none" and (parsed.calls or parsed.truncated):
        bad.append("mode none produced a call")
    if mode in ("required", "named") and (parsed.content or (stopped and not parsed.calls)):
        bad.append("mode required/named produced no call or produced text")
    if mode == "named" and any(c.name != "tail" for c in parsed.calls):
        bad.append("named mode called another tool")
    if (not fmt.parallel or mode == "named") and len(parsed.calls) > 1:
        bad.append("more than one call where one is the most")
    if stopped and not proc.accepted(r.output_ids):
        bad.append("stopped on EOS outside an accepting state")
    if parsed.truncated and (stopped or proc.accepted(r.output_ids)):
        bad.append("truncated although the output is complete")
    if stopped and parsed.calls:
        want = fmt.render([(c.name, c.arguments, c.id) for c in parsed.calls], parsed.content)
        if text != want:
            bad.append(f"not template-exact: {text!r} != {want!r}")
    return [f"{fmt.name} {mode} seed {seed}: {b}; text={text!r}" for b in bad]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_what_the_grammar_lets_a_model_of_the_family_write_parses_and_validates(family, mode, seed, engines):
    assert problems(engines[family], tool_formats.get(family), mode, seed) == []


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_sixty_generations_per_family_and_mode(family, mode, engines):
    engine, fmt = engines[family], tool_formats.get(family)
    bad = [p for seed in range(30_000, 30_060) for p in problems(engine, fmt, mode, seed)]
    assert bad == [], bad[:5]


@pytest.mark.parametrize("family", FAMILIES)
def test_calls_do_happen_so_the_property_above_checks_them(family, engines):
    engine, fmt = engines[family], tool_formats.get(family)
    grammar = G.compile_tools(engine.tokenizer, TOOLS, tool_choice="required")
    prompt = engine.encode_chat([{"role": "user", "content": "copy a.txt to b.txt"}], tools=TOOLS)
    finished = 0
    for seed in range(4):
        r = engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS["required"], seed=seed),
                            logits_processors=[grammar.processor()])
        parsed = parse_tool_calls(r.output_ids, engine.tokenizer, TOOLS, tool_format=fmt)
        finished += r.finish_reason == "stop" and bool(parsed.calls) and parsed.error is None
    assert finished >= 1


ARCH = {"hermes": ("qwen3", ["<|endoftext|>", "<|im_end|>"]), "json": ("qwen3", ["<|endoftext|>", "<|im_end|>"]),
        "llama3": ("llama", ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]), "mistral": ("mistral", ["</s>"])}


def test_each_family_template_picks_its_format_and_names_its_special_tokens(engines):
    for name, engine in engines.items():
        config = json.loads((engine.loaded.path / "config.json").read_text())
        model_type, eos = ARCH[name]
        hf_eos = [G.hf_tokenizer(engine.tokenizer).convert_tokens_to_ids(t) for t in eos]
        assert config["model_type"] == model_type and sorted(config["eos_token_id"]) == sorted(hf_eos)
        fmt = tool_formats.detect(engine.tokenizer.chat_template)
        assert fmt.name == name
        hf = G.hf_tokenizer(engine.tokenizer)
        added = {t.content for t in hf.added_tokens_decoder.values()}
        assert set(fmt.markers) <= added and set(fmt.stop_tokens) <= added | {"<|endoftext|>"}
        assert set(G.eos_ids(engine.tokenizer)) >= {hf.convert_tokens_to_ids(t) for t in fmt.stop_tokens if t in added}


def ordinary_ids(hf, text: str) -> list[int]:
    """Ids for `text` spelled with ordinary tokens only: each added token's text is split after its first character
    (as a model writes marker text inside a JSON string; the grammar never lets a marker token in there)."""
    specials = sorted({t.content for t in hf.added_tokens_decoder.values()}, key=len, reverse=True)
    ids: list[int] = []
    for part in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
        for piece in ([part[:1], part[1:]] if part in specials else [part]):
            ids += hf.encode(piece, add_special_tokens=False) if piece else []
    return ids


@pytest.mark.parametrize("family", FAMILIES)
def test_a_string_holding_the_formats_markers_round_trips_through_tokens_grammar_and_parser(family, engines):
    engine, fmt = engines[family], tool_formats.get(family)
    hf = G.hf_tokenizer(engine.tokenizer)
    tricky = "".join([*fmt.markers, fmt.trigger, fmt.call[1], fmt.sep, fmt.section[1], *fmt.prefixes, '"}]']) + "é"
    call = ("echo", {"s": tricky}, "aB3dE5gH9")
    text = fmt.render([call])
    args = json.dumps(call[1], ensure_ascii=False)
    before, after = text.split(args)
    ids = engine.encode(before) + ordinary_ids(hf, args) + engine.encode(after)
    assert engine.tokenizer.decode(ids, skip_special_tokens=False) == text
    for backend in ("llguidance", "outlines"):
        # echo alone: the outlines backend refuses maxLength bounds on a 150k vocabulary (grammar_outlines.MAX_WORK)
        grammar = G.compile_tools(engine.tokenizer, TOOLS[2:], tool_choice="required", backend=backend)
        assert grammar.processor().accepted(ids + [grammar.eos_ids[0]]), backend
    out = parse_tool_calls(ids + [grammar.eos_ids[0]], engine.tokenizer, TOOLS)
    assert out.error is None and [(c.name, c.arguments) for c in out.calls] == [call[:2]]


def allowed_after(grammar, ids: list[int]) -> list[int]:
    """The ids the grammar allows after `ids`."""
    proc = grammar.processor()
    logits = mx.zeros((grammar.n_tokens,))
    out = proc(mx.array([0]), logits)
    for t in ids:
        out = proc(mx.array([t]), logits)
    assert proc.error is None, proc.error
    return [i for i, ok in enumerate((out > -mx.inf).tolist()) if ok]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["const", "enum", "pattern", "key"])
def test_a_forced_string_spelling_a_special_token_is_written_as_text(family, how, engines):
    """A schema that allows one string only, the text of a special token (the format's markers, end of turn):
    the grammar must allow that text's ordinary tokens, never the special token (llguidance's forcing would)."""
    engine, fmt = engines[family], tool_formats.get(family)
    hf = G.hf_tokenizer(engine.tokenizer)
    specials = {t.content for t in hf.added_tokens_decoder.values()}
    eos = [hf.convert_ids_to_tokens(i) for i in G.eos_ids(engine.tokenizer)]
    texts = [t for t in dict.fromkeys([*fmt.markers, *fmt.stop_tokens, *eos]) if t in specials]
    assert texts, "the family's vocabulary has special tokens"
    for text in texts:
        value = {"const": {"const": text}, "enum": {"enum": [text]}, "key": {"type": "integer"},
                 "pattern": {"type": "string", "pattern": "^" + re.escape(text) + "$"}}[how]
        key = text if how == "key" else "s"
        tools = [{"type": "function", "function": {"name": "echo", "parameters": {
            "type": "object", "properties": {key: value}, "required": [key], "additionalProperties": False}}}]
        args = {key: 7 if how == "key" else text}
        rendered = fmt.render([("echo", args, "aB3dE5gH9")])
        arg_text = json.dumps(args, ensure_ascii=False)
        before, after = rendered.split(arg_text)
        for backend in ("llguidance", "outlines"):
            grammar = G.compile_tools(engine.tokenizer, tools, tool_choice="required", backend=backend)
            opened = engine.encode(before) + ordinary_ids(hf, arg_text[:2 if how == "key" else 7])
            allowed = allowed_after(grammar, opened)
            assert allowed and not any(hf.convert_ids_to_tokens(i) in specials for i in allowed), (backend, text)
            ids = engine.encode(before) + ordinary_ids(hf, arg_text) + engine.encode(after)
            assert grammar.processor().accepted(ids + [grammar.eos_ids[0]]), (backend, text)


@pytest.mark.parametrize("family", ["llama3", "mistral"])
def test_a_json_schema_forcing_special_token_text_allows_its_text(family, engines):
    engine, fmt = engines[family], tool_formats.get(family)
    hf = G.hf_tokenizer(engine.tokenizer)
    specials = {t.content for t in hf.added_tokens_decoder.values()}
    text = next(t for t in [*fmt.markers, hf.convert_ids_to_tokens(G.eos_ids(engine.tokenizer)[0])] if t in specials)
    for backend in ("llguidance", "outlines"):
        grammar = G.compile_json(engine.tokenizer, {"type": "object", "properties": {"s": {"const": text}},
                                                    "required": ["s"], "additionalProperties": False},
                                 backend=backend)
        allowed = allowed_after(grammar, ordinary_ids(hf, '{"s": "'))
        assert allowed and not any(hf.convert_ids_to_tokens(i) in specials for i in allowed), backend
        body = json.dumps({"s": text})
        assert grammar.processor().accepted(ordinary_ids(hf, body) + [grammar.eos_ids[0]]), backend


TURN_END = {"hermes": "<|im_end|>", "llama3": "<|eot_id|>", "mistral": "</s>"}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_constrained_turn_ends_with_the_templates_end_of_turn_token_only(family, engines):
    """Qwen has two EOS ids (<|im_end|>, <|endoftext|>); its template ends a turn with <|im_end|>, so a finished
    call may be followed by that one only: rows then train the ending the template writes."""
    engine, fmt = engines[family], tool_formats.get(family)
    hf = G.hf_tokenizer(engine.tokenizer)
    all_eos = set(G.eos_ids(engine.tokenizer))
    want = {hf.convert_tokens_to_ids(TURN_END[family])} if family in TURN_END else all_eos
    call = fmt.render([("echo", {"s": "hi"}, "aB3dE5gH9")])
    for backend in ("llguidance", "outlines"):
        grammar = G.compile_tools(engine.tokenizer, TOOLS[2:], tool_choice="required", backend=backend)
        assert set(grammar.eos_ids) == want
        assert set(allowed_after(grammar, engine.encode(call))) & all_eos == want, backend
        for other in all_eos - want:
            assert not grammar.processor().accepted(engine.encode(call) + [other]), backend
    json_grammar = G.compile_json(engine.tokenizer, {"type": "integer"})
    assert set(allowed_after(json_grammar, engine.encode("7"))) & all_eos == want
