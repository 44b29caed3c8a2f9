"""MultiAdapter: one forward pass of the base for rows that use different adapters equals, row by row, mlx-lm's
own single-adapter model (load_adapters), its fused model, and the base for rows without an adapter."""
import json

import pytest

from tinygpt.runtime.presets import init_adapter

PROMPTS = [[3, 17, 42, 8, 99, 5, 61], [12, 7], [250, 4, 4, 31], [9, 300, 2, 77, 15], [64, 65, 66]]
ROWS = ["a", "b", None, "a", "d"]  # a: LoRA r8 all layers; b: LoRA r4 last layer, two keys; d: DoRA
DIFFERS = (0, 1, 4)  # rows whose greedy ids under their adapter differ from the base's (checked below)
STEPS = 6


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": init_adapter(tiny_model_dir, root / "a", seed=1),
        "b": init_adapter(tiny_model_dir, root / "b", seed=2, rank=4, num_layers=1, scale=10.0,
                          keys=["self_attn.v_proj", "mlp.down_proj"]),
        "d": init_adapter(tiny_model_dir, root / "d", seed=3, fine_tune_type="dora"),
    }


def _base(model_dir):
    from mlx_lm.utils import load_model

    return load_model(model_dir)[0]


def _single(model_dir, adapter_dir, fused=False):
    """mlx-lm's own model for one adapter (None: the base), optionally fused as `mlx_lm.fuse` does."""
    from mlx.utils import tree_unflatten
    from mlx_lm.tuner.utils import load_adapters

    model = _base(model_dir)
    if adapter_dir is not None:
        load_adapters(model, str(adapter_dir))
        if fused:
            model.update_modules(tree_unflatten([(n, m.fuse()) for n, m in model.named_modules()
                                                 if hasattr(m, "fuse")]))
    return model


def _greedy_alone(model, prompt, steps=STEPS):
    """(last prompt logits, greedy ids) for one row on its own KV cache."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt]), cache=cache)[:, -1]
    first, ids = logits, []
    for _ in range(steps):
        ids.append(int(mx.argmax(logits, axis=-1).item()))
        logits = model(mx.array([[ids[-1]]]), cache=cache)[:, -1]
    return first, ids


def _greedy_batch(call, prompts, steps=STEPS):
    """(last prompt logits per row, greedy ids per row) for a left-padded batch on BatchKVCache."""
    import mlx.core as mx
    from mlx_lm.models.cache import BatchKVCache

    width = max(map(len, prompts))
    pad = [width - len(p) for p in prompts]
    cache = [BatchKVCache(pad) for _ in range(2)]  # tiny has 2 layers
    logits = call(mx.array([[0] * k + p for k, p in zip(pad, prompts)]), cache)[:, -1]
    first, ids = logits, [[] for _ in prompts]
    for _ in range(steps):
        nxt = mx.argmax(logits, axis=-1)
        for row, t in zip(ids, nxt.tolist()):
            row.append(t)
        logits = call(nxt[:, None], cache)[:, -1]
    return first, ids


@pytest.fixture(scope="module")
def references(tiny_model_dir, adapters):
    """Per adapter name (None: base): mlx-lm's single-adapter model and its fused copy."""
    refs = {name: _single(tiny_model_dir, adapters.get(name)) for name in set(ROWS)}
    fused = {name: _single(tiny_model_dir, adapters[name], fused=True) for name in adapters}
    return refs, fused


@pytest.fixture(scope="module")
def multi(tiny_model_dir, adapters):
    from tinygpt.runtime.multi_adapter import MultiAdapter

    return MultiAdapter.attach(_base(tiny_model_dir), adapters)


@pytest.fixture(scope="module")
def mixed(multi):
    def call(tokens, cache):
        with multi.rows(ROWS):
            return multi.base(tokens, cache=cache)
    return _greedy_batch(call, PROMPTS)


def test_mixed_batch_logits_equal_each_rows_own_adapter_model(mixed, references):
    import mlx.core as mx

    logits, _ = mixed
    refs, _ = references
    for r, (prompt, name) in enumerate(zip(PROMPTS, ROWS)):
        alone, _ = _greedy_alone(refs[name], prompt)
        assert mx.allclose(logits[r], alone[0], atol=1e-5, rtol=0).item(), (r, name)


def test_the_adapters_really_differ(references):
    """Guards the tests above: if every adapter gave the base's outputs, they would pass vacuously."""
    import mlx.core as mx

    refs, _ = references
    base, _ = _greedy_alone(refs[None], PROMPTS[0])
    for name in ("a", "b", "d"):
        other, _ = _greedy_alone(refs[name], PROMPTS[0])
        assert float(mx.abs(other - base).max()) > 1e-3, name


