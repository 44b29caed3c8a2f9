"""Adapters trained here are mlx-lm adapters: mlx-lm loads them and decodes greedily the same ids as tinygpt's
runtime (a specialist: base + adapter), for LoRA, DoRA and full fine-tuning; `mlx_lm.generate --adapter-path`
prints the same text; `tinygpt fuse` makes a standalone model with the same outputs; `--register` puts the
adapter in the model store as a specialist."""
import json
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.transcript import Transcript
from tinygpt.trainer import sft
from tinygpt.trainer.config import resolve

PROMPT = [{"role": "user", "content": "what hour is it in Lima?"}]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, task_data, tmp_path_factory):
    """A trained adapter per method (a few steps at a high learning rate, so outputs move off the base's)."""
    root = tmp_path_factory.mktemp("compat")
    out = {}
    for method, extra in (("lora", {}), ("dora", {}),
                          ("full", {"learning_rate": 3e-3})):
        cfg = resolve({"model": str(tiny_model_dir), "data": str(task_data / "data" / "rows.jsonl"),
                       "out": str(root / method), "method": method, "iters": 12, "batch_size": 8,
                       "learning_rate": 1e-2, "valid_fraction": 0.0, "save_every": 0, **extra})
        out[method] = sft.run(cfg)["adapter"]
    return out


def prompt_ids(engine) -> list[int]:
    t = Transcript(engine=engine, tools=None)
    return t.add_messages(*PROMPT)


def runtime_ids(base_dir, adapter=None, n=24) -> list[int]:
    engine = Engine(load(str(base_dir), adapter_path=adapter))
    ids = engine.generate(prompt_ids(engine), SamplingParams(temperature=0.0, max_tokens=n)).output_ids
    return [t for t in ids if t not in engine.tokenizer.eos_token_ids]


def mlx_lm_ids(base_dir, adapter, prompt, n=24) -> list[int]:
    from mlx_lm import load as mlx_load, stream_generate

    model, tokenizer = mlx_load(str(base_dir), adapter_path=str(adapter))
    return [r.token for r in stream_generate(model, tokenizer, prompt=prompt, max_tokens=n)
            if r.token not in tokenizer.eos_token_ids]


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_mlx_lm_and_tinygpt_decode_the_same_ids(method, adapters, tiny_model_dir, tiny_engine):
    ours = runtime_ids(tiny_model_dir, adapters[method])
    theirs = mlx_lm_ids(tiny_model_dir, adapters[method], prompt_ids(tiny_engine))
    assert ours == theirs and len(ours) >= 4
    assert ours != runtime_ids(tiny_model_dir)  # the adapter changed what the model says


def test_mlx_lm_generate_cli_loads_the_adapter(adapters, tiny_model_dir, tiny_engine):
    text = tiny_engine.tokenizer.decode(runtime_ids(tiny_model_dir, adapters["lora"]))
    r = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model", str(tiny_model_dir), "--adapter-path",
                        adapters["lora"], "--prompt", PROMPT[0]["content"], "--max-tokens", "24", "--temp", "0",
                        "--verbose", "False"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == text.strip()


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_fuse_makes_a_standalone_model_with_the_same_outputs(method, adapters, tiny_model_dir, tmp_path):
    out = tmp_path / "fused"
    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "fuse", "--model", str(tiny_model_dir), "--adapter",
                        adapters[method], "--out", str(out), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == str(out)
    fused, specialist = load(str(out)), load(str(tiny_model_dir), adapter_path=adapters[method])
    assert fused.tokenizer_hash == specialist.tokenizer_hash  # tokenizer files copied byte for byte
    x = mx.array([prompt_ids(Engine(fused))])
    a, b = np.array(fused.model(x)), np.array(specialist.model(x))
    assert np.abs(a - b).max() < 1e-4
    assert runtime_ids(out) == runtime_ids(tiny_model_dir, adapters[method])
    marker = json.loads((out / "tinygpt.json").read_text())
    assert marker["trained_by"] == "tinygpt fuse" and marker["fused_from"]["adapter"].endswith("adapter")


def test_fuse_never_replaces_a_users_directory(adapters, tiny_model_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "fuse", "--model", str(tiny_model_dir), "--adapter",
                        adapters["lora"], "--out", str(mine), "--force"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("tinygpt fuse: error: ")
    assert "never replaces it, even with --force" in r.stderr and [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert "tinygpt did not make it" in r.stderr and "init-model" not in r.stderr


def test_fuse_refuses_an_adapter_made_for_another_base_and_makes_new_parents(adapters, tiny_model_dir, tmp_path,
                                                                             capsys, store_env):
    """The same shapes (another seed) would load: the adapter's recorded base fingerprint refuses it, as
    `tinygpt models add` does; a --out under folders that do not exist yet gets them made."""
    from tinygpt import cli
    from tinygpt.runtime.presets import InitSpec, init_model

    other = init_model(tmp_path / "other", InitSpec(preset="tiny", seed=1))
    code = cli.main(["fuse", "--model", str(other), "--adapter", adapters["lora"], "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "was made for another base model" in err and "\n" not in err
    assert not (tmp_path / "x").exists()
    assert cli.main(["models", "add", "c3", "--base", str(other), "--adapter", adapters["lora"]]) == 2
    assert "was made for another base model" in capsys.readouterr().err  # the one rule, both commands
    out = tmp_path / "new" / "parent" / "fused"
    assert cli.main(["fuse", "--model", str(tiny_model_dir), "--adapter", adapters["lora"], "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "tinygpt.json").is_file()


def test_register_puts_the_adapter_in_the_store_as_a_specialist(tiny_model_dir, task_data, tmp_path, store_env):
    from tinygpt.runtime.presets import is_untrained
    from tinygpt.runtime.store import ModelStore

    cfg = resolve({"model": str(tiny_model_dir), "data": str(task_data / "data" / "rows.jsonl"),
                   "out": str(tmp_path / "run"), "iters": 3, "valid_fraction": 0.0, "register": "weather-spec"})
    summary = sft.run(cfg)
    assert summary["registered"] == "weather-spec"
    entry = ModelStore().entry("weather-spec")
    assert entry.kind == "specialist" and entry.path == summary["adapter"]
    loaded = load("weather-spec")
    assert loaded.adapter_path is not None and not is_untrained(loaded)  # a trained adapter on a random base
    marker = json.loads((tmp_path / "run" / "adapter" / "tinygpt.json").read_text())
    assert marker["trained_by"] == "tinygpt train" and marker["base_fingerprint"] == loaded.identity.base
