"""Engine bar: incremental prefill == scratch prefill, KV save/load, refusal of foreign caches, exact ids."""
import re
import os

import mlx.core as mx
import numpy as np
import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.kv_cache import KVCacheError
from tinygpt.runtime.models import ModelLoadError, load
from tinygpt.runtime.presets import InitSpec, init_model
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.transcript import Transcript


def scratch_logits(engine, ids):
    return engine.prefill(ids, engine.new_session())


def test_incremental_prefill_equals_scratch_over_five_turns_with_divergent_edit(tiny_engine):
    rng = np.random.default_rng(0)
    session = tiny_engine.new_session()
    ids = tiny_engine.encode_chat([{"role": "user", "content": "list my files"}])
    for turn in range(5):
        if turn == 3:  # divergent edit: change a token in the middle of the history
            ids = list(ids)
            ids[len(ids) // 2] = (ids[len(ids) // 2] + 1) % 600
        got = tiny_engine.prefill(ids, session)
        want = scratch_logits(tiny_engine, ids)
        assert session.ids == list(ids)
        assert session.offset() == len(ids)
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-4, rtol=1e-4)
        ids = list(ids) + rng.integers(0, 600, size=7 + turn).tolist()


def test_generation_reuses_session_and_prefills_only_the_suffix(tiny_engine):
    s = tiny_engine.new_session()
    p1 = tiny_engine.encode_chat([{"role": "user", "content": "hello"}])
    r1 = tiny_engine.generate(p1, SamplingParams(max_tokens=6), session=s)
    assert s.ids == p1 + r1.output_ids and s.offset() == len(s.ids)
    p2 = s.ids + tiny_engine.encode("\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n")
    r2 = tiny_engine.generate(p2, SamplingParams(max_tokens=6), session=s)
    assert r2.cached_tokens == len(p1) + len(r1.output_ids)
    assert r2.prefill_tokens == len(p2) - r2.cached_tokens
    fresh = tiny_engine.generate(p2, SamplingParams(max_tokens=6), session=tiny_engine.new_session())
    assert fresh.output_ids == r2.output_ids
    np.testing.assert_allclose(fresh.logprobs, r2.logprobs, atol=1e-4)


def test_prefix_cache_across_requests_reports_cached_tokens(tiny_engine):
    ids = tiny_engine.encode_chat([{"role": "user", "content": "a long shared system prefix " * 5}])
    first = tiny_engine.generate(ids, SamplingParams(max_tokens=4))
    second = tiny_engine.generate(ids, SamplingParams(max_tokens=4))
    assert second.cached_tokens == len(ids) - 1
    assert first.output_ids == second.output_ids


def test_logprobs_match_model_distribution(tiny_engine):
    ids = tiny_engine.encode_chat([{"role": "user", "content": "x"}])
    r = tiny_engine.generate(ids, SamplingParams(max_tokens=1, top_logprobs=3))
    logits = scratch_logits(tiny_engine, ids)
    lp = logits - mx.logsumexp(logits)
    assert r.output_ids[0] == int(mx.argmax(logits).item())
    assert r.logprobs[0] == pytest.approx(float(lp[r.output_ids[0]].item()), abs=1e-4)
    assert r.top_logprobs[0][0][0] == r.output_ids[0] and len(r.top_logprobs[0]) == 3


def test_save_load_round_trip_gives_identical_next_token_logits(tiny_engine, tmp_path):
    s = tiny_engine.new_session()
    ids = tiny_engine.encode_chat([{"role": "user", "content": "remember this"}])
    tiny_engine.generate(ids, SamplingParams(max_tokens=5), session=s)
    path = tiny_engine.save_session(s, tmp_path / "kv")
    loaded = tiny_engine.load_session(path, how="file")  # the file's own KV: bit-exact
    assert loaded.ids == s.ids
    nxt = s.ids + tiny_engine.encode("\n<|im_start|>user\nok<|im_end|>\n")
    a = tiny_engine.prefill(nxt, s)
    b = tiny_engine.prefill(nxt, loaded)
    assert np.array_equal(np.array(a), np.array(b))


