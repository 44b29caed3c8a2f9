"""On-policy distillation runs are resumable exactly, and their sampled episodes are recorded as `.atraj`.

Resume: real `tinygpt distill on-policy` processes, killed with SIGKILL while writing checkpoint 4 (so checkpoint
2 is the newest complete one) or stopped with SIGINT after step 3, then resumed; the losses of every step
(within 1e-5), the final adapter (within 1e-6) and every sampled token of every recorded episode equal an
uninterrupted run's. The run samples at temperature 1 (each episode from its own seed, drawn from (seed, step,
episode)) with dropout, warmup + cosine decay, so the prompt cursor, the sampler's seeds, the optimizer state and
the schedule's step must all come back. Recording: the episodes traces-to-data reads back are the trained
sequences, id for id.
"""
import json
import os
import signal
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from tinygpt import cli
from tinygpt.runtime.agent import AgentConfig
from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.registry import Toolset
from tinygpt.traces.atraj import ModelCall
from tinygpt.traces.reader import read_episode

PROMPTS = ["weather in Paris?", "clock for Rome", "time in Oslo?", "hello", "list the files", "what is 2+2?"]

CHILD = """
import os, signal, sys
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


def distill(*args, mode="none", at=0):
    return subprocess.run([sys.executable, "-c", CHILD, mode, str(at), "distill", "on-policy", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """(student dir, teacher dir, prompts file): the tiny model, another tiny model of its tokenizer."""
    from tinygpt.runtime.presets import InitSpec, init_model

    root = tmp_path_factory.mktemp("on-policy-resume")
    teacher = init_model(root / "teacher", InitSpec(preset="tiny", seed=3))
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return tiny_model_dir, teacher, prompts


def _flags(setup, out):
    student, teacher, prompts = setup
    return ["--student", str(student), "--teacher", str(teacher), "--prompts", str(prompts), "--out", str(out),
            "--iters", "6", "--batch-size", "3", "--max-tokens", "8", "--agent-steps", "1", "--save-every", "2",
            "--rank", "4", "--dropout", "0.1", "--learning-rate", "3e-3", "--schedule", "cosine", "--warmup", "2",
            "--sample-temperature", "1.0", "--seed", "3", "--json"]


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("on-policy-reference") / "run"
    r = distill(*_flags(setup, out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "complete"
    return out


def _losses(run):
    return [(m["step"], m["loss"], m["episodes"]) for m in map(json.loads, (run / "metrics.jsonl").read_text()
                                                              .splitlines())]


def _sampled(run):
    """Every recorded episode's name, header seed and sampled ids, in name order."""
    out = []
    for path in sorted((run / "episodes").iterdir()):
        episode = read_episode(path)
        out.append((path.name, episode.header.sampling.seed,
                    [list(e.output_token_ids) for e in episode.events if isinstance(e, ModelCall)]))
    return out


def _same_run(run, reference):
    ours, theirs = _losses(run), _losses(reference)
    assert [(s, n) for s, _, n in ours] == [(s, n) for s, _, n in theirs] and len(ours) == 6
    assert max(abs(a[1] - b[1]) for a, b in zip(ours, theirs)) <= 1e-5
    assert len({round(loss, 4) for _, loss, _ in theirs}) == 6  # the steps differ: the bound says something
    a, b = (mx.load(str(r / "adapter" / "adapters.safetensors")) for r in (run, reference))
    assert set(a) == set(b) and all(np.allclose(np.array(a[k]), np.array(b[k]), rtol=0, atol=1e-6) for k in a)
    assert _sampled(run) == _sampled(reference) and len(_sampled(run)) == 6 * 3


