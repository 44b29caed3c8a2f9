"""The CLI as a user runs it: real subprocesses, exit codes, clear errors, no tracebacks."""
import json
import os
import subprocess
import sys

import pytest

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]


def run(*args, env=None, input=None):
    return subprocess.run(TINYGPT + list(args), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, input=input)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "init-model" in r.stdout and "doctor" in r.stdout


def test_doctor_reports_openblas_and_a_matmul_rate():
    r = run("doctor", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert "openblas" in info["blas"].lower() and info["blas_note"] == "loaded"
    assert info["matmul_1024_gflops"] > 0  # its size depends on the machine's load: not asserted (no timing tests)


def test_generate_json_reports_exact_ids(tiny_model_dir):
    r = run("generate", "--model", str(tiny_model_dir), "--max-tokens", "4", "--json", "hi")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["output_ids"]) == 4 and out["finish_reason"] == "length" and out["prompt_ids"]


@pytest.mark.parametrize("args, message", [
    (("generate", "--model", "/definitely/missing", "hi"), "no model directory"),
    (("generate", "--max-tokens", "0", "--model", "/x", "hi"), "argument --max-tokens: must be an integer >= 1"),
    (("init-model", "/tmp", "--preset", "huge"), "invalid choice"),
    (("nonsense",), "unknown command"),
])
def test_bad_input_gets_a_clear_error_not_a_traceback(args, message):
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_chat_repl_save_load_and_refusal_of_missing_file(tiny_model_dir, tmp_path):
    script = f"hi\n/save {tmp_path}/c\n/reset\n/load {tmp_path}/c\nagain\n/load {tmp_path}/nope\n/quit\n"
    r = run("chat", "--model", str(tiny_model_dir), "--max-tokens", "3", input=script)
    assert r.returncode == 0, r.stderr
    assert "saved to" in r.stdout and "loaded 2 messages" in r.stdout and "no saved chat" in r.stdout
    assert "cached 0" in r.stderr and r.stderr.count("cached") == 2