def test_cache_from_another_model_is_refused(tiny_engine, tmp_path):
    other = Engine(load(str(init_model(tmp_path / "other", InitSpec(seed=1)))))
    s = other.new_session()
    other.prefill(other.encode("hello world"), s)
    path = other.save_session(s, tmp_path / "foreign")
    with pytest.raises(KVCacheError, match="another model"):
        tiny_engine.load_session(path)


def test_corrupt_cache_is_a_clear_error_and_nothing_is_overwritten(tiny_engine, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(KVCacheError, match="not a readable KV cache"):
        tiny_engine.load_session(bad)
    assert bad.read_bytes() == b"not a safetensors file"
    good = tiny_engine.new_session()
    tiny_engine.prefill(tiny_engine.encode("keep me"), good)
    path = tiny_engine.save_session(good, tmp_path / "good")
    before = path.read_bytes()
    good.cache = [object()]  # unserialisable: the save must fail without touching the old file
    with pytest.raises(Exception):
        tiny_engine.save_session(good, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_model_paths_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no model directory"):
        load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="no \\*.safetensors weights"):
        load(str(broken))
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="has no tokenizer"):
        load(str(broken))
    (broken / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="could not load"):
        load(str(broken))


def test_prompt_ids_equal_encoding_of_rendered_prompt(tiny_engine):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is in <tools>?"}]
    ids = tiny_engine.encode_chat(msgs)
    text = tiny_engine.render(msgs)
    assert ids == list(tiny_engine.tokenizer._tokenizer.encode(text, add_special_tokens=False))
    r = tiny_engine.generate(ids, SamplingParams(max_tokens=3))
    assert r.prompt_ids == ids


def test_transcript_appends_equal_the_encoding_of_the_whole_rendered_conversation(tiny_engine):
    tools = [{"type": "function", "function": {"name": "ls", "description": "list",
                                               "parameters": {"type": "object", "properties": {}}}}]
    t = Transcript(engine=tiny_engine, tools=tools)
    t.add_messages({"role": "user", "content": "show files"})
    reply = '<tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call><|im_end|>'
    t.add_output(tiny_engine.encode(reply), {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "ls", "arguments": {}}}]}, stopped_on_eos=True)
    t.add_messages({"role": "tool", "content": '{"current_directory_content": ["a.txt"]}'})
    t.add_output(tiny_engine.encode("Here: a.txt<|im_end|>"), {"role": "assistant", "content": "Here: a.txt"},
                 stopped_on_eos=True)
    t.add_messages({"role": "user", "content": "thanks"})
    whole = tiny_engine.render(t.messages, tools)
    assert t.ids == tiny_engine.encode(whole)


def test_empty_or_out_of_vocab_prompt_is_rejected(tiny_engine):
    with pytest.raises(ValueError, match="empty"):
        tiny_engine.generate([], SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="outside"):
        tiny_engine.generate([10**7], SamplingParams(max_tokens=2))


