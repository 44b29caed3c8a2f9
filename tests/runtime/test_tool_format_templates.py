"""Detection on the real chat templates llama.cpp ships (models/templates/ in the llama-cpp-python sdist, fetched
from the package index once per test session, hash-checked): each family's template picks its format, and
templates that write another syntax (XML arguments, a name right after the marker, `name[ARGS]`) or none get
the generic json format, never a wrong one."""
import tarfile

import pytest

from tinygpt.runtime import index_fetch, tool_formats, vocab

EXPECTED = {
    "Qwen-Qwen2.5-7B-Instruct": "hermes", "Qwen-Qwen3-0.6B": "hermes", "Qwen-QwQ-32B": "hermes",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": "hermes", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "hermes",
    "meta-llama-Llama-3.1-8B-Instruct": "llama3", "meta-llama-Llama-3.2-3B-Instruct": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct": "llama3", "mistralai-Mistral-Nemo-Instruct-2407": "mistral",
    # other syntaxes: not shipped, so the generic fallback rather than a format that would misread them
    "Qwen3-Coder": "json", "GLM-4.6": "json", "Mistral-Small-3.2-24B-Instruct-2506": "json",
    "unsloth-mistral-Devstral-Small-2507": "json", "meetkai-functionary-medium-v3.1": "json",
    "google-gemma-2-2b-it": "json", "microsoft-Phi-3.5-mini-instruct": "json",
}


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdist")
    sdist = index_fetch.download(index_fetch.find_file(vocab.SDIST_PROJECT, vocab.SDIST_FILE), folder)
    with tarfile.open(sdist) as tar:
        return {m.name.rsplit("/", 1)[1][: -len(".jinja")]: tar.extractfile(m).read().decode("utf-8")
                for m in tar.getmembers() if "/models/templates/" in m.name and m.name.endswith(".jinja")}


@pytest.mark.parametrize("name", EXPECTED)
def test_the_real_template_picks_its_format(name, templates):
    assert tool_formats.detect(templates[name]).name == EXPECTED[name]


def test_tinygpts_own_template_is_hermes_and_a_template_without_tools_is_json():
    from tinygpt.runtime.chat_template import CHAT_TEMPLATE

    assert tool_formats.detect(CHAT_TEMPLATE).name == "hermes"
    assert tool_formats.detect("{{ messages[0].content }}").name == tool_formats.detect(None).name == "json"
