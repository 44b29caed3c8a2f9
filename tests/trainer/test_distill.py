"""Offline distillation: the teacher top-k sidecar (`tinygpt distill teacher-logprobs`) and `tinygpt train
--teacher-logprobs` (α·T²·KL(top-k + tail) + (1−α)·NLL) on the recorded rows of the synthetic tool task.

The bar: teacher = student gives KL 0; with a different teacher (a tiny model of another seed, same tokenizer)
the student's KL to it falls. Also: the sidecar holds what the runtime's scheduler scores for the same ids, a
stale sidecar or a teacher with another tokenizer is refused with one line, windows of long rows find their
teacher numbers.
"""
import json
import shutil
from functools import partial

import numpy as np
import pytest

from tinygpt import cli
from tinygpt.runtime.models import load
from tinygpt.trainer import run_dir, sft, topk_file
from tinygpt.trainer.batches import BucketedBatches
from tinygpt.trainer.config import resolve
from tinygpt.trainer.distill import DistillBatches
from tinygpt.trainer.distill_loss import distill_loss
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.loop import evaluate
from tinygpt.trainer.rows import read_rows
from tinygpt.trainer.teacher import teacher_logprobs


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """Another random tiny model with the student's tokenizer (seed 7)."""
    from tinygpt.runtime.presets import InitSpec, init_model

    return init_model(tmp_path_factory.mktemp("teacher") / "tiny7", InitSpec(preset="tiny", seed=7))


@pytest.fixture
def rows(task_data, tmp_path):
    """A private copy of the task's rows.jsonl (sidecars are written beside it)."""
    path = tmp_path / "rows.jsonl"
    shutil.copy(task_data / "data" / "rows.jsonl", path)
    return path


def kl_to(model_dir, rows_path, sidecar, adapter=None, temperature=1.0) -> float:
    """The student's mean KL (α = 1) to the sidecar's teacher over every trained token of the rows."""
    loaded = load(str(model_dir), adapter_path=adapter)
    examples, _ = read_rows(rows_path, tokenizer_hash=loaded.tokenizer_hash, vocab_size=loaded.vocab_size)
    batches = DistillBatches(BucketedBatches(examples, 8, 0, shuffle=False), topk_file.read(sidecar), sidecar)
    loss = partial(distill_loss, alpha=1.0, temperature=temperature, plain_head=True)
    return evaluate(loaded.model, loss, batches)


def train(model_dir, rows_path, sidecar, out, **over):
    cfg = {"model": str(model_dir), "data": str(rows_path), "out": str(out), "teacher_logprobs": str(sidecar),
           "alpha": 1.0, "valid_fraction": 0.0, "save_every": 0, "batch_size": 8, "seed": 0, **over}
    return sft.run(resolve(cfg))


def test_the_sidecar_holds_what_the_scheduler_scores(teacher_dir, rows):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.jobs import Job, Scored
    from tinygpt.runtime.sampling import SamplingParams

    teacher = load(str(teacher_dir))
    summary = teacher_logprobs(teacher, rows, k=8, batch_size=5)
    assert summary["sidecar"] == str(rows.with_name("rows.topk.safetensors")) and summary["k"] == 8
    topk = topk_file.read(summary["sidecar"])
    assert topk.meta["teacher_fingerprint"] == teacher.fingerprint and topk.meta["logprob_temperature"] == "1"
    assert topk.rows == 48 and topk.ids.shape == (summary["supervised"], 8)
    engine = Engine(teacher)
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    for r in (0, 17, 47):
        ids, mask = records[r]["input_ids"], np.array(records[r]["loss_mask"])
        got = []
        engine.scheduler.run([Job(prompt_ids=ids, params=SamplingParams(), model=engine.name, prompt_logprobs=8,
                                  score_only=True, post=got.append)])
        tops = next(ev for ev in got if isinstance(ev, Scored)).top_logprobs
        span = topk.row(r)
        assert topk.positions[span].tolist() == (np.flatnonzero(mask[1:]) + 1).tolist()
        for j, t in zip(range(span.start, span.stop), topk.positions[span]):
            want_ids, want_lps = zip(*tops[t])
            assert topk.ids[j].tolist() == list(want_ids)
            assert np.allclose(topk.logprobs[j], want_lps, atol=1e-5)
            assert abs(topk.tail[j] - np.log1p(-np.exp(np.array(want_lps, np.float64)).sum())) < 1e-4


@pytest.mark.parametrize("k", [16, 0])  # 0: the whole vocabulary
def test_teacher_equal_to_student_gives_kl_zero(tiny_model_dir, rows, tmp_path, k):
    student = load(str(tiny_model_dir))
    k = k or student.vocab_size
    sidecar = teacher_logprobs(student, rows, tmp_path / "self.topk.safetensors", k=k)["sidecar"]
    assert abs(kl_to(tiny_model_dir, rows, sidecar)) < 1e-6
    summary = train(tiny_model_dir, rows, sidecar, tmp_path / "run", iters=1)
    assert abs(summary["first_loss"]) < 1e-6  # step 1's loss is the KL of the untrained student (LoRA B = 0)


