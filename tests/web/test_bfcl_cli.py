"""The official BFCL CLI against a real `tinygpt serve` subprocess with an API key, unchanged and with no renaming:
`bfcl generate` then `bfcl evaluate` on a few multi_turn_base ids, through /v1/completions (BFCL's own prompt
formatting; the model named by its directory, and by its hub id) and through /v1/chat/completions (BFCL's
OpenAI-compatible FC handler). The model is tiny and random, so every answer is wrong: the bar is a result and a
score for every id, with BFCL's readiness probe, the model names and the tools all accepted. Slow: the first run
builds BFCL's venv (evals/bfcl_cli.py, a few minutes, needs the package index); each run takes about a minute.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygpt.evals.bfcl_cli import ensure
from tinygpt.runtime.presets import InitSpec, init_model

pytestmark = pytest.mark.slow
IDS = ["multi_turn_base_0", "multi_turn_base_1", "multi_turn_base_2"]
KEY = "bfcl-test-key"


@pytest.fixture(scope="module")
def bfcl():
    return ensure()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model, a tinygpt cache whose store has BFCL's names as aliases of it, and BFCL's project root."""
    root = tmp_path_factory.mktemp("bfcl")
    model = init_model(root / "tiny-qwen", InitSpec(preset="tiny", seed=0))
    env = {**os.environ, "TINYGPT_CACHE": str(root / "cache")}
    for name in ("Qwen/Qwen3-0.6B", "openbmb/MiniCPM-SALA-FC"):
        subprocess.run([sys.executable, "-m", "tinygpt.cli", "models", "alias", name, str(model)], env=env,
                       check=True, capture_output=True)
    project = root / "bfcl-project"
    project.mkdir()
    (project / "test_case_ids_to_generate.json").write_text(json.dumps({"multi_turn_base": IDS}))
    return model, env, project


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    model, env, _ = world
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as out:
        # --max-tokens caps the 4096 new tokens BFCL asks for: a random model would fill them all.
        proc = subprocess.Popen([sys.executable, "-m", "tinygpt.cli", "serve", "--model", str(model), "--port",
                                 str(port), "--api-key", KEY, "--max-tokens", "24"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if f":{port}" in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        yield port, log
    finally:
        proc.terminate()
        proc.wait(30)


def run_bfcl(bfcl: Path, project: Path, args: list[str], extra_env: dict) -> str:
    env = {**os.environ, "BFCL_PROJECT_ROOT": str(project), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **extra_env}
    done = subprocess.run([str(bfcl), *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def generate_and_evaluate(bfcl, project, registry_name, generate_args, extra_env):
    run_bfcl(bfcl, project, ["generate", "--model", registry_name, "--test-category", "multi_turn_base",
                             "--run-ids", *generate_args], extra_env)
    run_bfcl(bfcl, project, ["evaluate", "--model", registry_name, "--test-category", "multi_turn_base",
                             "--partial-eval"], extra_env)
    folder = registry_name.replace("/", "_")
    results = [json.loads(line) for line in
               (project / "result" / folder / "multi_turn" / "BFCL_v4_multi_turn_base_result.json").open()]
    assert sorted(r["id"] for r in results) == IDS
    for r in results:  # a list of answers for every turn of every id: the server answered each request
        assert isinstance(r["result"], list) and len(r["result"]) >= 2, r
    score = (project / "score" / folder / "multi_turn" / "BFCL_v4_multi_turn_base_score.json").open()
    summary = json.loads(score.readline())
    assert summary["total_count"] == len(IDS), summary
    assert registry_name.split("/")[-1].removesuffix("-FC") in (project / "score" / "data_multi_turn.csv").read_text()


def requests_seen(log: Path, route: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f'"POST {route} ' in line]


def test_bfcl_generate_and_evaluate_through_completions_naming_the_model_by_its_directory(bfcl, world, server):
    model, _, project = world
    port, log = server
    generate_and_evaluate(bfcl, project, "Qwen/Qwen3-0.6B-FC",
                          ["--skip-server-setup", "--local-model-path", str(model)],
                          {"LOCAL_SERVER_ENDPOINT": "127.0.0.1", "LOCAL_SERVER_PORT": str(port),
                           "REMOTE_OPENAI_API_KEY": KEY})
    served = requests_seen(log, "/v1/completions")
    assert served and all(line.endswith("200 OK") for line in served)
    assert '"GET /v1/models HTTP/1.1" 200' in log.read_text()  # BFCL's keyless readiness probe


def test_bfcl_generate_and_evaluate_through_completions_naming_the_model_by_its_hub_id(bfcl, world, server):
    model, _, project = world
    port, log = server
    before = len(requests_seen(log, "/v1/completions"))
    generate_and_evaluate(bfcl, project, "Qwen/Qwen3-0.6B", ["--skip-server-setup"],
                          {"REMOTE_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "REMOTE_OPENAI_API_KEY": KEY,
                           "REMOTE_OPENAI_TOKENIZER_PATH": str(model)})
    served = requests_seen(log, "/v1/completions")[before:]
    assert served and all(line.endswith("200 OK") for line in served)


def test_bfcl_generate_and_evaluate_through_chat_completions(bfcl, world, server):
    _, _, project = world
    port, log = server
    generate_and_evaluate(bfcl, project, "openbmb/MiniCPM-SALA-FC", [],
                          {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": KEY})
    served = requests_seen(log, "/v1/chat/completions")
    assert served and all(line.endswith("200 OK") for line in served)
    assert " 401" not in log.read_text() and " 404" not in log.read_text()
