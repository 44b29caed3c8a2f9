"""Reloading a saved session: from its file or recomputed from its saved ids, whichever is cheaper by measured
throughput; both ways give the session a fresh prefill of its ids would (kv_cache.load_session)."""
import numpy as np
import pytest

from tinygpt.runtime import kv_cache, prefill_meter
from tinygpt.runtime.engine import Engine
from tinygpt.runtime.kv_cache import KVCacheError, load_session
from tinygpt.runtime.models import load
from tinygpt.runtime.prefill import BucketedKVCache
from tinygpt.runtime.sampling import SamplingParams

GREEDY = SamplingParams(max_tokens=6)


@pytest.fixture
def engine(tiny_model_dir):
    """An engine whose model object is its own, so no prefill rate is known for it until a test records one."""
    return Engine(load(str(tiny_model_dir)))


@pytest.fixture
def saved(engine, tmp_path):
    s = engine.new_session()
    ids = engine.encode_chat([{"role": "user", "content": "keep this conversation for later"}])
    engine.generate(ids, GREEDY, session=s)
    return s, engine.save_session(s, tmp_path / "kv")


def next_turn(engine, s):
    return s.ids + engine.encode("\n<|im_start|>user\nand then?<|im_end|>\n<|im_start|>assistant\n")


def test_a_recomputed_session_continues_like_the_saved_one(engine, saved):
    s, path = saved
    by_file = engine.load_session(path, how="file")
    by_prefill = engine.load_session(path, how="prefill")
    assert by_file.reload.how == "file" and by_prefill.reload.how == "prefill"
    assert by_prefill.ids == by_file.ids == s.ids
    assert [c.offset for c in by_prefill.cache] == [len(s.ids)] * len(by_prefill.cache)
    assert all(type(c) is BucketedKVCache for c in by_prefill.cache)
    nxt = next_turn(engine, s)
    np.testing.assert_allclose(np.array(engine.prefill(nxt, by_prefill)), np.array(engine.prefill(nxt, by_file)),
                               atol=1e-4, rtol=1e-4)
    a = engine.generate(nxt, GREEDY, session=engine.load_session(path, how="prefill"))
    b = engine.generate(nxt, GREEDY, session=engine.load_session(path, how="file"))
    assert a.output_ids == b.output_ids and a.cached_tokens == b.cached_tokens == len(s.ids)


def test_auto_reads_the_file_while_no_prefill_rate_is_known(engine, saved):
    _, path = saved
    assert prefill_meter.rate(engine.model) is None
    s = engine.load_session(path)
    assert s.reload.how == "file" and "no prefill rate" in s.reload.reason
    assert s.reload.file_s is None and s.reload.prefill_s is None


def test_auto_takes_the_cheaper_way_by_the_measured_rates(engine, saved):
    _, path = saved
    prefill_meter.record(engine.model, 256, 1e6)  # a prefill rate far below any file read
    slow = engine.load_session(path)
    assert slow.reload.how == "file" and slow.reload.prefill_s > slow.reload.file_s > 0
    prefill_meter.record(engine.model, 1 << 30, 1e-3)  # one far above any file read
    fast = engine.load_session(path)
    assert fast.reload.how == "prefill" and 0 < fast.reload.prefill_s < fast.reload.file_s
    assert "measured in this process" in fast.reload.reason


def test_short_chunks_are_not_taken_as_a_prefill_rate(engine):
    prefill_meter.record(engine.model, prefill_meter.MIN_TOKENS - 1, 1e-9)
    assert prefill_meter.rate(engine.model) is None
    prefill_meter.record(engine.model, 1000, 0.5)
    prefill_meter.record(engine.model, 1000, 1.0)  # a slower chunk (say, kernels built on first use) is not the rate
    assert prefill_meter.rate(engine.model) == 2000


def test_the_saved_rate_serves_a_new_process_on_the_same_device_only(engine, saved, tiny_model_dir, monkeypatch):
    s, _ = saved
    prefill_meter.record(engine.model, 1 << 30, 1e-3)
    path = engine.save_session(s, saved[1])  # now the file records the rate
    later = Engine(load(str(tiny_model_dir)))  # as after a restart: nothing measured for this model object
    assert prefill_meter.rate(later.model) is None
    got = later.load_session(path)
    assert got.reload.how == "prefill" and "recorded by the process that saved it" in got.reload.reason
    monkeypatch.setattr(kv_cache, "device_name", lambda: "another device")
    assert later.load_session(path).reload.how == "file"


def test_damaged_data_and_bad_arguments_are_clear_errors(engine, saved, tmp_path):
    _, path = saved
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:-64])  # header intact, data cut off
    with pytest.raises(KVCacheError, match="cannot be read|not a readable KV cache"):
        engine.load_session(short, how="file")
    with pytest.raises(ValueError, match="how must be one of"):
        engine.load_session(path, how="fastest")
    with pytest.raises(ValueError, match="needs the model"):
        load_session(path, fingerprint=engine.loaded.fingerprint, tokenizer_hash=engine.loaded.tokenizer_hash,
                     how="prefill")
