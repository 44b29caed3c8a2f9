"""The constrained-generation bar with random-weight models (temperature 1, a new seed per generation):
no returned call fails to parse or validate, `none` never calls, `required`/named always do, a call cut off
by the token budget is reported as truncated and never returned, and outputs are byte-exact template text.

Default run: a few dozen generations per mode; `-m slow`: 1,000 per mode on the tiny BPE model and 50 per
mode on the real Qwen vocabulary. In auto mode every other run makes `<tool_call>` the likeliest token
wherever the grammar allows it, so calls are exercised (the grammar still decides everything after that).
"""
import math
import time

import mlx.core as mx
import pytest

from tinygpt.runtime import grammar as G
from tinygpt.runtime.grammar_schema import validate
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import decode_output, parse_tool_calls
from tinygpt.runtime.tool_formats import hermes


def call_text(name: str, arguments: dict) -> str:
    """One call as the Hermes format (tinygpt's own chat template) writes it."""
    return hermes.FORMAT.render([(name, arguments, None)])


pytestmark = pytest.mark.usefixtures("one_blas_thread")

S6 = {"type": "string", "maxLength": 6}
TOOLS = [
    {"type": "function", "function": {"name": "cp", "parameters": {
        "type": "object", "properties": {"source": S6, "destination": S6},
        "required": ["source", "destination"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ls", "parameters": {
        "type": "object", "properties": {"a": {"type": "boolean"}}, "additionalProperties": False}}},
    {"type": "function", "function": {"name": "tail", "parameters": {
        "type": "object", "properties": {"file": {"enum": ["a.txt", "notes.md"]},
                                         "lines": {"type": "integer", "minimum": 0, "maximum": 50}},
        "required": ["file"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "grep", "parameters": {
        "type": "object", "properties": {"pattern": S6, "files": {"type": "array", "items": S6, "maxItems": 2}},
        "required": ["pattern", "files"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pwd", "parameters": {"type": "object", "properties": {}}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
NAMED = {"type": "function", "function": {"name": "tail"}}
CONFIGS = [("none", True), ("auto", True), ("auto", False), ("required", True), ("required", False),
           ("named", True)]
MAX_TOKENS = {"none": 40, "auto": 64, "required": 96, "named": 64}


def nudge(token_id: int):
    """Make `token_id` likelier than all other tokens together (~95%) wherever the grammar allows it."""
    def lift(tokens, logits):
        top = logits.max() + math.log(logits.shape[-1]) + 3.0
        return mx.where(mx.arange(logits.shape[-1]) == token_id, top, logits)
    return lift


def problems_of(parsed, proc, result, mode, parallel, text) -> list[str]:
    """Every rule the bar states, checked on one generation."""
    bad = []
    stopped = result.finish_reason == "stop"
    if proc.error:
        bad.append(f"grammar error: {proc.error[:200]}")
    if parsed.error:
        bad.append(f"parse error: {parsed.error}")
    for c in parsed.calls:
        err = validate(c.arguments, SCHEMAS[c.name]) if c.name in SCHEMAS else "unknown tool"
        if err:
            bad.append(f"returned call {c.name} fails validation: {err}")
    if mode == "none" and (parsed.calls or hermes.OPEN in text or parsed.truncated):
        bad.append("mode none produced a call")
    if mode in ("required", "named") and (parsed.content or (stopped and not parsed.calls)):
        bad.append("mode required/named produced no call or produced text")
    if mode == "named" and any(c.name != "tail" for c in parsed.calls):
        bad.append("named mode called another tool")
    if (mode == "named" or not parallel) and len(parsed.calls) > 1:
        bad.append("more than one call without parallel calls")
    if parsed.truncated and (stopped or proc.accepted(result.output_ids)):
        bad.append("truncated although the output is complete")
    if stopped and not proc.accepted(result.output_ids):
        bad.append("stopped on EOS outside an accepting state")
    if stopped and parsed.calls:
        want = (parsed.content + "\n" if parsed.content else "") + "\n".join(
            call_text(c.name, c.arguments) for c in parsed.calls)
        if text != want:
            bad.append(f"not template-exact: {text!r} != {want!r}")
    return bad


def run_many(engine, mode, parallel, n, *, seed0=0, backend="llguidance"):
    """n constrained generations; returns (counts, problems)."""
    tok = engine.tokenizer
    grammar = G.compile_tools(tok, TOOLS, tool_choice=NAMED if mode == "named" else mode,
                              parallel_tool_calls=parallel, backend=backend)
    prompt = engine.encode_chat([{"role": "user", "content": "copy a.txt to b.txt"}], tools=TOOLS)
    opener = tok.convert_tokens_to_ids(hermes.OPEN)
    counts = dict(generations=0, with_calls=0, calls=0, truncated=0, stopped=0)
    problems = []
    for seed in range(seed0, seed0 + n):
        proc = grammar.processor()
        lift = mode == "auto" and isinstance(opener, int) and seed % 2 == 0  # half the auto runs
        extra = [nudge(opener)] if lift else []
        result = engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS[mode], seed=seed),
                                 logits_processors=extra + [proc])
        parsed = parse_tool_calls(result.output_ids, tok, TOOLS)
        text, _ = decode_output(result.output_ids, tok)
        for p in problems_of(parsed, proc, result, mode, parallel, text):
            problems.append(f"seed {seed}: {p}; text={text!r}")
        counts["generations"] += 1
        counts["with_calls"] += bool(parsed.calls)
        counts["calls"] += len(parsed.calls)
        counts["truncated"] += parsed.truncated
        counts["stopped"] += result.finish_reason == "stop"
    return counts, problems


def check_counts(mode, counts, n):
    assert counts["generations"] == n
    if mode in ("required", "named"):  # every output that ended on its own holds calls
        assert counts["with_calls"] >= counts["stopped"] > 0
    if mode == "auto":  # the nudge makes calls common; text-only outputs happen too
        assert 0 < counts["with_calls"] < n or n < 10


@pytest.mark.parametrize("mode, parallel", CONFIGS)
def test_constrained_generations_tiny_bpe(mode, parallel, bpe_engine):
    n = 10
    counts, problems = run_many(bpe_engine, mode, parallel, n)
    assert problems == []
    check_counts(mode, counts, n)


@pytest.mark.parametrize("mode, parallel", [("auto", True), ("required", True)])
def test_constrained_generations_real_vocab(mode, parallel, qwen_engine):
    counts, problems = run_many(qwen_engine, mode, parallel, 4)
    assert problems == []
    assert counts["with_calls"] > 0


@pytest.mark.parametrize("mode, parallel", [("none", True), ("auto", True), ("required", False)])
def test_constrained_generations_text_trigger_vocab(mode, parallel, texttag_engine):
    counts, problems = run_many(texttag_engine, mode, parallel, 6)
    assert problems == []


@pytest.mark.parametrize("mode, parallel", [("auto", True), ("required", True), ("named", True)])
def test_constrained_generations_outlines_backend(mode, parallel, bpe_engine):
    counts, problems = run_many(bpe_engine, mode, parallel, 6, backend="outlines")
    assert problems == []


def test_budget_cuts_are_truncated_never_calls(bpe_engine):
    grammar = G.compile_tools(bpe_engine.tokenizer, TOOLS, tool_choice="required")
    prompt = bpe_engine.encode_chat([{"role": "user", "content": "hi"}], tools=TOOLS)
    truncated = 0
    for seed in range(12):
        proc = grammar.processor()
        r = bpe_engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=10, seed=seed),
                                logits_processors=[proc])
        parsed = parse_tool_calls(r.output_ids, bpe_engine.tokenizer, TOOLS)
        if r.finish_reason == "length" and not proc.accepted(r.output_ids):
            assert parsed.truncated and parsed.error is None
            truncated += 1
        assert all(validate(c.arguments, SCHEMAS[c.name]) is None for c in parsed.calls)
    assert truncated >= 6  # 10 tokens rarely hold a whole call


def test_json_response_format_outputs_parse_and_validate(bpe_engine):
    import json

    schema = {"type": "object", "properties": {"city": S6, "days": {"type": "integer", "minimum": 1, "maximum": 7},
                                               "metric": {"type": "boolean"}},
              "required": ["city", "days"]}
    grammar = G.compile_json(bpe_engine.tokenizer, schema)
    prompt = bpe_engine.encode_chat([{"role": "user", "content": "weather?"}])
    finished = 0
    for seed in range(12):
        proc = grammar.processor()
        r = bpe_engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=48, seed=seed),
                                logits_processors=[proc])
        if r.finish_reason == "stop":
            value = json.loads(decode_output(r.output_ids, bpe_engine.tokenizer)[0])
            assert validate(value, schema) is None and proc.accepted(r.output_ids)
            finished += 1
    assert finished >= 6


@pytest.mark.slow
@pytest.mark.parametrize("mode, parallel", CONFIGS)
def test_thousand_constrained_generations_tiny_bpe(mode, parallel, bpe_engine):
    t0 = time.perf_counter()
    counts, problems = run_many(bpe_engine, mode, parallel, 1000, seed0=10_000)
    print(f"\n[grammar-bar] bpe {mode} parallel={parallel}: {counts} in {time.perf_counter() - t0:.0f}s")
    assert problems == [], problems[:5]
    check_counts(mode, counts, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("mode, parallel", CONFIGS)
def test_fifty_constrained_generations_real_vocab(mode, parallel, qwen_engine):
    t0 = time.perf_counter()
    counts, problems = run_many(qwen_engine, mode, parallel, 50, seed0=20_000)
    print(f"\n[grammar-bar] qwen {mode} parallel={parallel}: {counts} in {time.perf_counter() - t0:.0f}s")
    assert problems == [], problems[:5]
    check_counts(mode, counts, 50)
