"""`tinygpt serve` as a user runs it: --help, bad flags and models, a busy port, and a real subprocess server."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

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
                             str(port), "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"})
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert r.json()["data"][0]["id"] == tiny_model.name
        assert httpx.get(url + "/v1/models").status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal after a clean shutdown
    assert "Traceback" not in out and "terminate called" not in out
    assert "API key required" in out
