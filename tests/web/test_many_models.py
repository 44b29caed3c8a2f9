"""One server, many models: /v1/models and /api/tags list the served model and every model in the store (bases
and specialists), each request names one, and an unknown name is a 404 that lists what exists, in OpenAI's and
Ollama's error shapes, through the real openai and ollama clients."""
from pathlib import Path

import ollama
import openai
import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams

USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def store_root(tiny_model, tmp_path_factory):
    from tinygpt.runtime.presets import InitSpec, init_adapter, init_model
    from tinygpt.runtime.store import ModelStore

    root = tmp_path_factory.mktemp("many")
    store = ModelStore(root / "models")
    store.add("other", init_model(root / "other", InitSpec(preset="tiny", seed=7)))
    store.add("spec", init_adapter(tiny_model, root / "adapter", rank=4, seed=5), base=str(tiny_model))
    return str(root / "models")


@pytest.fixture(scope="module")
def many(start_server, store_root):
    return start_server(store=store_root)


@pytest.fixture(scope="module")
def oai(many):
    return openai.OpenAI(base_url=many.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def oll(many):
    return ollama.Client(host=many.url, timeout=60)


def test_every_servable_model_is_listed_on_both_surfaces(oai, oll, tiny_model):
    names = [tiny_model.name, "default", "other", "spec"]  # the embedded default is always servable
    assert [m.id for m in oai.models.list()] == names
    assert oai.models.retrieve("spec").id == "spec"
    listed = {m.model: m for m in oll.list().models}
    assert list(listed) == [f"{n}:latest" for n in names]
    assert listed["spec:latest"].digest != listed[f"{tiny_model.name}:latest"].digest
    assert listed["spec:latest"].size < listed[f"{tiny_model.name}:latest"].size  # the adapter's bytes only


def test_each_request_runs_on_the_model_it_names(oai, oll, tiny_model, store_root):
    from tinygpt.runtime.store import ModelStore

    other = Engine(load("other", store=ModelStore(store_root)))
    want = other.generate(other.encode_chat(USER), SamplingParams(max_tokens=6)).output_ids
    r = oai.chat.completions.create(model="other", messages=USER, max_tokens=6, temperature=0,
                                    extra_body={"return_token_ids": True})
    assert r.model == "other" and r.choices[0].token_ids == want
    g = oll.chat(model="other:latest", messages=USER, options={"temperature": 0, "num_predict": 6})
    assert g.model == "other:latest" and g.eval_count == 6
    spec = oai.chat.completions.create(model="spec", messages=USER, max_tokens=3, temperature=0, logprobs=True)
    base = oai.chat.completions.create(model=tiny_model.name, messages=USER, max_tokens=3, temperature=0,
                                       logprobs=True)
    assert spec.model == "spec" and base.model == tiny_model.name
    logprobs = [[t.logprob for t in r.choices[0].logprobs.content] for r in (spec, base)]
    assert logprobs[0] != logprobs[1]
    assert {m.model for m in oll.ps().models} >= {"other:latest", "spec:latest", f"{tiny_model.name}:latest"}


def test_an_unknown_model_is_a_404_that_lists_what_exists(oai, oll, tiny_model):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="nope", messages=USER, max_tokens=2)
    err = e.value.body
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert all(repr(n) in err["message"] for n in (tiny_model.name, "other", "spec")) and "'nope'" in err["message"]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")
    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model="nope", messages=USER)
    assert e.value.status_code == 404
    assert "'nope'" in e.value.error and "'other:latest'" in e.value.error and "'spec:latest'" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        oll.generate(model="nope", prompt="hi")
    assert e.value.status_code == 404


def test_show_names_a_specialists_base_and_adapter(oll, tiny_model, store_root):
    shown = oll.show("spec")
    adapter = (Path(store_root).parent / "adapter").resolve()
    assert f"FROM {tiny_model}" in shown.modelfile and f"ADAPTER {adapter}" in shown.modelfile, shown.modelfile
    assert "ADAPTER" not in oll.show(tiny_model.name).modelfile
