"""The loss sees exactly the sampled / assistant tokens: every assistant turn is trained, nothing else is.

Planted-token tests: a target whose mask is 0 can be changed to anything without changing the loss or any
gradient (bit for bit); changing a trained target changes both. Rows from recorded episodes have mask 1 exactly
on the recorded output ids; a chat conversation has every assistant turn trained (mlx-lm's --mask-prompt trains
only the last), and its per-turn rendering gives the very ids and mask the recorder + traces-to-data give.
"""
import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from tinygpt.trainer.batches import pack
from tinygpt.trainer.chat_data import TemplateRenderer, read_chat_file, render_chat
from tinygpt.trainer.example import make_example
from tinygpt.trainer.losses import masked_nll, token_nll
from tinygpt.trainer.rows import read_rows
from tinygpt.traces.reader import read_episode
from trainer_task import TOOLS


def _spans(ids, mask):
    """The runs of trained ids."""
    spans, cur = [], []
    for t, m in zip(ids, mask):
        if m:
            cur.append(int(t))
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


def test_rows_train_exactly_the_recorded_outputs(task_data, tiny_engine):
    loaded = tiny_engine.loaded
    examples, counts = read_rows(task_data / "data" / "rows.jsonl", tokenizer_hash=loaded.tokenizer_hash,
                                 vocab_size=loaded.vocab_size)
    assert counts == {"rows": 48, "no_supervised": 0}
    for ex in examples[:6]:
        episode = read_episode(task_data / "traces" / f"{ex.group}.atraj")
        calls = [e for e in episode.events if type(e).__name__ == "ModelCall"]
        expected_ids, expected_mask = [], []
        for c in calls:
            expected_ids += c.prompt_token_ids + c.output_token_ids
            expected_mask += [0] * len(c.prompt_token_ids) + [1] * len(c.output_token_ids)
        assert ex.ids.tolist() == expected_ids and ex.mask.tolist() == expected_mask
        assert _spans(ex.ids, ex.mask) == [c.output_token_ids for c in calls]  # two turns, both trained


def test_gradient_is_zero_at_every_untrained_target():
    rng = np.random.default_rng(0)
    logits = mx.array(rng.normal(size=(2, 12, 50)).astype(np.float32))
    targets = mx.array(rng.integers(0, 50, size=(2, 12)).astype(np.int32))
    weights = mx.array((rng.random((2, 12)) < 0.5).astype(np.float32))
    grad = mx.grad(lambda z: token_nll(z, targets, weights)[0])(logits)
    per_position = np.abs(np.array(grad)).sum(-1)
    w = np.array(weights)
    assert (per_position[w == 0] == 0).all() and (per_position[w == 1] > 0).all()


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir):
    """The tiny model with LoRA layers whose B is non-zero, so every adapter weight gets a gradient."""
    from tinygpt.runtime.models import load
    from tinygpt.trainer.config import TrainConfig
    from tinygpt.trainer.tuning import prepare

    loaded = load(str(tiny_model_dir))
    mx.random.seed(3)
    prepare(loaded.model, TrainConfig(rank=4), "tiny")
    params = dict(tree_flatten(loaded.model.trainable_parameters()))
    loaded.model.load_weights([(k, 0.05 * mx.random.normal(v.shape)) if k.endswith("lora_b") else (k, v)
                               for k, v in params.items()], strict=False)
    return loaded


def _loss_and_grads(model, batch):
    value, grads = nn.value_and_grad(model, lambda m, *b: masked_nll(m, *b)[0])(model, *batch)
    return value.item(), dict(tree_flatten(grads))


def test_a_planted_untrained_token_changes_nothing_a_trained_one_changes(lora_model, task_data):
    loaded = lora_model
    examples, _ = read_rows(task_data / "data" / "rows.jsonl", tokenizer_hash=loaded.tokenizer_hash,
                            vocab_size=loaded.vocab_size)
    ex = examples[0]
    inputs, targets, weights = pack([ex])
    base_loss, base_grads = _loss_and_grads(loaded.model, (inputs, targets, weights))
    w = np.array(weights)[0]
    t = np.array(targets)
    untrained, trained = int(np.flatnonzero(w[: len(ex) - 1] == 0)[-1]), int(np.flatnonzero(w == 1)[0])
    planted = t.copy()
    planted[0, untrained] = (planted[0, untrained] + 7) % loaded.vocab_size  # a tool-result / prompt target
    loss, grads = _loss_and_grads(loaded.model, (inputs, mx.array(planted), weights))
    assert loss == base_loss
    assert all(np.array_equal(np.array(grads[k]), np.array(base_grads[k])) for k in base_grads)
    planted = t.copy()
    planted[0, trained] = (planted[0, trained] + 7) % loaded.vocab_size  # a sampled target
    loss, grads = _loss_and_grads(loaded.model, (inputs, mx.array(planted), weights))
    assert loss != base_loss
    assert any(not np.array_equal(np.array(grads[k]), np.array(base_grads[k])) for k in base_grads)


def test_untrained_tokens_after_the_last_output_leave_the_gradient_unchanged(lora_model, task_data):
    """A whole planted turn of context after the last sampled id (a tool result that was never answered)."""
    loaded = lora_model
    ex = read_rows(task_data / "data" / "rows.jsonl", tokenizer_hash=loaded.tokenizer_hash,
                   vocab_size=loaded.vocab_size)[0][1]
    tail = np.array([5, 9, 33, 2], np.int32)
    a = make_example(np.r_[ex.ids, tail], np.r_[ex.mask, np.zeros(4, np.uint8)], "a", "a")
    b = make_example(np.r_[ex.ids, tail[::-1] + 100], np.r_[ex.mask, np.zeros(4, np.uint8)], "b", "b")
    la, ga = _loss_and_grads(loaded.model, pack([a]))
    lb, gb = _loss_and_grads(loaded.model, pack([b]))
    assert la == lb and all(np.array_equal(np.array(ga[k]), np.array(gb[k])) for k in ga)


