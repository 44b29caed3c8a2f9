"""Fixtures for the runtime tests: tiny random models with each kind of tokenizer, and a faster BLAS setting.

`qwen_engine` uses the real 151,936-slot Qwen vocabulary (tokenizer 151,669: the model has more logits than
the tokenizer has tokens); `texttag_engine` has a tokenizer without `<tool_call>`/`</tool_call>` tokens (so
calls are spelled as text), with 6 fewer tokens than the model has logits. `llama3_engine` and `mistral_engine`
are tiny models of those families (real vocabulary, special tokens and chat template); `plain_engine` is the
tiny BPE model with a chat template that names no tool-call format (so the generic json format is picked).
"""
import ctypes
import json
import shutil

import pytest


@pytest.fixture(scope="module")
def one_blas_thread():
    """Tiny models decode ~3x faster on one OpenBLAS thread (no thread hand-off per small matmul)."""
    from tinygpt import blas

    path = blas.activate().path  # the library MLX binds to (not numpy's private copy)
    if path is None:
        yield
        return
    lib = ctypes.CDLL(path)
    before = lib.openblas_get_num_threads()
    lib.openblas_set_num_threads(1)
    yield
    lib.openblas_set_num_threads(before)


@pytest.fixture(scope="session")
def bpe_engine(tiny_model_dir):
    """An engine of its own on the tiny BPE model (690 tokens; <tool_call> is one added token)."""
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    return Engine(load(str(tiny_model_dir)))


@pytest.fixture(scope="session")
def qwen_engine(tmp_path_factory):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load
    from tinygpt.runtime.presets import InitSpec, init_model

    path = init_model(tmp_path_factory.mktemp("models") / "tiny-qwen", InitSpec(preset="tiny", vocab="qwen"))
    return Engine(load(str(path)))


@pytest.fixture(scope="session")
def texttag_engine(tiny_model_dir, tmp_path_factory):
    """The tiny BPE model with every added token from <tool_call> on removed from its tokenizer."""
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    out = tmp_path_factory.mktemp("models") / "tiny-texttag"
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    spec = json.loads((out / "tokenizer.json").read_text())
    cut = next(t["id"] for t in spec["added_tokens"] if t["content"] == "<tool_call>")
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] < cut]
    (out / "tokenizer.json").write_text(json.dumps(spec))
    return Engine(load(str(out)))


def _family_engine(tmp_path_factory, vocab: str):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load
    from tinygpt.runtime.presets import InitSpec, init_model

    path = init_model(tmp_path_factory.mktemp("models") / f"tiny-{vocab}", InitSpec(preset="tiny", vocab=vocab))
    return Engine(load(str(path)))


@pytest.fixture(scope="session")
def llama3_engine(tmp_path_factory):
    return _family_engine(tmp_path_factory, "llama3")


@pytest.fixture(scope="session")
def mistral_engine(tmp_path_factory):
    return _family_engine(tmp_path_factory, "mistral")


PLAIN_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="session")
def plain_engine(tiny_model_dir, tmp_path_factory):
    """The tiny BPE model with a ChatML template that knows no tools."""
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    out = tmp_path_factory.mktemp("models") / "tiny-plain"
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    (out / "chat_template.jinja").write_text(PLAIN_TEMPLATE)
    return Engine(load(str(out)))
