"""Export of one episode: token-exact rows (zero drift), loss masks, chat records, dedupe text."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.traces.atraj import Reward
from tinygpt.traces.errors import TraceError
from tinygpt.traces.export import calls_with_errors, chat_record, dedupe_text, training_row
from tinygpt.traces.raw_episode import read_raw_episode
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder

# A toy tokenizer whose vocabulary has two spellings of the same text: a sampler may emit either, a canonical
# (greedy longest-match) encoder only ever the merged one. This is the ' Pantom' case of ARCHITECTURE.md.
VOCAB = {1: "<s>", 2: "<|im_end|>", 10: " Pan", 11: "tom", 12: " Pantom", 13: " ", 14: "Pantom", 20: "ok"}


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


def encode(text):
    pieces = sorted(((v, k) for k, v in VOCAB.items() if not v.startswith("<")), key=lambda p: -len(p[0]))
    ids, at = [], 0
    while at < len(text):
        piece, token = next(p for p in pieces if text.startswith(p[0], at))
        ids.append(token)
        at += len(piece)
    return ids


def test_export_is_the_recorded_ids_even_where_reencoding_differs(tmp_path, header_factory):
    sampled = [10, 11, 13, 14, 2]  # ' Pan' 'tom' ' ' 'Pantom' <|im_end|>
    assert decode(sampled) == " Pantom Pantom<|im_end|>"
    assert encode(decode(sampled[:-1])) + [2] != sampled  # the naive round trip drifts ...
    assert encode(decode(sampled[:-1])) == [12, 12]  # ... to other ids
    with Recorder(tmp_path, header_factory("drift"), fsync="none") as rec:
        rec.message("user", "say it", [1, 20])
        rec.model_call(prompt_token_ids=[1, 20, 13], output_token_ids=sampled, text=decode(sampled[:-1]),
                       finish_reason="stop", latency_s=0.1)
        rec.tool_result(call_id="x", name="ls", content=" Pantom", token_ids=[10, 11])
        rec.model_call(prompt_token_ids=[13, 10, 11, 13], output_token_ids=[20, 2], text="ok",
                       finish_reason="stop", latency_s=0.1)
        path = rec.end(Reward(value=1.0, source="test"))
    row = training_row(read_episode(path))
    assert row.input_ids == [1, 20, 13] + sampled + [13, 10, 11, 13] + [20, 2]
    assert row.loss_mask == [0, 0, 0] + [1] * 5 + [0] * 4 + [1, 1]
    assert row.tokenizer_hash == "tok-1" and row.episode_id == "drift"


def test_loss_mask_is_one_exactly_on_sampled_ids(tmp_path, episode_factory):
    path, calls = episode_factory(tmp_path, steps=3)
    row = training_row(read_episode(path))
    expected_ids, expected_mask = [], []
    for prompt, out in calls:
        expected_ids += prompt + out
        expected_mask += [0] * len(prompt) + [1] * len(out)
    assert row.input_ids == expected_ids and row.loss_mask == expected_mask


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.lists(st.integers(0, 2**32 - 1), max_size=20),
                                st.lists(st.integers(0, 2**32 - 1), max_size=20)), min_size=1, max_size=5))
def test_export_ids_always_equal_recorded_ids(tmp_path_factory, header_factory, calls):
    directory = tmp_path_factory.mktemp("prop")
    with Recorder(directory, header_factory("p"), fsync="none") as rec:
        for prompt, out in calls:
            rec.model_call(prompt_token_ids=prompt, output_token_ids=out, text="", finish_reason="stop",
                           latency_s=0.0)
        path = rec.end(Reward(value=0.0, source="prop"))
    row = training_row(read_episode(path))
    assert row.input_ids == [i for p, o in calls for i in p + o]
    assert row.loss_mask == [m for p, o in calls for m in [0] * len(p) + [1] * len(o)]


def test_error_turns_can_be_masked_but_keep_their_ids(tmp_path, header_factory):
    with Recorder(tmp_path, header_factory("err"), fsync="none") as rec:
        rec.model_call(prompt_token_ids=[1], output_token_ids=[2, 3], text="", finish_reason="tool_calls",
                       latency_s=0, tool_calls=[{"id": "a", "name": "ls", "arguments": {}}])
        rec.tool_result(call_id="a", name="ls", content="no such dir", token_ids=[4], is_error=True)
        rec.model_call(prompt_token_ids=[4, 5], output_token_ids=[6], text="", finish_reason="stop", latency_s=0)
        path = rec.end(Reward(value=0.0, source="t"))
    episode = read_episode(path)
    assert training_row(episode).loss_mask == [0, 1, 1, 0, 0, 1]
    masked = training_row(episode, mask_error_turns=True)
    assert masked.loss_mask == [0, 0, 0, 0, 0, 1] and masked.input_ids == [1, 2, 3, 4, 5, 6]


def test_error_results_mask_the_call_before_them_whatever_their_ids(tmp_path, header_factory):
    """A model that writes its own call ids (Mistral) may reuse one in a later step; an unusable call's result
    answers no id. Results belong to the call they follow."""
    same = "aB3dE5gH9"
    with Recorder(tmp_path, header_factory("ids"), fsync="none") as rec:
        for n, (call_id, fails) in enumerate([(same, False), (same, True), (None, True)]):
            calls = [{"id": call_id, "name": "ls", "arguments": {}}] if call_id else []
            rec.model_call(prompt_token_ids=[10 * n - 8, 10 * n][not n:], output_token_ids=[10 * n + 1], text="",
                           latency_s=0, finish_reason="tool_calls", tool_calls=calls)
            rec.tool_result(call_id=call_id or "", name="ls" if call_id else "invalid_call", content="r",
                            token_ids=[10 * n + 2], is_error=fails)
        rec.model_call(prompt_token_ids=[22, 30], output_token_ids=[31], text="", finish_reason="stop", latency_s=0)
        path = rec.end(Reward(value=0.0, source="t"))
    episode = read_episode(path)
    assert calls_with_errors(episode) == calls_with_errors(read_raw_episode(path)) == {1, 2}
    assert training_row(episode, mask_error_turns=True).loss_mask == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    messages = chat_record(episode).messages  # each result keeps the id of the call just before it
    assert [(m.role, m.tool_call_id or [c.id for c in m.tool_calls]) for m in messages[:4]] == [
        ("assistant", [same]), ("tool", same), ("assistant", [same]), ("tool", same)]


def test_turns_without_ids_export_as_chat_only(tmp_path, header_factory):
    with Recorder(tmp_path, header_factory("cloud"), fsync="none") as rec:
        rec.message("user", "hi")
        rec.model_call(prompt_token_ids=None, output_token_ids=None, text="hello", finish_reason="stop",
                       latency_s=1.0, token_exact=False, model="teacher")
        path = rec.end(Reward(value=1.0, source="t"))
    episode = read_episode(path)
    with pytest.raises(TraceError, match="can only be exported as chat"):
        training_row(episode)
    assert [m.content for m in chat_record(episode).messages] == ["hi", "hello"]


def test_chat_record_keeps_every_turn_and_call_in_order(tmp_path, episode_factory):
    path, _ = episode_factory(tmp_path, user="find the logs", steps=2)
    record = json.loads(__import__("msgspec").json.encode(chat_record(read_episode(path))))
    roles = [m["role"] for m in record["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    first_call = record["messages"][2]["tool_calls"][0]
    assert first_call == {"id": "c0", "type": "function", "function": {"name": "ls", "arguments": '{"path":"/d0"}'}}
    assert record["messages"][3] == {"role": "tool", "content": "file0.txt", "tool_call_id": "c0", "name": "ls"}
    assert "tool_calls" not in record["messages"][-1]
    assert record["tools"] == [{"type": "function", "function": {
        "name": "ls", "description": "list a directory", "parameters": {"type": "object"}}}]


def test_dedupe_text_leaves_out_the_system_prompt(tmp_path, episode_factory):
    path, _ = episode_factory(tmp_path, user="find the logs", steps=1)
    text = dedupe_text(read_episode(path))
    assert "file agent" not in text
    assert text.split("\n") == ["find the logs", "calling ls 0", 'ls {"path":"/d0"}', "file0.txt",
                                "done: find the logs"]
