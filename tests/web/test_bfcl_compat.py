"""What the official BFCL CLI needs from `tinygpt serve`, through the real openai client and real HTTP:
a model answers to its directory (however spelled) and to a hub id recorded for it (a pulled model's source, or
a hub-id alias in the store), all on one loaded model; with an API key, a keyless GET /v1/models (BFCL's
readiness probe) gets 200 with an empty list (or the names, or 401, by --models-without-key) while a wrong key
is still refused; tools reach the chat template exactly as sent while grammars and validation read the fields
tinygpt models."""
import json
import os

import httpx
import openai
import pytest

from tinygpt.runtime.presets import InitSpec, init_model
from tinygpt.runtime.store import ModelStore

USER = [{"role": "user", "content": "list the files"}]
HUB_ID = "Qwen/Qwen3-0.6B"            # what BFCL's Qwen handlers send without --local-model-path
CHAT_NAME = "openbmb/MiniCPM-SALA-FC"  # what BFCL's OpenAI-compatible chat handler sends


@pytest.fixture(scope="module")
def store_root(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("bfcl-store")
    store = ModelStore(root / "models")
    store.add("pulled", init_model(root / "pulled", InitSpec(preset="tiny", seed=3)), source=HUB_ID)
    store.alias(CHAT_NAME, str(tiny_model))
    return str(root / "models")


@pytest.fixture(scope="module")
def srv(start_server, store_root):
    return start_server(store=store_root)


@pytest.fixture(scope="module")
def oai(srv):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client, model, **kw):
    return client.chat.completions.create(model=model, messages=USER, max_tokens=2, temperature=0, **kw)


def test_a_model_answers_to_its_directory_however_spelled(oai, srv, tiny_model, tmp_path):
    link = tmp_path / "link-to-model"
    link.symlink_to(tiny_model, target_is_directory=True)
    spellings = [str(tiny_model), str(tiny_model) + "/", os.path.relpath(tiny_model),
                 str(tiny_model.parent / ".." / tiny_model.parent.name / tiny_model.name), str(link)]
    fingerprints = set()
    for spelled in spellings:
        r = ask(oai, spelled)
        assert r.model == tiny_model.name, spelled
        fingerprints.add(r.system_fingerprint)
    assert len(fingerprints) == 1
    assert oai.models.retrieve(str(tiny_model)).id == tiny_model.name
    # Served under its one name: no lane, card or load per spelling.
    assert not any("/" in name for name in srv.worker.cards)


def test_a_pulled_models_hub_id_and_a_hub_id_alias_are_answered(oai, srv, tiny_model):
    listed = [m.id for m in oai.models.list()]
    assert CHAT_NAME in listed and HUB_ID not in listed  # a source is answered, not listed as a second model
    assert ask(oai, HUB_ID).model == "pulled"
    alias, base = ask(oai, CHAT_NAME), ask(oai, tiny_model.name)
    assert alias.model == CHAT_NAME and alias.system_fingerprint == base.system_fingerprint
    held = [h for h in srv.worker.models.provider.loaded() if h.base == tiny_model.resolve()]
    assert len(held) == 1 and CHAT_NAME in held[0].names and len(held[0].names) == 2  # one copy, both names


def test_a_directory_that_is_no_served_model_is_a_404_and_is_not_loaded(oai, srv, tmp_path):
    elsewhere = init_model(tmp_path / "not-served", InitSpec(preset="tiny", seed=9))
    for model in (str(elsewhere), str(tmp_path / "missing"), "Org/not-recorded", "bad\x00name"):
        with pytest.raises(openai.NotFoundError) as e:
            ask(oai, model)
        assert e.value.body["code"] == "model_not_found"
    assert all(h.base != elsewhere.resolve() for h in srv.worker.models.provider.loaded())


@pytest.fixture(scope="module")
def keyed(start_server):
    return {how: start_server(api_key="k3y", models_without_key=how) for how in ("empty", "list", "refuse")}


def test_a_keyless_model_list_is_empty_by_default_and_a_wrong_key_is_refused(keyed, tiny_model):
    url = keyed["empty"].url
    probe = httpx.get(url + "/v1/models")  # BFCL's readiness probe: no Authorization header at all
    assert probe.status_code == 200 and probe.json() == {"object": "list", "data": []}
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    keyed_list = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k3y"}).json()
    assert [m["id"] for m in keyed_list["data"]] == [tiny_model.name, "default"]  # and the embedded default
    for path in (f"/v1/models/{tiny_model.name}", "/health", "/api/tags", "/openapi.json"):
        assert httpx.get(url + path).status_code == 401, path
    chat = httpx.post(url + "/v1/chat/completions", json={"model": tiny_model.name, "messages": USER})
    assert chat.status_code == 401


def test_models_without_key_list_shows_names_and_refuse_is_a_401(keyed, tiny_model):
    from tinygpt.cli_serve import parser
    from tinygpt.web.config import MODELS_WITHOUT_KEY

    assert parser().parse_args([]).models_without_key == "empty"
    assert next(a for a in parser()._actions if a.dest == "models_without_key").choices == MODELS_WITHOUT_KEY
    listed = httpx.get(keyed["list"].url + "/v1/models")
    assert listed.status_code == 200 and [m["id"] for m in listed.json()["data"]] == [tiny_model.name, "default"]
    refused = httpx.get(keyed["refuse"].url + "/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


TOOLS = [{"type": "function", "x-origin": "bfcl",
          "function": {"name": "ls", "description": "List a directory.",
                       "parameters": {"type": "object", "required": [],
                                      "properties": {"a": {"type": "boolean", "default": False, "description": "-a"}}},
                       "response": {"type": "dict", "properties": {"files": {"type": "array"}}}}},
         {"type": "function", "function": {"name": "cd", "strict": False,
                                           "parameters": {"type": "object",
                                                          "properties": {"folder": {"enum": ["docs", "src"]}},
                                                          "required": ["folder"]}}}]


def test_tools_reach_the_template_exactly_as_sent(srv, tiny_model):
    body = {"model": tiny_model.name, "messages": USER, "tools": TOOLS, "max_tokens": 1, "return_token_ids": True}
    r = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    text = srv.worker.cards[tiny_model.name].tokenizer.decode(r.json()["prompt_token_ids"])
    rendered = "<tools>" + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in TOOLS) + "\n</tools>"
    assert rendered in text
    assert "null" not in text  # nothing the client left out is filled in (no "strict": null, "description": null)


def test_legacy_functions_reach_the_template_as_sent(srv, tiny_model):
    fn = dict(TOOLS[0]["function"])
    body = {"model": tiny_model.name, "messages": USER, "functions": [fn], "max_tokens": 1, "return_token_ids": True}
    r = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    text = srv.worker.cards[tiny_model.name].tokenizer.decode(r.json()["prompt_token_ids"])
    assert "\n" + json.dumps({"type": "function", "function": fn}) + "\n" in text


def test_the_grammar_and_validation_still_read_the_modeled_fields(oai, tiny_model):
    r = oai.chat.completions.create(model=tiny_model.name, messages=USER,
                                    tools=TOOLS, max_tokens=48, temperature=0,
                                    tool_choice={"type": "function", "function": {"name": "cd"}})
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "cd" and json.loads(call.function.arguments)["folder"] in ("docs", "src")
    bad = [dict(TOOLS[1], function=dict(TOOLS[1]["function"], name=7))]
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=tiny_model.name, messages=USER, tools=bad, max_tokens=2)
    assert "tools" in e.value.body["message"]