def test_with_a_different_teacher_the_students_kl_to_it_falls(tiny_model_dir, teacher_dir, rows, tmp_path):
    sidecar = teacher_logprobs(load(str(teacher_dir)), rows, k=16)["sidecar"]
    before = [kl_to(tiny_model_dir, rows, sidecar, temperature=t) for t in (1.0, 2.0)]
    summary = train(tiny_model_dir, rows, sidecar, tmp_path / "run", temperature=2.0, iters=40,
                    learning_rate=1e-3, rank=16)
    after = [kl_to(tiny_model_dir, rows, sidecar, adapter=summary["adapter"], temperature=t) for t in (1.0, 2.0)]
    assert summary["status"] == "complete" and summary["final_loss"] < summary["first_loss"]
    # measured: T=1 0.309 -> 0.149, T=2 1.106 -> 0.418
    assert min(before) > 0.1 and after[0] < 0.6 * before[0] and after[1] < 0.6 * before[1], (before, after)


def test_a_stale_or_foreign_sidecar_is_refused(tiny_model_dir, teacher_dir, rows, tmp_path):
    sidecar = teacher_logprobs(load(str(teacher_dir)), rows, k=4)["sidecar"]
    lines = rows.read_text().splitlines(keepends=True)
    rows.write_text("".join(lines[:-1]))  # the rows changed after the sidecar was made
    with pytest.raises(TrainError, match="was made from other rows than .* make it again with `tinygpt distill"):
        train(tiny_model_dir, rows, sidecar, tmp_path / "run", iters=1)
    assert not (tmp_path / "run").exists()  # refused before its first step: nothing left behind
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(TrainError, match="notes.json: not a safetensors file"):
        topk_file.read(tmp_path / "notes.json")
    import mlx.core as mx

    mx.save_safetensors(str(tmp_path / "other.safetensors"), {"ids": mx.zeros(2)})
    with pytest.raises(TrainError, match="not a teacher top-k sidecar"):
        topk_file.read(tmp_path / "other.safetensors")
    rows.write_text("".join(lines))
    topk = topk_file.read(sidecar)
    with pytest.raises(TrainError, match=r"the teacher's tokenizer \(hash \w+\) is not the student's \(other\)"):
        topk_file.check(topk, sidecar, rows=rows, tokenizer_hash="other", vocab_size=10_000)
    with pytest.raises(TrainError, match="outside the student's vocabulary"):
        topk_file.check(topk, sidecar, rows=rows, tokenizer_hash=topk.meta["tokenizer_hash"], vocab_size=3)


