"""Shape-bucketed prefill: exactly the logits and cache of a plain prefill, with few distinct attention shapes."""
import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.cache import KVCache, make_prompt_cache

from tinygpt.runtime.prefill import BUCKET, SHORT, BucketedKVCache, make_cache, prefill
from tinygpt.runtime.sampling import SamplingParams


def plain_logits(model, ids):
    cache = make_prompt_cache(model)
    return model(mx.array(ids)[None], cache=cache)[0, -1], cache


@pytest.mark.parametrize("history, turns", [(0, [5]), (37, [1, 2, 3, 24, 9]), (250, [7, 300]), (600, [100])])
def test_bucketed_prefill_equals_a_plain_one(tiny_engine, history, turns):
    model, rng = tiny_engine.model, np.random.default_rng(history)
    ids = rng.integers(3, 400, size=history + sum(turns)).tolist()
    cache, done = make_cache(model), 0
    assert all(isinstance(c, BucketedKVCache) for c in cache)
    for n in [history] + turns if history else turns:
        got = prefill(model, cache, ids[done: done + n], step=64)
        done += n
        want, ref = plain_logits(model, ids[:done])
        np.testing.assert_allclose(np.array(got[0]), np.array(want), atol=1e-4, rtol=1e-4)
        assert [c.offset for c in cache] == [done] * len(cache)  # every pad token was trimmed
        for c, r in zip(cache, ref):  # the cache holds exactly the plain prefill's keys and values
            np.testing.assert_allclose(np.array(c.keys[..., :done, :]), np.array(r.keys[..., :done, :]), atol=1e-4)


def test_multi_token_steps_attend_over_bucketed_lengths(tiny_engine):
    model = tiny_engine.model
    cache, seen = make_cache(model), set()
    for c in cache:
        original = c.update_and_fetch

        def spy(keys, values, original=original):
            k, v = original(keys, values)
            seen.add((keys.shape[2], k.shape[2]))
            return k, v
        c.update_and_fetch = spy
    rng = np.random.default_rng(1)
    for n in (3, 5, 9, 17, 24, 30, 11, 13):  # eight turns of different lengths
        prefill(model, cache, rng.integers(3, 400, size=n).tolist())
    queries = {q for q, _ in seen}
    keys = {k for _, k in seen}
    assert queries <= {8, 16, 32} and keys == {BUCKET}  # not one shape per turn
    seen.clear()
    prefill(model, cache, rng.integers(3, 400, size=SHORT + 1).tolist())  # a long chunk: mlx-lm's own exact path
    assert seen == {(SHORT + 1, cache[0].offset)}


def test_engine_turns_and_saved_sessions_match_a_fresh_prefill(tiny_engine, tmp_path):
    s = tiny_engine.new_session()
    p1 = tiny_engine.encode_chat([{"role": "user", "content": "hello there"}])
    r1 = tiny_engine.generate(p1, SamplingParams(max_tokens=6), session=s)
    p2 = s.ids + tiny_engine.encode("\n<|im_start|>user\nand more<|im_end|>\n<|im_start|>assistant\n")
    path = tiny_engine.save_session(s, tmp_path / "kv")
    warm = tiny_engine.generate(p2, SamplingParams(max_tokens=6), session=s)
    reloaded = tiny_engine.generate(p2, SamplingParams(max_tokens=6), session=tiny_engine.load_session(path))
    fresh = tiny_engine.generate(p2, SamplingParams(max_tokens=6), session=tiny_engine.new_session())
    assert r1.output_ids and warm.cached_tokens == len(p1) + len(r1.output_ids)
    assert warm.output_ids == reloaded.output_ids == fresh.output_ids
    assert all(type(c) is BucketedKVCache for c in tiny_engine.load_session(path).cache)


def test_other_caches_prefill_unpadded():
    cache = [KVCache()]
    calls = []

    def model(tokens, cache):
        calls.append(tokens.shape[1])
        return mx.zeros((1, tokens.shape[1], 4))
    prefill(model, cache, list(range(5)))
    assert calls == [5]


@pytest.mark.parametrize("n, step", [(300, 64), (40, 2048), (700, 256)])
def test_a_cache_only_prefill_fills_the_same_cache(tiny_engine, n, step):
    ids = np.random.default_rng(n).integers(3, 400, size=n).tolist()
    with_logits, cache_only = make_cache(tiny_engine.model), make_cache(tiny_engine.model)
    assert prefill(tiny_engine.model, with_logits, ids, step) is not None
    assert prefill(tiny_engine.model, cache_only, ids, step, logits=False) is None
    for a, b in zip(with_logits, cache_only):  # bit for bit: the skipped work feeds no cache
        assert a.offset == b.offset == n
        assert mx.array_equal(a.keys[..., :n, :], b.keys[..., :n, :]) and mx.array_equal(a.values, b.values)
