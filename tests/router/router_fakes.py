"""Router test helpers, imported by name (this directory has no conftest of mine): a model store of fake model
files (resolving a name reads no weights) and synthetic labelled requests with a planted signal."""
import random

import pytest

from tinygpt.router.data import Example
from tinygpt.router.features import Request
from tinygpt.runtime.store import ModelStore

FILLER = [f"word{i}" for i in range(400)]
DOMAINS = {"fileops": ("ls", "cd", "mv", "cp"), "math": ("add", "multiply"), "weather": ("forecast",)}


def fake_base(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}')
    (path / "model.safetensors").write_bytes(b"not read")
    return path


def fake_adapter(path):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapters.safetensors").write_bytes(b"not read")
    return path


@pytest.fixture
def store(tmp_path):
    s = ModelStore(tmp_path / "models")
    s.add("base", fake_base(tmp_path / "base"))
    return s


def add_specialist(store, tmp_path, name, status="unrated", domain=None, tools=None):
    store.add(name, fake_adapter(tmp_path / "adapters" / name), base="base")
    if status != "unrated":
        store.set_status(name, status)
    if domain is not None or tools is not None:
        store.describe(name, domain=domain, tools=tools)
    return tmp_path / "adapters" / name


def tool_examples(n_per_domain=60, seed=0, text_words=8):
    """Requests whose text is random filler and whose tools say the domain: only the tools carry the signal."""
    rng = random.Random(seed)
    out = []
    for domain, tools in DOMAINS.items():
        for i in range(n_per_domain):
            text = " ".join(rng.choice(FILLER) for _ in range(text_words))
            offered = tuple(rng.sample(tools, rng.randint(1, len(tools))))
            out.append(Example(Request(text, offered), domain, f"{domain}-{i}"))
    return out
