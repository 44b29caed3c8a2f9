"""Exact resume: a run killed with SIGKILL (while writing a checkpoint) or stopped with Ctrl-C (SIGINT), then
resumed, has the same loss at every step (within 1e-5) and the same final weights as an uninterrupted run.

The runs are real `tinygpt train` processes. To kill at a chosen point without racing the clock, the child
process wraps one trainer function so that it signals itself there: SIGKILL after checkpoint 6's weights are in
its temp directory (so checkpoint 3 is the last complete one), SIGINT right after step 5's metrics line. The run
uses dropout, gradient accumulation, warmup + cosine decay and validation, so the data cursor, the dropout RNG,
the optimizer state and the schedule's step must all come back for the losses to match.
"""
import json
import os
import signal
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

CHILD = """
import os, signal, sys
import tinygpt
from tinygpt.trainer import checkpoint, run_dir
mode, at = sys.argv[1], int(sys.argv[2])
if mode == "kill-while-saving":
    write_adapter = checkpoint.write_adapter
    def killing_write(directory, model, config):
        write_adapter(directory, model, config)
        if directory.name.startswith(f".step-{at:07d}."):
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.write_adapter = killing_write
elif mode == "interrupt":
    add = run_dir.Metrics.add
    def interrupting_add(self, **record):
        add(self, **record)
        if record.get("step") == at and "loss" in record:
            os.kill(os.getpid(), signal.SIGINT)
    run_dir.Metrics.add = interrupting_add
from tinygpt.cli import main
sys.exit(main(sys.argv[3:]))
"""


def train(*args, mode="none", at=0):
    return subprocess.run([sys.executable, "-c", CHILD, mode, str(at), "train", *args], capture_output=True,
                          text=True, timeout=300)


def _flags(tiny_model_dir, task_data, out):
    return ["--model", str(tiny_model_dir), "--data", str(task_data / "data" / "rows.jsonl"), "--out", str(out),
            "--iters", "10", "--batch-size", "4", "--grad-accumulation", "2", "--dropout", "0.1", "--rank", "4",
            "--learning-rate", "3e-3", "--schedule", "cosine", "--warmup", "2", "--save-every", "3",
            "--val-every", "4", "--seed", "3", "--json"]


def _losses(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"], m.get("loss", m.get("val_loss")), "loss" in m) for m in lines]


def _weights(run):
    return mx.load(str(run / "adapter" / "adapters.safetensors"))


@pytest.fixture(scope="module")
def reference(tiny_model_dir, task_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "reference"
    r = train(*_flags(tiny_model_dir, task_data, out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "complete"
    return out


def _same_run(run, reference):
    ours, theirs = _losses(run), _losses(reference)
    assert [(s, kind) for s, _, kind in ours] == [(s, kind) for s, _, kind in theirs]
    assert len([1 for *_, kind in ours if kind]) == 10
    assert max(abs(a[1] - b[1]) for a, b in zip(ours, theirs)) <= 1e-5
    a, b = _weights(run), _weights(reference)
    assert set(a) == set(b) and all(np.allclose(np.array(a[k]), np.array(b[k]), rtol=0, atol=1e-6) for k in a)
    assert json.loads((run / "adapter" / "adapter_config.json").read_text()) == \
        json.loads((reference / "adapter" / "adapter_config.json").read_text())


def test_sigkill_while_writing_a_checkpoint_then_resume_is_exact(tiny_model_dir, task_data, tmp_path, reference):
    run = tmp_path / "run"
    killed = train(*_flags(tiny_model_dir, task_data, run), mode="kill-while-saving", at=6)
    assert killed.returncode == -signal.SIGKILL
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(".")) == ["step-0000003"]
    assert [p for p in ckpts.iterdir() if p.name.startswith(".step-0000006.")]  # the half-written one
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # killed: nobody wrote an end
    resumed = train("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 3/10" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "complete" and summary["resumed_from"] == 3
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]  # the partial checkpoint was cleared
    _same_run(run, reference)


def test_ctrl_c_writes_a_checkpoint_exits_130_and_resumes_exactly(tiny_model_dir, task_data, tmp_path, reference):
    run = tmp_path / "run"
    stopped = train(*_flags(tiny_model_dir, task_data, run), mode="interrupt", at=5)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    summary = json.loads(stopped.stdout)
    assert summary["status"] == "interrupted" and summary["step"] == 5
    assert (run / "checkpoints" / "step-0000005" / "state.json").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert json.loads((run / "checkpoints" / "step-0000005" / "state.json").read_text())["cursor"] == 10
    resumed = train("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    _same_run(run, reference)


def test_resume_refuses_changes_and_foreign_directories(tiny_model_dir, task_data, tmp_path, reference):
    r = train("--resume", str(reference), "--learning-rate", "1e-2")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"tinygpt train: error: --resume continues {reference} with its saved config; these flags would change "
        "it: --learning-rate. Start a new run to change them")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = train("--resume", str(foreign))
    assert r.returncode == 2 and "not a run directory of `tinygpt train`" in r.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    finished = train("--resume", str(reference), "--json")  # a complete run resumes to itself: nothing to do
    assert finished.returncode == 0 and json.loads(finished.stdout)["step"] == 10
