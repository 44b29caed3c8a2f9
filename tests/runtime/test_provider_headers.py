"""Trajectory headers record the model's name and full identity (base + adapter fingerprints)."""
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import fingerprint
from tinygpt.runtime.provider import ModelProvider
from tinygpt.runtime.recording import make_header
from tinygpt.runtime.store import ModelStore
from tinygpt.tools.catalog import open_filesystem
from tinygpt.tools.fs_tools import fs_toolset


def test_header_names_the_specialist_and_its_identity(tiny_model_dir, tmp_path):
    from tinygpt.runtime.presets import init_adapter

    store = ModelStore(tmp_path / "models")
    store.add("base", tiny_model_dir)
    store.add("spec", init_adapter(tiny_model_dir, tmp_path / "adapter", rank=2, seed=3), base="base")
    provider = ModelProvider(store)
    headers = {}
    for name in ("base", "spec"):
        engine = Engine(provider.get(name))
        agent = Agent(engine, fs_toolset(open_filesystem("fs:virtual"), timeout_s=None), AgentConfig())
        headers[name] = make_header(engine, agent, task_id="t", split="test")
    fp = fingerprint(tiny_model_dir)
    spec = provider.get("spec")
    assert (headers["base"].model, headers["base"].model_fingerprint, headers["base"].adapter_version) == (
        "base", fp, None)
    assert (headers["spec"].model, headers["spec"].model_fingerprint, headers["spec"].adapter_version) == (
        "spec", f"{fp}+{spec.identity.adapter}", spec.identity.adapter)
    assert spec.identity.adapter is not None and str(tmp_path) not in headers["spec"].model
