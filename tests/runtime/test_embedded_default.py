"""The embedded default model: `default` (and no --model) is the world base shipped in the package, loaded read-only.

Nothing is created on first use: loading and generating leave the package directory and the user cache as they were.
"""
import argparse
import json
from pathlib import Path

import pytest

import tinygpt.runtime
from tinygpt.runtime.store import DEFAULT, DEFAULT_DIR, ModelStore, StoreError

PACKAGED = Path(tinygpt.runtime.__file__).resolve().parent / "assets" / "world-base"


def state(root: Path) -> dict:
    """Every path under `root` with its size and modification time: any write shows."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYGPT_CONFIG", "")
    return tmp_path / "cache"


def test_default_names_the_packaged_world_base(cache):
    from tinygpt.config import Config
    from tinygpt.model_arg import model_path

    assert DEFAULT_DIR == PACKAGED and (PACKAGED / "config.json").is_file()
    assert model_path(Config()) == model_path(Config(model="default")) == str(PACKAGED)
    assert model_path(Config(model="elsewhere")) == "elsewhere"
    store = ModelStore()
    assert store.resolve(DEFAULT).base == PACKAGED and store.resolve(DEFAULT).adapter is None
    (entry,) = [e for e in store.entries() if e.name == DEFAULT]
    assert (entry.kind, entry.path, entry.source) == ("base", str(PACKAGED), "embedded")
    with pytest.raises(StoreError, match="embedded default model, shipped with tinygpt"):
        store.remove(DEFAULT)
    config = json.loads((PACKAGED / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("qwen3", 4, 256)


def test_default_loads_and_generates_greedily_without_writing_anything(cache):
    from tinygpt.config import load_config
    from tinygpt.model_arg import load_engine, resolve
    from tinygpt.runtime.presets import is_untrained
    from tinygpt.runtime.sampling import SamplingParams

    before = state(PACKAGED)
    engine = load_engine(resolve(argparse.Namespace(model=None)))
    assert engine.loaded.path == PACKAGED and not is_untrained(engine.loaded) and engine.loaded.has_chat_template
    ids = engine.encode_chat([{"role": "user", "content": "List the files in the current directory."}])
    params = SamplingParams(temperature=0.0, max_tokens=24)
    first, again = engine.generate(ids, params), engine.generate(ids, params)
    assert first.output_ids and first.output_ids == again.output_ids and first.text == again.text
    # trained, not random: a random model's greedy tokens have logprob about -log(vocab) = -7.6
    assert sum(first.logprobs) / len(first.logprobs) > -2.0
    assert load_config().model == "" and state(PACKAGED) == before and not cache.exists()