def test_greedy_ids_of_the_adapters_differ_from_the_bases(references):
    """Guards the greedy tests: on these rows an adapter changes the ids, so a lost delta would show."""
    refs, _ = references
    for r in DIFFERS:
        assert _greedy_alone(refs[ROWS[r]], PROMPTS[r])[1] != _greedy_alone(refs[None], PROMPTS[r])[1], r


def test_greedy_decode_equals_per_adapter_runs(mixed, references):
    _, ids = mixed
    refs, _ = references
    for r, (prompt, name) in enumerate(zip(PROMPTS, ROWS)):
        assert ids[r] == _greedy_alone(refs[name], prompt)[1], (r, name)


def test_greedy_decode_equals_the_fused_adapter(mixed, references):
    _, ids = mixed
    _, fused = references
    for r, (prompt, name) in enumerate(zip(PROMPTS, ROWS)):
        if name is not None:
            assert ids[r] == _greedy_alone(fused[name], prompt)[1], (r, name)


def test_rows_without_an_adapter_equal_the_base(multi, references):
    import mlx.core as mx

    refs, _ = references
    tokens = mx.array([PROMPTS[0], PROMPTS[0]])
    with multi.rows([None, "a"]):
        mixed = multi.base(tokens)
    with multi.rows([None, None]):
        plain = multi.base(tokens)
    base = refs[None](tokens)
    assert mx.allclose(mixed[0], base[0], atol=1e-5, rtol=0).item()
    assert mx.array_equal(plain, base).item()  # no adapter in the batch: the base's own computation
    assert not mx.allclose(mixed[1], base[1], atol=1e-3).item()
    assert mx.array_equal(multi.base(tokens), base).item()  # outside rows(): the plain base


def test_batch_generator_carries_rows_in_the_cache(multi, references):
    """mlx-lm's BatchGenerator, unchanged, with RoutedModel and per-request caches: rows finish at different
    lengths (filter), join (merge/extend), and each still gets its own adapter."""
    from mlx_lm.generate import BatchGenerator

    refs, _ = references
    gen = BatchGenerator(multi.model, max_tokens=STEPS, completion_batch_size=8, prefill_batch_size=2)
    lengths = [STEPS, 2, STEPS, 3, STEPS]
    uids = gen.insert(PROMPTS, max_tokens=lengths, caches=[multi.make_cache(n) for n in ROWS])
    got = {u: [] for u in uids}
    while responses := gen.next_generated():
        for resp in responses:
            got[resp.uid].append(resp.token)
    gen.close()
    for uid, prompt, name, n in zip(uids, PROMPTS, ROWS, lengths):
        assert got[uid] == _greedy_alone(refs[name], prompt)[1][:n], name


def test_a_specialist_view_runs_mlx_lms_own_generate_step(multi, references):
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    refs, _ = references
    for name, r in (("a", 0), ("b", 1), ("d", 4)):  # b adapts 2 Linears of 1 layer: the rest is skipped
        got = [t for t, _ in generate_step(mx.array(PROMPTS[r]), multi.specialist(name), max_tokens=STEPS)]
        assert got == _greedy_alone(refs[name], PROMPTS[r])[1], name
    from tinygpt.runtime.multi_adapter import AdapterError

    with pytest.raises(AdapterError, match="unknown adapter 'zz'"):
        multi.specialist("zz")


def test_remove_and_add_keep_the_other_slots_exact(tiny_model_dir, adapters, references):
    import mlx.core as mx

    from tinygpt.runtime.multi_adapter import MultiAdapter

    refs, _ = references
    multi = MultiAdapter.attach(_base(tiny_model_dir), {"a": adapters["a"], "b": adapters["b"]})
    multi.remove("a")
    multi.add("d", adapters["d"])
    assert multi.names == ["b", "d"]
    tokens = mx.array([PROMPTS[3], PROMPTS[3]])
    with multi.rows(["d", "b"]):
        out = multi.base(tokens)
    assert mx.allclose(out[0], refs["d"](tokens[:1])[0], atol=1e-5, rtol=0).item()
    assert mx.allclose(out[1], refs["b"](tokens[:1])[0], atol=1e-5, rtol=0).item()
    multi.detach()
    assert mx.array_equal(multi.base(tokens), refs[None](tokens)).item()
    assert "Multi" not in type(multi.base.layers[0].self_attn.q_proj).__name__


