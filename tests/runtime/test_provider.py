"""The provider: specialists share their base's weights, equal a fused copy of base+adapter, have their own
identity (never another model's saved KV); it holds a model while a name holds it (a base while a specialist on
it is held), and its footprint estimate equals the loaded bytes. Which models stay loaded is the scheduler's
(tests/runtime/test_memory_budget.py)."""
import shutil

import pytest

from tinygpt.runtime.models import Identity, adapter_fingerprint, fingerprint
from tinygpt.runtime.models import ModelLoadError
from tinygpt.runtime.provider import ModelProvider, footprint, unique_nbytes
from tinygpt.runtime.store import ModelStore


@pytest.fixture(scope="module")
def store(tiny_model_dir, tmp_path_factory):
    """A store (own registry): `base`, specialists `spec-a`/`spec-b` (random LoRA), `spec-dora`, alias `fav`."""
    from tinygpt.runtime.presets import init_adapter

    root = tmp_path_factory.mktemp("store")
    s = ModelStore(root / "models")
    s.add("base", tiny_model_dir)
    for name, seed, kind in (("a", 1, "lora"), ("b", 2, "lora"), ("dora", 3, "dora")):
        init_adapter(tiny_model_dir, root / f"adapter-{name}", rank=4, seed=seed, fine_tune_type=kind)
        s.add(f"spec-{name}", root / f"adapter-{name}", base="base")
    s.alias("fav", "spec-a")
    return s


@pytest.fixture(scope="module")
def provider(store):
    return ModelProvider(store)


def greedy(model, ids, n=12):
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array(ids)[None], cache=cache)[0, -1]
    out = []
    for _ in range(n):
        out.append(int(mx.argmax(logits)))
        logits = model(mx.array([[out[-1]]]), cache=cache)[0, -1]
    return out


def last_logits(model, ids):
    import mlx.core as mx

    return model(mx.array(ids)[None])[0, -1]


def adapter_bytes(path) -> int:
    import mlx.core as mx

    return sum(a.nbytes for a in mx.load(str(path / "adapters.safetensors")).values())


def test_base_plus_two_specialists_cost_base_plus_adapters(store):
    provider = ModelProvider(store)
    base = provider.get("base")
    a, b = provider.get("spec-a"), provider.get("spec-b")
    # counted over the arrays the models hold (shared arrays once); MLX's process-wide active-memory counter
    # also sees whatever other tests and threads allocated meanwhile, so it is no basis for an assertion
    base_bytes = unique_nbytes([base.model])
    adapters = adapter_bytes(a.adapter_path) + adapter_bytes(b.adapter_path)
    together = unique_nbytes([base.model, a.model, b.model])
    assert together <= 1.10 * (base_bytes + adapters)
    assert together >= base_bytes + adapters  # each adapter's arrays are really there
    assert provider.held_bytes() == together
    assert base.model is not a.model and a.model is not b.model


@pytest.mark.parametrize("name", ["spec-a", "spec-dora"])
def test_specialist_equals_its_adapter_fused_into_a_copy_of_the_base(provider, store, tiny_model_dir, tmp_path,
                                                                     name):
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import load as mlx_load, save_model

    from tinygpt.runtime.models import load

    spec = provider.get(name)
    model, _ = mlx_load(str(tiny_model_dir), adapter_path=str(spec.adapter_path))
    model.update_modules(tree_unflatten([(n, m.fuse()) for n, m in model.named_modules() if hasattr(m, "fuse")]))
    fused_dir = tmp_path / "fused"
    shutil.copytree(tiny_model_dir, fused_dir)
    (fused_dir / "model.safetensors").unlink()
    save_model(fused_dir, model)
    fused = load(str(fused_dir))  # on its own, from disk
    assert fused.adapter_path is None and fused.fingerprint != spec.fingerprint
    prompt = [5, 17, 33, 2, 101, 7]
    assert greedy(spec.model, prompt) == greedy(fused.model, prompt)
    # the adapter matters (so the equality means something): logits move far more than fusing's rounding
    moved = float(abs(last_logits(spec.model, prompt) - last_logits(provider.get("base").model, prompt)).max())
    rounding = float(abs(last_logits(spec.model, prompt) - last_logits(fused.model, prompt)).max())
    assert moved > 1e-2 and rounding < 1e-4, (moved, rounding)