def test_init_model_refuses_to_overwrite(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    from tinygpt.runtime.presets import InitModelError

    with pytest.raises(InitModelError, match="not empty"):
        init_model(d)
    assert os.listdir(d) == ["keep.txt"]


# ---- interruptions (Ctrl-C lands anywhere; the session must stay consistent) ----------------------------------

NO_STOP = SamplingParams(max_tokens=24, stop_token_ids=())  # never stops early: a fixed number of steps


def interrupt_in_layer(session, layer, at):
    """Raise KeyboardInterrupt from layer `layer`'s cache update on its `at`-th call, as a Ctrl-C landing
    mid-forward (the layers before it have taken the token, the rest have not)."""
    cache = session.cache[layer]
    original, calls = cache.update_and_fetch, []

    def update(keys, values):
        calls.append(1)
        if len(calls) == at:
            del cache.update_and_fetch  # back to the class method
            raise KeyboardInterrupt
        return original(keys, values)

    cache.update_and_fetch = update


def assert_consistent(session):
    assert [c.offset for c in session.cache] == [len(session.ids)] * len(session.cache)


def test_ctrl_c_during_prefill_raises_keyboardinterrupt_and_keeps_the_session(tiny_engine):
    s = tiny_engine.new_session()
    p1 = tiny_engine.encode_chat([{"role": "user", "content": "hello"}])
    tiny_engine.generate(p1, SamplingParams(max_tokens=4), session=s)
    before = list(s.ids)
    p2 = before + tiny_engine.encode("\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")
    interrupt_in_layer(s, 0, 1)  # the first forward of the new suffix: no layer has taken it
    with pytest.raises(KeyboardInterrupt):  # not "cache holds N tokens but M were recorded"
        tiny_engine.generate(p2, NO_STOP, session=s)
    assert s.ids == before
    assert_consistent(s)
    again = tiny_engine.generate(p2, NO_STOP, session=s)
    fresh = tiny_engine.generate(p2, NO_STOP, session=tiny_engine.new_session())
    assert again.cached_tokens == len(before) and again.output_ids == fresh.output_ids


def test_ctrl_c_between_layers_while_decoding_realigns_every_layer(tiny_engine):
    s = tiny_engine.new_session()
    prompt = tiny_engine.encode_chat([{"role": "user", "content": "go on"}])
    interrupt_in_layer(s, 1, 8)  # a decode step: layer 0 has taken the token, layer 1 and later have not
    gen = tiny_engine.stream(prompt, NO_STOP, session=s)
    with pytest.raises(KeyboardInterrupt):
        for _ in gen:
            pass
    out = gen.result.output_ids
    assert 0 < len(out) < NO_STOP.max_tokens
    assert s.ids == prompt + out
    assert_consistent(s)
    nxt = s.ids + tiny_engine.encode("\n<|im_start|>user\nok<|im_end|>\n")
    np.testing.assert_allclose(np.array(tiny_engine.prefill(nxt, s)), np.array(scratch_logits(tiny_engine, nxt)),
                               atol=1e-4, rtol=1e-4)


def test_closing_a_generation_early_settles_the_session_at_once(tiny_engine):
    s = tiny_engine.new_session()
    prompt = tiny_engine.encode_chat([{"role": "user", "content": "stop me"}])
    gen = tiny_engine.stream(prompt, NO_STOP, session=s)
    for i, _ in enumerate(gen):
        if i == 2:
            break
    gen.close()
    assert gen.result.output_ids and s.ids == prompt + gen.result.output_ids
    assert_consistent(s)


def test_rolled_back_turn_and_rewound_session_continue_like_a_fresh_one(tiny_engine):
    t = Transcript(engine=tiny_engine)
    s = tiny_engine.new_session()
    t.add_messages({"role": "user", "content": "first"})
    r = tiny_engine.generate(t.ids, SamplingParams(max_tokens=5), session=s)
    t.add_output(r.output_ids, {"role": "assistant", "content": r.text}, stopped_on_eos=r.finish_reason == "stop")
    kept_ids, kept_msgs = list(t.ids), [dict(m) for m in t.messages]
    mark = t.mark()
    t.add_messages({"role": "user", "content": "cancel this one"})
    gen = tiny_engine.stream(t.ids, NO_STOP, session=s)
    next(iter(gen))
    gen.close()
    t.rollback(mark)
    tiny_engine.rewind(s, t.ids)
    assert t.ids == kept_ids and t.messages == kept_msgs and s.ids == kept_ids
    assert_consistent(s)
    t.add_messages({"role": "user", "content": "second"})
    assert t.ids == tiny_engine.encode(tiny_engine.render(t.messages))  # the pending closer survived the rollback
    again = tiny_engine.generate(t.ids, NO_STOP, session=s)
    fresh = tiny_engine.generate(t.ids, NO_STOP, session=tiny_engine.new_session())
    assert again.cached_tokens == len(kept_ids) and again.output_ids == fresh.output_ids


@pytest.mark.parametrize("bad, says", [
    (dict(top_k=-3), "top_k must be >= 0"), (dict(min_p=1.5), "min_p must be in [0, 1]"),
    (dict(min_p=-0.1), "min_p must be in [0, 1]"), (dict(top_p=0.0), "top_p must be in (0, 1]"),
])
def test_sampling_params_out_of_range_are_refused_whoever_builds_them(bad, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        SamplingParams(**bad).check()
    SamplingParams(top_k=0, min_p=0.0).check()  # the defaults (off) are fine
