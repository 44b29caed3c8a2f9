"""Data loading: formats, checks with one clear error, long sequences split at turn starts (never cut at the end)
and counted, the seeded train/valid split by episode, rejection sampling, and resumable bucketed batches."""
import json

import numpy as np
import pytest

from tinygpt.trainer.batches import BucketedBatches, fingerprint
from tinygpt.trainer.config import TrainConfig
from tinygpt.trainer.data import load_data, split_groups
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import make_example, turn_starts
from tinygpt.trainer.rows import read_rows
from tinygpt.trainer.windows import fit


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cfg(data, tmp_path, **kw):
    return TrainConfig(data=str(data), out=str(tmp_path / "run"), **kw)


def test_completions_and_text_records(tiny_engine, tmp_path):
    loaded = tiny_engine.loaded
    comp = _write(tmp_path / "c.jsonl", [{"prompt": f"say {i}", "completion": f"ok {i}"} for i in range(4)])
    data = load_data(_cfg(comp, tmp_path, valid_fraction=0.25), loaded, tmp_path)
    assert len(data.train) == 3 and len(data.valid) == 1
    ex = data.train[0]
    trained = [int(t) for t, m in zip(ex.ids, ex.mask) if m]
    assert tiny_engine.tokenizer.decode(trained).endswith("<|im_end|>") and ex.mask[0] == 0
    text = _write(tmp_path / "t.jsonl", [{"text": "hello world"}, {"text": "more text here"}])
    data = load_data(_cfg(text, tmp_path, valid_fraction=0.0), loaded, tmp_path)
    assert all(ex.mask.all() and ex.ids[-1] == tiny_engine.tokenizer.eos_token_id for ex in data.train)


@pytest.mark.parametrize("records, says", [
    ([{"messages": []}, {"prompt": "a", "completion": "b"}], ":2: not a chat record"),
    ([{"foo": 1}], "records must be traces-to-data rows"),
])
def test_bad_records_are_one_clear_error(tiny_engine, tmp_path, records, says):
    path = _write(tmp_path / "d.jsonl", records)
    with pytest.raises(TrainError, match=says):
        load_data(_cfg(path, tmp_path), tiny_engine.loaded, tmp_path)