def test_a_teacher_with_another_tokenizer_is_refused_in_one_line(teacher_dir, rows, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(teacher_dir, other)
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 77}))
    code = cli.main(["distill", "teacher-logprobs", "--teacher", str(other), "--rows", str(rows)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not rows.with_name("rows.topk.safetensors").exists()
    assert "its tokenizer (hash" in err and "a teacher must share the student's tokenizer" in err


def test_teacher_logprobs_on_chat_records_says_they_are_not_rows(teacher_dir, tmp_path, capsys):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    assert cli.main(["distill", "teacher-logprobs", "--teacher", str(teacher_dir), "--rows", str(chat)]) == 2
    err = capsys.readouterr().err.strip()
    assert "chat records, not traces-to-data rows" in err and "tokenizer" not in err and "\n" not in err


def test_windows_of_long_rows_find_their_teacher_numbers(tiny_model_dir, rows, tmp_path):
    student = load(str(tiny_model_dir))
    sidecar = teacher_logprobs(student, rows, k=8)["sidecar"]
    summary = train(tiny_model_dir, rows, sidecar, tmp_path / "run", iters=2, max_seq_length=48)
    report = json.loads((tmp_path / "run" / "data-report.json").read_text())
    assert summary["status"] == "complete" and report["train_long"]["windows"] > 0
    assert 0 < summary["first_loss"] < 5  # the teacher saw the whole row, the window does not: small, not 0


def test_cli_teacher_logprobs_then_train(tiny_model_dir, teacher_dir, rows, tmp_path, capsys):
    code = cli.main(["distill", "teacher-logprobs", "--teacher", str(teacher_dir), "--rows", str(rows),
                     "--top-k", "5", "--dtype", "float16", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["k"] == 5 and summary["dtype"] == "float16" and summary["rows"] == 48
    sidecar = summary["sidecar"]
    assert topk_file.read(sidecar).meta["logprob_dtype"] == "float16"
    code = cli.main(["train", str(rows), "--model", str(tiny_model_dir), "--teacher-logprobs", sidecar,
                     "--alpha", "0.5", "--temperature", "2", "--iters", "2", "--out", str(tmp_path / "run"),
                     "--valid-fraction", "0.2", "--json"])
    run = json.loads(capsys.readouterr().out)
    assert code == 0 and run["status"] == "complete" and run["val_loss"] is not None
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert f'teacher_logprobs = "{sidecar}"' in saved and "alpha = 0.5" in saved and "temperature = 2.0" in saved
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    code = cli.main(["train", str(chat), "--model", str(tiny_model_dir), "--teacher-logprobs", sidecar,
                     "--out", str(tmp_path / "run2")])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the resolved config the run printed
    assert code == 2 and last.startswith("tinygpt train: error: --teacher-logprobs needs --data to be a rows.jsonl")
    assert cli.main(["train", str(rows), "--model", str(tiny_model_dir), "--alpha", "0.3"]) == 2
    assert "--alpha and --temperature weigh the distillation loss; they need --teacher-logprobs" in \
        capsys.readouterr().err


def test_dense_batches_carry_the_teacher_too(tiny_model_dir, tmp_path):
    """Rows trained at (nearly) every position are packed dense (batches.pack_gathered): still KL 0 to itself."""
    student = load(str(tiny_model_dir))
    rng = np.random.default_rng(0)
    rows_path = tmp_path / "dense.jsonl"
    with open(rows_path, "w") as fh:
        for i in range(6):
            ids = rng.integers(3, student.vocab_size, size=40).tolist()
            fh.write(json.dumps({"episode_id": f"e{i}", "task_id": "t", "tokenizer_hash": student.tokenizer_hash,
                                 "input_ids": ids, "loss_mask": [0] + [1] * 39}) + "\n")
    sidecar = teacher_logprobs(student, rows_path, k=8)["sidecar"]
    examples, _ = read_rows(rows_path, tokenizer_hash=student.tokenizer_hash, vocab_size=student.vocab_size)
    batches = DistillBatches(BucketedBatches(examples, 6, 0, shuffle=False, max_width=39), topk_file.read(sidecar),
                             sidecar)
    batch = batches.batch(0)
    assert batch[3].shape == (6 * 39,) and float(batch[2].sum()) == 6 * 39  # every position, in the gathered form
    assert abs(kl_to(tiny_model_dir, rows_path, sidecar)) < 1e-6


def test_a_distillation_run_resumes_exactly(tiny_model_dir, teacher_dir, rows, tmp_path):
    """Steps 3-4 redone from the step-2 checkpoint give the losses of the run that went straight through; a
    different sidecar is refused on resume."""
    sidecar = teacher_logprobs(load(str(teacher_dir)), rows, k=8)["sidecar"]
    run = tmp_path / "run"
    train(tiny_model_dir, rows, sidecar, run, alpha=0.5, temperature=2.0, iters=4, save_every=2, keep_checkpoints=4,
          learning_rate=1e-3)
    straight = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(run / "checkpoints" / "step-0000004")
    run_dir.write_status(run, "running")  # as a run killed after checkpoint 2 left it (a complete one is not redone)
    summary = sft.run(resolve({}), resume=str(run), flags={})
    again = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["resumed_from"] == 2 and len(again) == 4
    assert np.allclose(again, straight, atol=1e-5), (straight, again)
    shutil.rmtree(run / "checkpoints" / "step-0000004")
    run_dir.write_status(run, "running")
    teacher_logprobs(load(str(tiny_model_dir)), rows, sidecar, k=8, force=True)  # the same path, another teacher
    with pytest.raises(TrainError, match="the data differs from what checkpoint step-0000002 was trained on"):
        sft.run(resolve({}), resume=str(run), flags={})


def test_teacher_logprobs_never_writes_over_a_users_file_or_the_rows(teacher_dir, rows, tmp_path, capsys):
    """--out equal to --rows, a user's file, a link or a name without .safetensors: one line, exit 2, the file
    untouched; our own sidecar is replaced only with --force."""
    base = ["distill", "teacher-logprobs", "--teacher", str(teacher_dir), "--rows", str(rows), "--top-k", "2"]
    before = rows.read_bytes()
    precious = tmp_path / "precious.safetensors"
    precious.write_bytes(b"the user's own bytes")
    for out, words in ((rows, "is the rows file itself"), (precious, "was not written by"),
                       (tmp_path / "self.st", "must end in .safetensors"),
                       (precious / "x.safetensors", "is a file, not a directory")):
        assert cli.main(base + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err
    assert rows.read_bytes() == before and precious.read_bytes() == b"the user's own bytes"
    assert not (tmp_path / "self.st").exists()
    assert cli.main(base) == 0
    sidecar = rows.with_name("rows.topk.safetensors")
    made = sidecar.read_bytes()
    capsys.readouterr()
    assert cli.main(base + ["--top-k", "3"]) == 2 and "pass --force" in capsys.readouterr().err
    assert sidecar.read_bytes() == made
    assert cli.main(base + ["--top-k", "3", "--force"]) == 0 and topk_file.read(sidecar).k == 3
    assert cli.main(base + ["--out", str(tmp_path / "new" / "dir" / "s.safetensors")]) == 0  # folders made
    assert topk_file.read(tmp_path / "new" / "dir" / "s.safetensors").k == 2
