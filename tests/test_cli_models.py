"""`tinygpt models` and `--model NAME`: the registry from the command line, names in every model command, and
config precedence (flag > config file > default)."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from tinygpt import cli

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache and no config file, for this process and its children."""
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYGPT_CONFIG", "")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    from tinygpt.runtime.presets import init_adapter

    return init_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "ad", rank=2, seed=7)


def models(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["models", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_add_alias_show_rm_round_trip(cache, capsys, tiny_model_dir, adapter_dir):
    assert models(capsys, "add", "base", str(tiny_model_dir))[0] == 0
    code, out, _ = models(capsys, "add", "my-spec", "--base", "base", "--adapter", str(adapter_dir))
    assert code == 0 and out.startswith("registered specialist my-spec")
    assert models(capsys, "alias", "fav", "my-spec") == (0, "fav -> my-spec\n", "")
    code, out, _ = models(capsys, "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "STATUS", "BASE", "PATH"]
    from tinygpt.runtime.store import DEFAULT_DIR

    assert lines[1].split() == ["default", "base", "unrated", "-", str(DEFAULT_DIR)]
    assert lines[3].split()[:4] == ["my-spec", "specialist", "unrated", "base"]
    assert lines[4].split() == ["fav", "alias", "-", "-", "->", "my-spec"]
    code, out, _ = models(capsys, "ls", "--json")
    data = json.loads(out)
    assert [m["name"] for m in data["models"]] == ["default", "base", "my-spec"]
    assert data["aliases"] == {"fav": "my-spec"}
    code, out, _ = models(capsys, "show", "fav", "--json")
    shown = json.loads(out)
    from tinygpt.runtime.models import adapter_fingerprint, fingerprint

    assert shown["identity"] == f"{fingerprint(tiny_model_dir)}+{adapter_fingerprint(adapter_dir)}"
    assert (shown["kind"], shown["alias_of"], shown["adapter"]) == ("alias", "my-spec", str(adapter_dir.resolve()))
    assert models(capsys, "rm", "fav")[1] == "removed alias fav\n"
    assert models(capsys, "rm", "my-spec")[1] == "unregistered specialist my-spec; its files were left in place\n"
    assert (adapter_dir / "adapters.safetensors").is_file()


@pytest.mark.parametrize("argv, says", [
    (["show", "nope"], "tinygpt models: error: unknown model 'nope': not a registered name, alias or local "
                       "directory. Known: default, base, fav."),
    (["rm", "nope"], "unknown model 'nope'"),
    (["alias", "x", "nope"], "unknown model 'nope'"),
    (["add", "a/b", "DIR"], "invalid model name 'a/b'"),
    (["add", "x", "/no/such/dir"], "no directory at '/no/such/dir'"),
    (["add", "base", "DIR"], "the name 'base' is taken"),
    (["rm", "base"], "'base' is used by fav"),
    (["pull", "not a hub id"], "'not a hub id' is not a hub id"),
])
def test_user_mistakes_are_one_line_and_exit_2(cache, capsys, tiny_model_dir, argv, says):
    assert models(capsys, "add", "base", str(tiny_model_dir))[0] == 0
    assert models(capsys, "alias", "fav", "base")[0] == 0
    code, out, err = models(capsys, *[str(tiny_model_dir) if a == "DIR" else a for a in argv])
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_add_needs_a_directory_or_base_and_adapter(cache, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["models", "add", "x"])
    assert stop.value.code == 2 and "add takes a directory" in capsys.readouterr().err


def test_pull_offline_says_so_in_one_line(cache):
    r = subprocess.run(TINYGPT + ["models", "pull", "no-such-org-xyz/no-such-model"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "could not be fetched from the Hugging Face hub (HF_HUB_OFFLINE is set" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_rm_default_is_refused_and_touches_nothing(cache, capsys):
    from tinygpt.runtime.store import DEFAULT_DIR

    before = sorted(p.name for p in DEFAULT_DIR.iterdir())
    code, _, err = models(capsys, "rm", "default")
    assert code == 2 and "'default' is the embedded default model, shipped with tinygpt" in err
    assert len(err.strip().splitlines()) == 1 and sorted(p.name for p in DEFAULT_DIR.iterdir()) == before


def test_model_flag_takes_aliases_and_specialists(cache, capsys, tiny_model_dir, adapter_dir):
    from tinygpt.model_arg import load_engine, resolve

    models(capsys, "add", "base", str(tiny_model_dir))
    models(capsys, "add", "my-spec", "--base", "base", "--adapter", str(adapter_dir))
    models(capsys, "alias", "fav", "my-spec")
    spec = load_engine(resolve(argparse.Namespace(model="my-spec"))).loaded
    fav = load_engine(resolve(argparse.Namespace(model="fav"))).loaded
    base = load_engine(resolve(argparse.Namespace(model="base"))).loaded
    assert (spec.name, fav.name, base.name) == ("my-spec", "fav", "base")
    assert spec.fingerprint == fav.fingerprint != base.fingerprint and spec.adapter_path == adapter_dir.resolve()


def test_generate_runs_a_specialist_through_an_alias(cache, capsys, tiny_model_dir, adapter_dir):
    models(capsys, "add", "base", str(tiny_model_dir))
    models(capsys, "add", "my-spec", "--base", "base", "--adapter", str(adapter_dir))
    models(capsys, "alias", "fav", "my-spec")
    r = subprocess.run(TINYGPT + ["generate", "--model", "fav", "--max-tokens", "3", "--json", "hi"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["output_ids"]) >= 1


def test_config_precedence_flag_over_file_over_default(cache, tmp_path, monkeypatch):
    from tinygpt.model_arg import resolve

    conf = tmp_path / "config.toml"
    conf.write_text('model = "fav"\ntrajectory_dir = "runs/from-file"\ngrammar_backend = "outlines"\n')
    monkeypatch.setenv("TINYGPT_CONFIG", str(conf))
    none = argparse.Namespace(model=None, trajectory_dir=None, grammar_backend=None)
    cfg = resolve(none)
    assert (cfg.model, cfg.trajectory_dir, cfg.grammar_backend, cfg.prefix_cache_mb) == (
        "fav", "runs/from-file", "outlines", 2048)
    flags = argparse.Namespace(model="other", trajectory_dir="runs/flag", grammar_backend="llguidance")
    cfg = resolve(flags)
    assert (cfg.model, cfg.trajectory_dir, cfg.grammar_backend) == ("other", "runs/flag", "llguidance")


def test_negative_keep_alive_in_the_config_is_refused(cache, tmp_path, monkeypatch):
    from tinygpt.config import ConfigError, load_config

    conf = tmp_path / "config.toml"
    conf.write_text("model_keep_alive_s = -1\n")
    monkeypatch.setenv("TINYGPT_CONFIG", str(conf))
    with pytest.raises(ConfigError, match="key 'model_keep_alive_s' must be >= 0, got -1"):
        load_config()


def test_add_takes_the_adapter_directory_after_base(cache, capsys, tiny_model_dir, adapter_dir):
    assert models(capsys, "add", "base", str(tiny_model_dir))[0] == 0
    code, out, err = models(capsys, "add", "spec", "--base", "base", str(adapter_dir))  # as --help shows it
    assert code == 0 and out.startswith("registered specialist spec"), err


def test_a_damaged_registry_leaves_the_served_model_listed(tmp_path, tiny_model_dir):
    from tinygpt.runtime.catalog import Catalog
    from tinygpt.runtime.store import ModelStore

    store = ModelStore(tmp_path / "store")
    catalog = Catalog(str(tiny_model_dir), store=store)
    store.alias("fav", str(tiny_model_dir))
    assert catalog.names() == [catalog.primary, "default", "fav"]  # the embedded default is always there
    (tmp_path / "store" / "registry.json").write_text("garbage{")
    assert catalog.names() == [catalog.primary]  # not a StoreError on every request


def test_models_alone_lists(cache, capsys):
    code, out, _ = models(capsys)
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "KIND", "STATUS", "BASE", "PATH"]