def test_bad_json_names_file_and_line(tiny_engine, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n{not json\n")
    with pytest.raises(TrainError, match=r"d.jsonl:2: not valid JSON"):
        load_data(_cfg(path, tmp_path), tiny_engine.loaded, tmp_path)


def _row(ids, mask, tokenizer_hash, episode="e1"):
    return {"episode_id": episode, "task_id": "t", "tokenizer_hash": tokenizer_hash, "input_ids": ids,
            "loss_mask": mask}


@pytest.mark.parametrize("row, says", [
    (dict(ids=[1, 2, 3], mask=[0, 1]), "input_ids has 3 ids but loss_mask has 2"),
    (dict(ids=[1, 2, 999999], mask=[0, 1, 1]), "token id 999999 is outside the model's vocabulary"),
    (dict(ids=[1, 2, 3], mask=[0, 2, 1]), "loss_mask holds values other than 0 and 1"),
])
def test_bad_rows_are_refused(tiny_engine, tmp_path, row, says):
    path = _write(tmp_path / "rows.jsonl", [_row(row["ids"], row["mask"], tiny_engine.loaded.tokenizer_hash)])
    with pytest.raises(TrainError, match=says):
        read_rows(path, tokenizer_hash=tiny_engine.loaded.tokenizer_hash, vocab_size=tiny_engine.loaded.vocab_size)


def test_rows_of_another_tokenizer_stop_the_run(tiny_engine, tmp_path):
    ours = tiny_engine.loaded.tokenizer_hash
    path = _write(tmp_path / "rows.jsonl", [_row([1, 2, 3], [0, 1, 1], ours), _row([1, 2], [0, 1], "other", "e2")])
    with pytest.raises(TrainError, match=f"1 of 2 rows were tokenized by another tokenizer \\(other \\(1 rows\\)\\); "
                                         f"this model's tokenizer hash is {ours}"):
        read_rows(path, tokenizer_hash=ours, vocab_size=tiny_engine.loaded.vocab_size)


def _turns(*turns):
    """An example from (prompt length, output length) pairs, ids counting up."""
    ids, mask = [], []
    for p, o in turns:
        mask += [0] * p + [1] * o
    ids = list(range(1, len(mask) + 1))
    return make_example(ids, mask, "g", "s")


def test_long_sequences_split_at_turn_starts_and_keep_the_last_turns():
    ex = _turns((6, 3), (4, 3), (4, 3), (5, 2))  # 30 tokens, turns start at 0, 9, 16, 23
    assert turn_starts(ex.mask) == [0, 9, 16, 23]
    out, counts = fit([ex], 16, "split")
    assert [(int(w.ids[0]), len(w)) for w in out] == [(1, 16), (17, 14)]  # cut only at turn starts
    assert int(out[-1].ids[-1]) == 30 and sum(w.supervised for w in out) == ex.supervised  # nothing lost
    assert counts == {"long": 1, "windows": 2, "long_skipped": 0, "turns_dropped": 0, "supervised_dropped": 0}


def test_a_turn_longer_than_the_limit_is_dropped_and_counted_and_skip_mode_drops_the_sequence():
    ex = _turns((4, 2), (20, 3), (3, 2))
    out, counts = fit([ex], 10, "split")
    assert [len(w) for w in out] == [6, 5] and counts["turns_dropped"] == 1 and counts["supervised_dropped"] == 3
    out, counts = fit([ex, _turns((2, 2))], 10, "skip")
    assert len(out) == 1 and counts["long_skipped"] == 1 and counts["supervised_dropped"] == ex.supervised


def test_text_is_cut_into_chunks_that_target_every_token_once():
    ex = make_example(list(range(1, 26)), [1] * 25, "t", "t")
    out, _ = fit([ex], 10, "split")
    assert [len(w) for w in out] == [10, 10, 7] and sum(w.supervised for w in out) == ex.supervised


def test_the_split_is_by_group_and_seeded():
    examples = [make_example([1, 2, 3], [0, 1, 1], f"ep{i // 2}", str(i)) for i in range(20)]  # 10 groups
    train, valid = split_groups(examples, 0.2, seed=1)
    assert len(valid) == 4 and not {e.group for e in train} & {e.group for e in valid}
    groups = lambda part: [e.group for e in part]  # noqa: E731
    assert groups(split_groups(examples, 0.2, seed=1)[1]) == groups(valid)
    assert groups(split_groups(examples, 0.2, seed=2)[1]) != groups(valid)
    assert split_groups(examples[:2], 0.2, seed=1)[1] == []  # one group: nothing to hold out


def test_only_passed_filters_traces_and_refuses_rows_without_the_verdict(task_data, tiny_engine, tmp_path):
    cfg = _cfg(task_data / "traces", tmp_path, only_passed=True, valid_fraction=0.0)
    data = load_data(cfg, tiny_engine.loaded, tmp_path / "run1")
    assert len(data.train) == 40 and data.report["traces_to_data"]["filtered"] == {"not_passed": 8}
    with pytest.raises(TrainError, match="--only-passed: .* re-export: tinygpt traces-to-data TRACES --out DIR "
                                         "--require-pass"):
        load_data(_cfg(task_data / "data" / "rows.jsonl", tmp_path, only_passed=True), tiny_engine.loaded, tmp_path)
    # rows exported with --require-pass are accepted as they are
    data = load_data(_cfg(tmp_path / "run1" / "data", tmp_path, only_passed=True, valid_fraction=0.0),
                     tiny_engine.loaded, tmp_path)
    assert len(data.train) == 40


def test_split_filters_traces_only(task_data, tiny_engine, tmp_path):
    with pytest.raises(TrainError, match="--split filters traces"):
        load_data(_cfg(task_data / "data", tmp_path, split=["train"]), tiny_engine.loaded, tmp_path)
    with pytest.raises(TrainError, match="no training rows after traces-to-data"):
        load_data(_cfg(task_data / "traces", tmp_path, split=["nope"]), tiny_engine.loaded, tmp_path / "r2")


def test_mlx_lm_directory_layout(tiny_engine, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "train.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)])
    _write(d / "valid.jsonl", [{"prompt": "pv", "completion": "cv"}])
    data = load_data(_cfg(d, tmp_path), tiny_engine.loaded, tmp_path)
    assert len(data.train) == 5 and len(data.valid) == 1


def test_batches_are_length_bucketed_deterministic_and_cover_each_epoch():
    rng = np.random.default_rng(0)
    examples = [make_example(rng.integers(1, 50, n), np.r_[0, np.ones(n - 1)], str(i), str(i))
                for i, n in enumerate(rng.integers(3, 40, 23))]
    a, b = BucketedBatches(examples, 4, seed=5), BucketedBatches(examples, 4, seed=5)
    assert len(a) == 6
    for epoch in range(2):
        seen = sorted(i for k in range(epoch * 6, epoch * 6 + 6) for i in a.indices(k))
        assert seen == list(range(23))
    assert [a.indices(k) for k in range(12)] == [b.indices(k) for k in range(12)]
    assert [a.indices(k) for k in range(6)] != [a.indices(k) for k in range(6, 12)]  # a new order each epoch
    lengths = [sorted(len(examples[i]) for i in bucket) for bucket in a.buckets]
    assert all(x[-1] <= y[0] for x, y in zip(lengths, lengths[1:]))  # neighbours by length
    assert fingerprint(examples) != fingerprint(examples[::-1])