def test_logits_only_at_trained_positions_give_the_same_loss_and_gradients(lora_model, task_data):
    """losses.trained_nll (what the trainer uses for qwen3 and kin) == masked_nll, loss and every gradient."""
    from tinygpt.trainer.batches import pack_gathered
    from tinygpt.trainer.losses import has_plain_head, trained_nll

    loaded = lora_model
    assert has_plain_head(loaded.model)
    examples = read_rows(task_data / "data" / "rows.jsonl", tokenizer_hash=loaded.tokenizer_hash,
                         vocab_size=loaded.vocab_size)[0][:3]
    dense, dense_grads = _loss_and_grads(loaded.model, pack(examples))
    batch = pack_gathered(examples)
    assert batch[1].shape == batch[3].shape and float(batch[2].sum()) == sum(e.supervised for e in examples)
    value, grads = nn.value_and_grad(loaded.model, lambda m, *b: trained_nll(m, *b)[0])(loaded.model, *batch)
    assert abs(value.item() - dense) < 1e-5
    for k, g in dict(tree_flatten(grads)).items():
        assert np.allclose(np.array(g), np.array(dense_grads[k]), rtol=1e-4, atol=1e-6), k


def test_pack_aligns_targets_and_weights_with_the_next_token():
    ex = make_example([1, 2, 3, 4, 5], [0, 0, 1, 1, 0], "g", "s")
    inputs, targets, weights = pack([ex, make_example([7, 8], [0, 1], "h", "t")], pad_multiple=8)
    assert np.array(inputs)[0, :4].tolist() == [1, 2, 3, 4] and np.array(targets)[0, :4].tolist() == [2, 3, 4, 5]
    assert np.array(weights)[0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert np.array(weights)[1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and inputs.shape == (2, 8)
    assert pack([ex], pad_multiple=32, max_width=5)[0].shape == (1, 5)  # never padded past the longest allowed


CHAT = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "list files"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{\"a\": true}"}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "ls", "content": "a.txt"},
    {"role": "tool", "tool_call_id": "c2", "name": "ls", "content": "b.txt"},
    {"role": "assistant", "content": "Two files."},
    {"role": "user", "content": "thanks"}]}


def test_every_assistant_turn_of_a_chat_is_trained(tiny_engine, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(CHAT) + "\n")
    [ex], counts = read_chat_file(path, tiny_engine.tokenizer)
    assert counts["retokenized"] == 0 and counts["skipped"] == {}
    decode = tiny_engine.tokenizer.decode
    assert [decode(s) for s in _spans(ex.ids, ex.mask)] == [
        "Hello!<|im_end|>", '<tool_call>\n{"name": "ls", "arguments": {"a": true}}\n</tool_call><|im_end|>',
        "Two files.<|im_end|>"]
    assert decode(ex.ids.tolist()).endswith("Two files.<|im_end|>")  # the trailing user turn trains nothing
    # mlx-lm's ChatDataset with mask_prompt trains only what follows its offset: the last assistant turn
    from mlx_lm.tuner.datasets import ChatDataset

    messages = CHAT["messages"][:-1]
    ids, offset = ChatDataset([{"messages": messages}], tiny_engine.tokenizer, mask_prompt=True).process(
        {"messages": messages})
    mlx_lm_trained = len(ids) - offset
    ours = int(ex.mask.sum())
    assert mlx_lm_trained < ours and ours == sum(len(s) for s in _spans(ex.ids, ex.mask))


def test_chat_records_render_to_the_recorded_ids_and_mask(tool_episodes, tiny_engine):
    """A recorded conversation (tools block included), re-rendered per turn from its messages, gives the rows'
    ids and mask id for id. (traces-to-data's chat.jsonl re-encodes call arguments compactly, so it is the
    episode's messages with the arguments as the model wrote them that are compared.)"""
    loaded = tiny_engine.loaded
    rows, _ = read_rows(tool_episodes / "data" / "rows.jsonl", tokenizer_hash=loaded.tokenizer_hash,
                        vocab_size=loaded.vocab_size)
    r = TemplateRenderer(tiny_engine.tokenizer)
    assert len(rows) == 4
    for row in rows:
        episode = read_episode(tool_episodes / "traces" / f"{row.group}.atraj")
        messages = []
        for e in episode.events:
            kind = type(e).__name__
            if kind == "Message":
                messages.append({"role": e.role, "content": e.content})
            elif kind == "ToolResult":
                messages.append({"role": "tool", "tool_call_id": e.call_id, "name": e.name, "content": e.content})
            else:
                messages.append({"role": "assistant", "content": e.content or "", "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in e.tool_calls]})
        ids, mask, retokenized = render_chat(r, messages, TOOLS)
        assert ids == row.ids.tolist() and mask == row.mask.tolist() and not retokenized
        assert "<tools>" in tiny_engine.tokenizer.decode(ids[:200])


def test_a_conversation_without_an_assistant_turn_is_skipped_and_counted(tiny_engine):
    from tinygpt.trainer.chat_data import Skip

    r = TemplateRenderer(tiny_engine.tokenizer)
    with pytest.raises(Skip, match="no_assistant_turn"):
        render_chat(r, [{"role": "user", "content": "hello?"}], None)
    with pytest.raises(Skip, match="assistant_without_prompt"):
        render_chat(r, [{"role": "assistant", "content": "I start"}], None)