def test_identity_is_base_and_adapter_and_keys_differ(provider, store, tiny_model_dir):
    base, a, b = provider.get("base"), provider.get("spec-a"), provider.get("spec-b")
    fp = fingerprint(tiny_model_dir)
    assert base.identity == Identity(fp) and base.fingerprint == fp
    assert a.identity == Identity(fp, adapter_fingerprint(a.adapter_path))
    assert a.fingerprint == f"{fp}+{a.identity.adapter}"
    assert len({base.fingerprint, a.fingerprint, b.fingerprint}) == 3
    assert (a.name, b.name, base.name) == ("spec-a", "spec-b", "base")


def test_saved_kv_of_a_base_is_refused_by_its_specialist_and_back(provider, tmp_path):
    from tinygpt.runtime.kv_cache import KVCacheError, Session, load_session, save_session

    base, spec = provider.get("base"), provider.get("spec-a")
    for maker, reader in ((base, spec), (spec, base)):
        session = Session.new(maker.model)
        maker.model(__import__("mlx.core").core.array([[1, 2, 3]]), cache=session.cache)
        session.commit([1, 2, 3])
        path = save_session(session, tmp_path / f"{maker.name}.safetensors", fingerprint=maker.fingerprint,
                            tokenizer_hash=maker.tokenizer_hash)
        assert load_session(path, fingerprint=maker.fingerprint, tokenizer_hash=maker.tokenizer_hash).ids == [1, 2, 3]
        with pytest.raises(KVCacheError, match="made by another model"):
            load_session(path, fingerprint=reader.fingerprint, tokenizer_hash=reader.tokenizer_hash)


def test_an_alias_is_the_same_loaded_model_under_its_own_name(provider):
    fav, a = provider.get("fav"), provider.get("spec-a")
    assert fav.model is a.model and fav.fingerprint == a.fingerprint
    assert fav.name == "fav" and a.name == "spec-a"


def test_a_model_is_held_until_every_name_that_asked_lets_go(store):
    p = ModelProvider(store)
    p.get("fav")
    p.get("spec-a")  # the alias's target: the same model under a second name
    assert [(h.adapter is None, h.names) for h in p.loaded()] == [(True, ()), (False, ("fav", "spec-a"))]
    assert p.unload("fav") and [h.names for h in p.loaded()] == [(), ("spec-a",)]
    assert p.unload("spec-a") and p.loaded() == [] and p.held_bytes() == 0  # its base went with it
    assert not p.unload("spec-a")  # nothing left to let go of


def test_a_base_stays_while_a_specialist_on_it_is_held(store):
    p = ModelProvider(store)
    base, spec = p.get("base"), p.get("spec-b")
    assert p.base(spec) is base  # the specialist's base is the one copy the provider holds
    p.unload("base")
    assert [(h.name, h.names) for h in p.loaded()] == [("base", ()), ("spec-b", ("spec-b",))]
    p.unload("spec-b")
    assert p.loaded() == []


def test_a_specialist_that_fails_to_load_leaves_no_base_behind(store, tiny_model_dir, tmp_path):
    from tinygpt.runtime.presets import init_adapter

    bad = init_adapter(tiny_model_dir, tmp_path / "bad", rank=4, seed=9)
    (bad / "adapters.safetensors").write_bytes(b"not safetensors")
    s = ModelStore(tmp_path / "models")
    s.add("bad", bad, base=str(tiny_model_dir))
    p = ModelProvider(s)
    with pytest.raises(ModelLoadError, match="does not fit the base"):
        p.get("bad")
    assert p.loaded() == []


def test_footprint_equals_the_bytes_the_loaded_model_holds(store, tmp_path):
    from tinygpt.runtime.presets import InitSpec, init_adapter, init_model

    p = ModelProvider(store)
    spec = p.get("spec-dora")
    want = footprint(spec.path, spec.adapter_path)
    assert list(want) == [str(spec.path.resolve()), str(spec.adapter_path.resolve())]  # base first
    assert sum(want.values()) == p.held_bytes() == unique_nbytes([spec.model])
    # bf16 files are widened to float32 on the CPU backend: the estimate follows the dtype policy
    half = init_model(tmp_path / "half", InitSpec(preset="tiny", dtype="bfloat16"))
    adapter = init_adapter(half, tmp_path / "half-adapter", rank=4, seed=1)
    s = ModelStore(tmp_path / "models")
    s.add("half-spec", adapter, base=str(half))
    loaded = ModelProvider(s).get("half-spec")
    assert sum(footprint(half, adapter).values()) == unique_nbytes([loaded.model])
    assert footprint(half)[str(half.resolve())] > (half / "model.safetensors").stat().st_size  # widened


def test_footprint_of_a_damaged_weights_file_is_a_clear_error(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(ModelLoadError, match="model.safetensors is not a readable safetensors file"):
        footprint(broken)
