"""`tinygpt retrain`: the whole loop on fileops with a tiny random model; reuse on re-run; a SIGKILL in every stage
(the TINYGPT_RETRAIN_CRASH test hook) completes on re-run with the uninterrupted run's outputs; changed inputs
make new versions; registration on a shipping verdict; bad input writes nothing.

Evaluating is the slow part (a fileops prompt is ~6k tokens of the small vocabulary: ~3 s of prefill per
episode), so every test starts from a copy of one reference run with the stages it redoes removed."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLAGS = ["--domain", "fileops", "--guards", "--train-tasks", "2", "--eval-tasks", "1", "--iters", "4",
         "--save-every", "2", "--max-tokens", "2", "--in-flight", "1", "--name", "fs-spec"]
STAGES = ("rollouts", "data", "train", "eval", "gate", "register")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("retrain")
    values = {"TINYGPT_CACHE": str(root / "cache"), "TINYGPT_CONFIG": ""}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, v)
        yield {"root": root, "model": str(tiny_model_dir), "env": {**os.environ, **values}}


def cli(env, out, *extra):
    from tinygpt.cli import main

    return main(["retrain", "--model", env["model"], "--out", str(out), *FLAGS, *extra, "--json"])


def outputs(run: Path) -> dict:
    """What an uninterrupted and a resumed run must agree on."""
    status = json.loads((run / "retrain.json").read_text())
    stage = {s: json.loads((run / s / f"v{status['stages'][s]}" / "stage.json").read_text())["outputs"]
             for s in STAGES}
    return {"rows": (Path(stage["data"]["rows_file"])).read_bytes(), "adapter": stage["train"]["adapter_sha"],
            "passed": {s: {a: r["passed"] for a, r in arms.items()} for s, arms in stage["eval"]["runs"].items()},
            "verdict": stage["gate"]["verdict"], "registered": stage["register"]["registered"],
            "status": status["status"]}


@pytest.fixture(scope="module")
def reference(env):
    out = env["root"] / "reference"
    assert cli(env, out) == 1  # a random model does not improve: reject
    return out


def copy_without(reference: Path, dest: Path, stages) -> Path:
    shutil.copytree(reference, dest)
    for s in stages:
        shutil.rmtree(dest / s)
    return dest


def test_end_to_end_then_every_stage_is_reused(env, reference, capsys):
    status = json.loads((reference / "retrain.json").read_text())
    assert status["status"] == "complete" and status["stages"] == {s: 1 for s in STAGES}
    for s in STAGES:
        meta = json.loads((reference / s / "v1" / "stage.json").read_text())
        assert meta["status"] == "complete" and meta["fingerprint"]
    assert list((reference / "rollouts/v1/traces").rglob("*.atraj"))
    assert (reference / "data/v1/export/rows.jsonl").stat().st_size > 0
    assert (reference / "train/v1/run/adapter/adapters.safetensors").is_file()
    assert len(list((reference / "eval/v1/results").glob("*.run.json"))) == 2
    gate = json.loads((reference / "gate/v1/gate-result.json").read_text())
    assert gate["verdict"] == status["summary"]["verdict"] == "reject"
    assert (reference / "gate/v1/gate-result.png").read_bytes()[:4] == b"\x89PNG"
    assert status["summary"]["registered"] is None
    capsys.readouterr()
    assert cli(env, reference) == 1
    captured = capsys.readouterr()
    assert captured.err.count("reusing") == len(STAGES) and "start" not in captured.err
    assert json.loads(captured.out) == status["summary"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_run_killed_in_any_stage_completes_with_the_same_result(env, reference, stage, tmp_path):
    later = STAGES[STAGES.index(stage):]
    # eval is the slow stage: a stage before it keeps the reference's eval/v1, which the re-run reuses only if its
    # inputs (rows, adapter) came out identical -- otherwise it makes eval/v2, and the version check below fails
    removed = [s for s in later if s != "eval" or stage == "eval"]
    run = copy_without(reference, tmp_path / "run", removed)
    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "retrain", "--model", env["model"], "--out", str(run),
                        *FLAGS], env={**env["env"], "TINYGPT_RETRAIN_CRASH": stage}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == -9, r.stderr
    killed = json.loads((run / stage / "v1" / "stage.json").read_text())
    assert killed["status"] == "running"
    assert cli(env, run) == 1
    assert outputs(run) == outputs(reference)
    assert json.loads((run / "retrain.json").read_text())["stages"] == {s: 1 for s in STAGES}


def test_changed_input_makes_new_versions_and_keeps_the_old(env, reference, tmp_path, capsys):
    run = copy_without(reference, tmp_path / "run", [])
    capsys.readouterr()
    assert cli(env, run, "--iters", "5") == 1
    err = capsys.readouterr().err
    status = json.loads((run / "retrain.json").read_text())
    assert status["stages"] == {"rollouts": 1, "data": 1, "train": 2, "eval": 2, "gate": 2, "register": 2}
    assert "[rollouts] v1: reusing" in err and "[train] v2: start" in err
    for s in ("train", "eval", "gate", "register"):
        assert json.loads((run / s / "v1" / "stage.json").read_text())["status"] == "complete"
    assert json.loads((run / "train/v2/run/run.json").read_text())["summary"]["step"] == 5


def test_a_shipping_verdict_registers_a_routable_specialist_once(env, reference):
    from tinygpt.retrain import Plan, RetrainConfig, RetrainError, StageDir, prepare, stage_register
    from tinygpt.router.registry import load_registry
    from tinygpt.runtime.store import ModelStore

    class Quiet:
        def print(self, *a, **k):
            pass

    status = json.loads((reference / "retrain.json").read_text())
    cfg = RetrainConfig(model=env["model"], domain="fileops", out=str(reference), guards=[], name="fs-ship")
    plan: Plan = prepare(cfg)
    read = lambda s: json.loads((reference / s / "v1" / "stage.json").read_text())["outputs"]  # noqa: E731
    train, gate = read("train"), {**read("gate"), "verdict": "ship"}
    sd = StageDir(reference, "register", 99, "x", {})
    out = stage_register(plan, sd, Quiet(), train, gate)
    assert out["registered"] == "fs-ship"
    entry = ModelStore().entry("fs-ship")
    assert (entry.kind, entry.status, entry.domain) == ("specialist", "shipped", "fileops")
    assert "ls" in entry.tools and entry.provenance["run"] == str(reference.resolve())
    spec = next(s for s in load_registry(ModelStore()).specialists if s.name == "fs-ship")
    assert spec.routable, spec.why
    assert stage_register(plan, sd, Quiet(), train, gate)["registered"] == "fs-ship"  # again: a no-op
    assert [e.name for e in ModelStore().read().models].count("fs-ship") == 1
    ModelStore().add("not-ours", env["model"])
    with pytest.raises(RetrainError, match="did not create"):
        prepare(RetrainConfig(model=env["model"], domain="fileops", out=str(reference), guards=[], name="not-ours"))
    assert status == json.loads((reference / "retrain.json").read_text())


@pytest.mark.parametrize("case", ["unknown domain", "not a retrain dir", "missing model", "empty traces"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(env, tmp_path, case, capsys):
    from tinygpt.cli import main

    out = tmp_path / "run"
    args = ["retrain", "--model", env["model"], "--out", str(out), *FLAGS]
    if case == "unknown domain":
        args[args.index("fileops")] = "fileopz"
    elif case == "not a retrain dir":
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    elif case == "missing model":
        args[args.index(env["model"])] = str(tmp_path / "nope")
    else:
        (tmp_path / "empty").mkdir()
        args += ["--traces", str(tmp_path / "empty")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0], err
    assert (sorted(p.name for p in out.iterdir()) == ["mine.txt"]) if case == "not a retrain dir" else not out.exists()


def test_added_user_traces_redo_data_and_are_never_written(env, reference, tmp_path, capsys):
    run = copy_without(reference, tmp_path / "run", [])
    mine = tmp_path / "mine"
    shutil.copytree(reference / "rollouts/v1/traces", mine)  # the same passing episodes: deduplicated away
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in mine.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli(env, run, "--traces", str(mine)) == 1
    err = capsys.readouterr().err
    status = json.loads((run / "retrain.json").read_text())
    # new data version; its rows are the same, so training and everything after is reused
    assert status["stages"] == {"rollouts": 1, "data": 2, "train": 1, "eval": 1, "gate": 1, "register": 1}
    assert "[data] v2: start" in err and "[train] v1: reusing" in err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in mine.rglob("*") if p.is_file()} == before
