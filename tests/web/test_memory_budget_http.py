"""The memory budget seen over HTTP, through the real ollama client: /api/ps lists exactly the loaded models with
their bytes in memory, a specialist loads next to its base within a budget that fits one base, another base
makes the idle ones unload (and the provider lets go of them), and a model whose weights cannot be read is a
404 that says so."""
import shutil

import ollama
import pytest

ONE = 571_392  # bytes of the tiny preset's float32 weights
ADAPTER = 38_912  # a rank-4 adapter's


@pytest.fixture(scope="module")
def store_root(tiny_model, tmp_path_factory):
    from tinygpt.runtime.presets import InitSpec, init_adapter, init_model
    from tinygpt.runtime.store import ModelStore

    root = tmp_path_factory.mktemp("budget-http")
    store = ModelStore(root / "models")
    store.add("other", init_model(root / "other", InitSpec(preset="tiny", seed=7)))
    store.add("spec", init_adapter(tiny_model, root / "adapter", rank=4, seed=5), base=str(tiny_model))
    broken = root / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    store.add("broken", broken)
    return str(root / "models")


@pytest.fixture(scope="module")
def srv(start_server, store_root):
    return start_server(store=store_root, model_memory_mb=1)  # 1 MiB: one tiny base (+ adapters), not two


def ps(client) -> dict[str, tuple[int, int]]:
    return {m.model: (m.size, m.size_vram) for m in client.ps().models}


def test_ps_shows_what_is_loaded_with_its_bytes_and_the_budget_unloads_idle_models(srv, tiny_model):
    c = ollama.Client(host=srv.url, timeout=60)
    base = f"{tiny_model.name}:latest"
    assert ps(c) == {base: (ONE, 0)}  # loaded at start; on the CPU backend nothing is in VRAM
    c.chat(model="spec", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
    assert ps(c) == {base: (ONE, 0), "spec:latest": (ONE + ADAPTER, 0)}  # it runs on the same base weights
    c.chat(model="other", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
    assert ps(c) == {"other:latest": (ONE, 0)}  # two bases do not fit: the idle ones left
    held = srv.app.state.tg.catalog.provider.loaded()
    assert [(h.names, h.nbytes) for h in held] == [(("other",), ONE)]  # and nothing keeps their weights alive
    r = c.generate(model=tiny_model.name, prompt="hi", options={"num_predict": 2})
    assert r.load_duration > 0 and ps(c) == {base: (ONE, 0)}  # loads again on demand


def test_a_model_whose_weights_cannot_be_read_is_a_404_that_says_why(srv):
    c = ollama.Client(host=srv.url, timeout=60)
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model="broken", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    assert "cannot be served" in e.value.error and "not a readable safetensors file" in e.value.error