def test_n_adapters_cost_their_own_bytes(tiny_model_dir, adapters, tmp_path):
    """No zero slot and no copies: two LoRA adapters of one rank and layer set hold exactly their tensors."""
    import mlx.core as mx

    from tinygpt.runtime.multi_adapter import MultiAdapter

    other = init_adapter(tiny_model_dir, tmp_path / "a2", seed=9)
    files = sum(w.nbytes for d in (adapters["a"], other) for w in mx.load(str(d / "adapters.safetensors")).values())
    multi = MultiAdapter.attach(_base(tiny_model_dir), {"a": adapters["a"], "a2": other})
    assert multi.nbytes == files
    multi.remove("a")
    multi.remove("a2")
    assert multi.nbytes == 0 and multi.names == []
    with multi.rows([None]):
        assert mx.array_equal(multi.base(mx.array([PROMPTS[0]])), _base(tiny_model_dir)(mx.array([PROMPTS[0]]))).item()


def test_parameters_keep_their_names(tiny_model_dir, multi):
    from mlx.utils import tree_flatten

    plain = sorted(k for k, _ in tree_flatten(_base(tiny_model_dir).parameters()))
    assert sorted(k for k, _ in tree_flatten(multi.base.parameters())) == plain


def test_unknown_rows_and_bad_adapters_are_clear_errors(tiny_model_dir, adapters, tmp_path, multi):
    import mlx.core as mx

    from tinygpt.runtime.multi_adapter import AdapterError

    with pytest.raises(AdapterError, match="unknown adapter 'zz'; attached: a, b, d"):
        with multi.rows(["zz"]):
            pass
    with pytest.raises(AdapterError, match="already attached"):
        multi.add("a", adapters["a"])
    with pytest.raises(ValueError, match="the batch has 2 rows but 1 adapter rows"):
        with multi.rows(["a"]):
            multi.base(mx.array([[1, 2], [3, 4]]))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    cfg = json.loads((adapters["a"] / "adapter_config.json").read_text())
    (wrong / "adapter_config.json").write_text(json.dumps(cfg))
    name = "model.layers.0.self_attn.q_proj"
    mx.save_safetensors(str(wrong / "adapters.safetensors"),
                        {f"{name}.lora_a": mx.zeros((32, 8)), f"{name}.lora_b": mx.zeros((8, 64))})
    with pytest.raises(AdapterError, match="another base"):
        multi.add("wrong", wrong)
    (wrong / "adapter_config.json").write_text(json.dumps({**cfg, "fine_tune_type": "full"}))
    with pytest.raises(AdapterError, match="load it as a model of its own"):
        multi.add("wrong", wrong)
    with pytest.raises(AdapterError, match="not an mlx-lm adapter directory"):
        multi.add("wrong", tmp_path / "missing")
    assert multi.names == ["a", "b", "d"]


def test_adapter_rows_follow_the_batch_protocol(multi):
    from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

    from tinygpt.runtime.multi_adapter import AdapterRows, split_rows

    caches = [multi.make_cache(n) for n in ("a", None, "d")]
    rows = caches[0][-1].merge([c[-1] for c in caches])
    assert rows.names == ["a", None, "d"]
    rows.filter([2, 0])
    rows.extend(AdapterRows(["b"]))
    assert rows.names == ["d", "a", "b"] and rows.extract(1).names == ["a"]
    kv, names = split_rows(caches[1])
    assert names == [None] and len(kv) == 2 and not any(isinstance(c, AdapterRows) for c in kv)
    assert split_rows(kv) == (kv, None)
    assert can_trim_prompt_cache(caches[0]) and trim_prompt_cache(caches[0], 0) == 0


def test_bfloat16_base_with_float32_adapters(tmp_path):
    """The GPU setting: bf16 weights, float32 adapter tensors (as mlx-lm trains them); rows still match mlx-lm."""
    import mlx.core as mx

    from tinygpt.runtime.multi_adapter import MultiAdapter
    from tinygpt.runtime.presets import InitSpec, init_model

    base_dir = init_model(tmp_path / "bf16", InitSpec(preset="tiny", dtype="bfloat16"))
    ads = {"a": init_adapter(base_dir, tmp_path / "a", seed=1),
           "d": init_adapter(base_dir, tmp_path / "d", seed=3, fine_tune_type="dora")}
    multi = MultiAdapter.attach(_base(base_dir), ads)
    rows = ["a", None, "d"]

    def call(tokens, cache):
        with multi.rows(rows):
            return multi.base(tokens, cache=cache)
    logits, ids = _greedy_batch(call, PROMPTS[:3], steps=3)
    assert logits.dtype == mx.bfloat16
    for r, name in enumerate(rows):
        first, alone = _greedy_alone(_single(base_dir, ads.get(name)), PROMPTS[r], steps=3)
        assert mx.allclose(logits[r], first[0], atol=2e-2, rtol=0).item() and ids[r] == alone, name
