"""Exact resume of a pretraining run: killed with SIGKILL while writing a checkpoint, or stopped with Ctrl-C
(SIGINT, exit 130 after its checkpoint), then `tinygpt pretrain --resume`: the same loss at every step (within
1e-5) and the same final model weights (within 1e-6) as a run never interrupted. The processes are real; the
kill points come from test_resume.py's child (it wraps a trainer function to signal itself at a chosen step).
The run uses gradient accumulation, warmup + WSD decay and validation, so the data cursor, the optimizer state
and the schedule's step must all come back."""
import json
import signal
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from test_resume import CHILD


def pretrain(*args, mode="none", at=0):
    return subprocess.run([sys.executable, "-c", CHILD, mode, str(at), "pretrain", *args], capture_output=True,
                          text=True, timeout=300)


def _flags(corpus, tokenizer, out):
    return [str(corpus / "cats.txt"), str(corpus / "docs.jsonl"), "--tokenizer", str(tokenizer), "--out", str(out),
            "--preset", "tiny", "--seq-length", "16", "--batch-size", "4", "--grad-accumulation", "2", "--iters", "10",
            "--warmup", "2", "--decay-fraction", "0.5", "--learning-rate", "3e-3", "--save-every", "3",
            "--val-every", "4", "--seed", "3", "--json"]


def _losses(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"], m.get("loss", m.get("val_loss")), "loss" in m) for m in lines]


def _same_run(run, reference):
    ours, theirs = _losses(run), _losses(reference)
    assert [(s, kind) for s, _, kind in ours] == [(s, kind) for s, _, kind in theirs]
    assert len([1 for *_, kind in ours if kind]) == 10
    assert max(abs(a[1] - b[1]) for a, b in zip(ours, theirs)) <= 1e-5
    a, b = (mx.load(str(r / "model" / "model.safetensors")) for r in (run, reference))
    assert set(a) == set(b) and all(np.allclose(np.array(a[k]), np.array(b[k]), rtol=0, atol=1e-6) for k in a)


@pytest.fixture(scope="module")
def reference(pretrain_corpus, pretrain_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain-resume") / "reference"
    r = pretrain(*_flags(pretrain_corpus, pretrain_tokenizer[0], out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "complete"
    return out


def test_sigkill_while_writing_a_checkpoint_then_resume_is_exact(pretrain_corpus, pretrain_tokenizer, tmp_path,
                                                                 reference):
    run = tmp_path / "run"
    killed = pretrain(*_flags(pretrain_corpus, pretrain_tokenizer[0], run), mode="kill-while-saving", at=6)
    assert killed.returncode == -signal.SIGKILL
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(".")) == ["step-0000003"]
    assert [p for p in ckpts.iterdir() if p.name.startswith(".step-0000006.")]  # the half-written one
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    resumed = pretrain("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 3/10" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "complete" and summary["resumed_from"] == 3
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]
    _same_run(run, reference)


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_exits_130_and_resumes_exactly(pretrain_corpus, pretrain_tokenizer, tmp_path,
                                                                  reference):
    run = tmp_path / "run"
    stopped = pretrain(*_flags(pretrain_corpus, pretrain_tokenizer[0], run), mode="interrupt", at=5)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and "continue with" not in stopped.stdout  # --json: the summary only
    summary = json.loads(stopped.stdout)
    assert summary["status"] == "interrupted" and summary["step"] == 5 and "model" not in summary
    assert json.loads((run / "checkpoints" / "step-0000005" / "state.json").read_text())["cursor"] == 10
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted" and not (run / "model").exists()
    resumed = pretrain("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    _same_run(run, reference)