def test_sigkill_while_writing_a_checkpoint_then_resume_is_exact(setup, tmp_path, reference):
    run = tmp_path / "run"
    killed = distill(*_flags(setup, run), mode="kill-while-saving", at=4)
    assert killed.returncode == -signal.SIGKILL
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(".")) == ["step-0000002"]
    assert [p for p in ckpts.iterdir() if p.name.startswith(".step-0000004.")]  # the half-written one
    state = json.loads((ckpts / "step-0000002" / "state.json").read_text())
    assert state["cursor"] == 2 and len(state["sampler"]["next_episode_seeds"]) == 3
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    recorded = sorted(p.name for p in (run / "episodes").iterdir())
    assert recorded[-1].startswith("step0000004-")  # steps 3 and 4 were sampled before the kill
    kept = {p.name: os.stat(p).st_ino for p in (run / "episodes").iterdir() if p.name < "step0000003"}
    assert len(kept) == 6

    resumed = distill("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2/6" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "complete" and summary["resumed_from"] == 2 and summary["episodes"] == 18
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]  # the partial checkpoint was cleared
    # steps 1-2 were not sampled again (same files), steps 3-4 were (recorded afresh, same tokens)
    assert {p.name: os.stat(p).st_ino for p in (run / "episodes").iterdir() if p.name < "step0000003"} == kept
    _same_run(run, reference)


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_exits_130_and_resumes_exactly(setup, tmp_path, reference):
    run = tmp_path / "run"
    stopped = distill(*_flags(setup, run), mode="interrupt", at=3)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    summary = json.loads(stopped.stdout)
    assert summary["status"] == "interrupted" and summary["step"] == 3
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert json.loads((run / "checkpoints" / "step-0000003" / "state.json").read_text())["cursor"] == 3
    resumed = distill("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] == 3
    _same_run(run, reference)


@pytest.mark.slow
def test_killed_before_its_first_checkpoint_it_starts_over_as_the_same_run(setup, tmp_path, reference):
    run = tmp_path / "run"
    killed = distill(*_flags(setup, run), mode="kill-while-saving", at=2)
    assert killed.returncode == -signal.SIGKILL
    assert not [p for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert len(list((run / "episodes").iterdir())) == 6  # steps 1-2, dropped and sampled again
    resumed = distill("--resume", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] is None and "resumed at" not in resumed.stderr
    _same_run(run, reference)


def _error(capsys, *argv) -> str:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    return err[-1]


def test_resume_refuses_other_runs_changes_and_changed_prompts(setup, reference, task_data, tiny_model_dir, tmp_path,
                                                               capsys):
    from tinygpt.trainer import run_dir, sft
    from tinygpt.trainer.config import resolve

    sft_run = tmp_path / "sft"
    sft.run(resolve({"model": str(tiny_model_dir), "data": str(task_data / "data" / "rows.jsonl"),
                     "out": str(sft_run), "iters": 1, "valid_fraction": 0.0}))
    assert _error(capsys, "distill", "on-policy", "--resume", str(sft_run)) == (
        f"tinygpt distill: error: --resume {sft_run}: a run of `tinygpt train`, not of this command; continue it "
        f"with `tinygpt train --resume {sft_run}`")
    assert _error(capsys, "train", "--resume", str(reference)).endswith(
        f"a run of `tinygpt distill on-policy`, not of this command; continue it with "
        f"`tinygpt distill on-policy --resume {reference}`")
    assert _error(capsys, "distill", "on-policy", "--resume", str(reference), "--learning-rate", "1e-2",
                  "--no-record-episodes").endswith(
        f"--resume continues {reference} with its saved config; these flags would change it: --learning-rate, "
        "--record-episodes. Start a new run to change them")
    assert "leave out --out" in _error(capsys, "distill", "on-policy", "--resume", str(reference), "--out",
                                       str(tmp_path / "elsewhere"))
    assert "leave out --config" in _error(capsys, "distill", "on-policy", "--resume", str(reference), "--config",
                                          str(tmp_path / "x.toml"))
    pretrain = tmp_path / "pretrain"  # a pretraining run's directory, as far as --resume reads it
    run_dir.create(str(pretrain))
    run_dir.write_status(pretrain, "interrupted", kind="pretrain")
    (pretrain / "config.toml").write_text("")
    assert _error(capsys, "distill", "on-policy", "--resume", str(pretrain)).endswith(
        f"a run of `tinygpt pretrain`, not of this command; continue it with `tinygpt pretrain --resume {pretrain}`")
    assert _error(capsys, "pretrain", "--resume", str(reference)).endswith(
        f"continue it with `tinygpt distill on-policy --resume {reference}`")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    assert "not a run directory" in _error(capsys, "distill", "on-policy", "--resume", str(foreign))
    # a complete run resumes to itself: nothing is sampled again
    assert cli.main(["distill", "on-policy", "--resume", str(reference), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    assert "already complete, so nothing is left to register" in _error(
        capsys, "distill", "on-policy", "--resume", str(reference), "--register", "late")

    # an interrupted run whose prompts file changed since is refused, and left as it was
    student, teacher, prompts = setup
    mine = tmp_path / "prompts.jsonl"
    mine.write_text(prompts.read_text())
    run = tmp_path / "run"
    stopped = distill(*_flags((student, teacher, mine), run), mode="interrupt", at=2)
    assert stopped.returncode == 130, stopped.stderr
    mine.write_text(mine.read_text() + json.dumps({"prompt": "one more"}) + "\n")
    assert _error(capsys, "distill", "on-policy", "--resume", str(run)).endswith(
        "its prompts changed since checkpoint step-0000002 was written; a resumed run must see the same prompts "
        "and config (start a new run to change them)")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_sampled_episodes_are_recorded_as_the_trained_sequences(tiny_model_dir, setup, tmp_path, capsys):
    """Each episode of a batch is one .atraj file (split on-policy, seeded as the checkpoint says); traces-to-data
    reads them back as exactly the sequences the batch trains on, and `tinygpt traces show` shows them."""
    from tinygpt.trainer.on_policy import OnPolicyBatches, drop_recorded_after, episode_seed
    from tinygpt.traces.export_config import ExportConfig
    from tinygpt.traces.to_data import traces_to_data

    _, teacher, _ = setup
    student = load(str(tiny_model_dir))
    config = AgentConfig(max_steps=1, sampling=SamplingParams(temperature=1.0, max_tokens=8))
    source = OnPolicyBatches(Engine(student, prefix_cache_bytes=0, solo_processors=False),
                             Engine(load(str(teacher)), prefix_cache_bytes=0), PROMPTS,
                             lambda: Toolset([], timeout_s=None), config, batch_size=4, seed=7,
                             record_dir=tmp_path / "episodes", labels={"run": "r"})
    rollouts = source.rollouts(1)  # step 2
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == [f"step0000002-ep{i:03d}.atraj" for i in range(2)]  # 6 prompts, 4 a batch: the epoch's rest
    for i, (name, r, index) in enumerate(zip(names, rollouts, source.picks(1))):
        episode = read_episode(tmp_path / "episodes" / name)
        assert episode.header.split == "on-policy" and episode.header.task_id == f"prompt-{index}"
        assert episode.header.sampling.seed == episode_seed(7, 1, i) == source.episode_seeds(1)[i]
        assert episode.header.labels == {"run": "r", "step": "2", "prompt": str(index)}
        sampled = r.teacher[1:][r.mask[1:] == 1]
        assert episode.end.status == r.ended and abs(episode.end.reward.value - float(sampled.mean())) < 1e-6
    report = traces_to_data([tmp_path / "episodes"], tmp_path / "data",
                            ExportConfig(split=("on-policy",), exact_dedupe=False, near_dedupe=False))
    rows = {row["episode_id"]: row for row in map(json.loads, (tmp_path / "data" / "rows.jsonl").read_text()
                                                  .splitlines())}
    assert report.rows == 2
    for name, r in zip(names, rollouts):
        row = rows[name.removesuffix(".atraj")]
        assert row["input_ids"] == r.ids.tolist() and row["loss_mask"] == r.mask.tolist()
    assert cli.main(["traces", "show", str(tmp_path / "episodes" / names[0])]) == 0
    assert "prompt-" in capsys.readouterr().out
    source.rollouts(2)
    assert drop_recorded_after(tmp_path / "episodes", 2) == 4  # step 3's episodes; step 2's stay
    assert sorted(p.name for p in (tmp_path / "episodes").iterdir()) == names
