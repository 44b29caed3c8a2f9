"""`tinygpt serve` as a user runs it: --help, bad flags and models, a busy port, an address not on this machine,
and a real subprocess server (its banner appears once it accepts connections)."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tinygpt.cli_serve import main, parser


def test_help_shows_examples(capsys):
    text = parser().format_help()
    assert "tinygpt serve --model" in text and "--api-key" in text and "/openapi.json" in text


def test_bad_flag_values_exit_2(capsys, tiny_model):
    assert main(["--model", str(tiny_model), "--max-tokens", "0"]) == 2
    assert "--max-tokens must be at least 1" in capsys.readouterr().err


def test_missing_model_exits_2_with_a_clear_message(capsys, tmp_path):
    assert main(["--model", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "no model directory" in capsys.readouterr().err


def test_busy_port_exits_1(capsys, tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["--model", str(tiny_model), "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_serve_subprocess_answers_and_stops(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TINYGPT_API_KEY": "k"}
    proc = subprocess.Popen([sys.executable, "-m", "tinygpt.cli_serve", "--model", str(tiny_model), "--port",
                             str(port), "--log-level", "warning", "--models-without-key", "refuse"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # the banner comes only once the socket accepts: no retry needed after it
            lines.append(line)
            if f"http://127.0.0.1:{port}" in line:
                break
        url = f"http://127.0.0.1:{port}"
        r = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"})
        assert r.json()["data"][0]["id"] == tiny_model.name
        assert httpx.get(url + "/v1/models").status_code == 401  # by the flag; the default answers an empty list
    finally:
        proc.terminate()
        proc.wait(30)
    out = "".join(lines) + proc.stdout.read()  # not communicate(): it would skip what the loop buffered
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal after a clean shutdown
    assert "Traceback" not in out and "terminate called" not in out
    assert "API key required" in out
    assert "random weights" in out  # the fixture model comes from init-model, untrained


def test_an_address_not_on_this_machine_exits_2(capsys, tiny_model):
    assert main(["--model", str(tiny_model), "--host", "8.8.8.8", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no network interface of this machine has that address" in err and "--port" not in err


def _bad_models(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a model")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text('{"model_type": "qwen3"}')
    return [tmp_path / "empty", tmp_path / "a_file", tmp_path / "no_weights"]


def _serve_exit(model) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "tinygpt.cli_serve", "--model", str(model), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_bad_model_exits_2_cleanly(tmp_path):
    # The worker thread used to still hold MLX streams at exit: SIGABRT (134) in most runs.
    for model in _bad_models(tmp_path):
        rc, out = _serve_exit(model)
        assert rc == 2, out
        assert out.startswith("tinygpt serve: ") and "Traceback" not in out and "terminate called" not in out


@pytest.mark.slow
def test_bad_model_exits_2_cleanly_ten_times_each(tmp_path):
    for model in _bad_models(tmp_path):
        for _ in range(10):
            rc, out = _serve_exit(model)
            assert rc == 2 and "terminate called" not in out, out


def test_importing_the_command_loads_no_server_or_mlx():
    code = ("import sys, tinygpt.cli_serve as c; c.parser().format_help(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'mlx', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("flags, file, want", [
    ([], None, ("llguidance", 2048)),                                                     # defaults
    ([], 'grammar_backend = "outlines"\nprefix_cache_mb = 77\n', ("outlines", 77)),      # the config file
    (["--grammar-backend", "llguidance", "--prefix-cache-mb", "5"],
     'grammar_backend = "outlines"\nprefix_cache_mb = 77\n', ("llguidance", 5)),         # flags win
])
def test_serve_takes_grammar_backend_and_prefix_cache_from_flag_then_config_then_default(
        tiny_model, tmp_path, monkeypatch, flags, file, want):
    from tinygpt.cli_serve import serve_config
    from tinygpt.web.app import create_app

    path = tmp_path / "config.toml"
    if file is not None:
        path.write_text(file)
        monkeypatch.setenv("TINYGPT_CONFIG", str(path))
    else:
        monkeypatch.delenv("TINYGPT_CONFIG", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/tinygpt/config.toml
    config = serve_config(parser().parse_args(["--model", str(tiny_model), *flags]))
    assert (config.grammar_backend, config.prefix_cache_mb) == want
    from dataclasses import replace

    app = create_app(replace(config, store=str(tmp_path / "store")))
    try:
        assert app.state.tg.scheduler.config.prefix_cache_bytes == want[1] << 20
        lane = app.state.tg.scheduler.lanes[app.state.tg.default]  # loaded at start; read only
        assert lane.prefix_cache.max_bytes == want[1] << 20
    finally:
        app.state.tg.scheduler.stop()


def test_a_bad_grammar_backend_in_the_config_file_exits_2(tiny_model, tmp_path, monkeypatch, capsys):
    path = tmp_path / "config.toml"
    path.write_text('grammar_backend = "xgrammar"\n')
    monkeypatch.setenv("TINYGPT_CONFIG", str(path))
    assert main(["--model", str(tiny_model), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "xgrammar" in err and "--grammar-backend" in err and "Traceback" not in err


@pytest.mark.parametrize("flags, file, want", [([], "model_keep_alive_s = 5\n", 5.0), (["--keep-alive", "3"],
                                              "model_keep_alive_s = 5\n", 3.0), ([], "", -1.0)])
def test_serve_takes_keep_alive_from_flag_then_config_then_default(tiny_model, tmp_path, monkeypatch, flags, file,
                                                                   want):
    from tinygpt.cli_serve import serve_config

    (tmp_path / "config.toml").write_text(file)
    monkeypatch.setenv("TINYGPT_CONFIG", str(tmp_path / "config.toml"))
    assert serve_config(parser().parse_args(["--model", str(tiny_model), *flags])).keep_alive_s == want


@pytest.mark.parametrize("flags, file, want", [
    ([], "model_memory_mb = 512\n", 512),
    (["--model-memory-mb", "64"], "model_memory_mb = 512\n", 64),
    (["--model-memory-mb", "-1"], "model_memory_mb = 512\n", -1),
    ([], "", None)])  # None: the default, half of this machine's memory
def test_serve_takes_the_memory_budget_from_flag_then_config_then_default(tiny_model, tmp_path, monkeypatch, flags,
                                                                           file, want):
    from tinygpt.cli_serve import banner, serve_config
    from tinygpt.config import default_model_memory_mb

    (tmp_path / "config.toml").write_text(file)
    monkeypatch.setenv("TINYGPT_CONFIG", str(tmp_path / "config.toml"))
    config = serve_config(parser().parse_args(["--model", str(tiny_model), *flags]))
    want = default_model_memory_mb() if want is None else want
    assert config.model_memory_mb == want
    budget = config.scheduler_config().memory_budget_bytes
    assert budget == (None if want == -1 else want << 20)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        card = type("Card", (), dict(name="tiny", parameter_size="1M", context_length=8, random_init=False))
        said = banner(card, sock, config).splitlines()[-1]
    assert said.endswith("not limited (--model-memory-mb)" if want == -1 else f"within {want} MiB (--model-memory-mb)")


def test_a_bad_memory_budget_is_a_one_line_error(tiny_model, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("model_memory_mb = -5\n")
    env = {**os.environ, "TINYGPT_CONFIG": str(tmp_path / "config.toml")}
    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "serve", "--model", str(tiny_model), "--port", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"tinygpt serve: error: {tmp_path / 'config.toml'}: key 'model_memory_mb' must be -1 (no limit) or a "
        "number of MiB >= 0, got -5"]
    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "serve", "--model-memory-mb", "lots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "tinygpt serve: error: argument --model-memory-mb: expected an integer, got 'lots'")
