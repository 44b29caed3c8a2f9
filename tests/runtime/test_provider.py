"""The provider: specialists share their base's weights, equal a fused copy of base+adapter, have their own
identity (never another model's saved KV), and models are dropped by LRU within a budget and by keep-alive."""
import shutil

import pytest

from tinygpt.runtime.models import Identity, adapter_fingerprint, fingerprint
from tinygpt.runtime.provider import ModelProvider, unique_nbytes
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


@pytest.fixture(scope="module")
def three_bases(store, tmp_path_factory):
    from tinygpt.runtime.presets import InitSpec, init_model

    root = tmp_path_factory.mktemp("bases")
    for seed in (1, 2):
        init_model(root / f"m{seed}", InitSpec(preset="tiny", seed=seed))
    return [str(root / "m1"), str(root / "m2")]


def test_lru_drops_least_recently_used_within_the_budget(store, three_bases):
    probe = ModelProvider(store)
    one = unique_nbytes([probe.get("base").model])
    p = ModelProvider(store, memory_budget_bytes=int(2.5 * one))
    p.get("base")
    p.get(three_bases[0])
    p.get("base")  # now the most recent
    p.get(three_bases[1])
    assert [h.name for h in p.loaded()] == ["base", "m2"]
    assert p.held_bytes() <= int(2.5 * one)


def test_a_base_stays_while_a_specialist_is_held_and_the_asked_model_is_always_served(store, three_bases):
    p = ModelProvider(store, memory_budget_bytes=1)  # smaller than anything
    p.get("spec-a")
    assert [h.name for h in p.loaded()] == ["base", "spec-a"]  # over budget, but neither may go
    p.get(three_bases[0])
    assert [h.name for h in p.loaded()] == ["m1"]  # the specialist went first, then its base


def test_keep_alive_drops_idle_models_and_using_a_specialist_keeps_its_base(store):
    now = [0.0]
    p = ModelProvider(store, keep_alive_s=8, clock=lambda: now[0])
    p.get("spec-a")
    now[0] = 5.0
    p.get("spec-b")
    now[0] = 10.0
    assert p.expire() == ["spec-a"]
    assert [h.name for h in p.loaded()] == ["base", "spec-b"]
    now[0] = 20.0
    assert sorted(p.expire()) == ["base", "spec-b"]
    assert p.loaded() == []
