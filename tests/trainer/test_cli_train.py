"""`tinygpt train` on the command line: flag > config file > default, the resolved config printed and saved,
what a run directory holds, --json, and one clear line (exit 2) for every bad input, with nothing written."""
import json

import pytest

from tinygpt import cli
from tinygpt.trainer.config import TrainConfig, read_toml, resolve, to_toml
from tinygpt.trainer.errors import TrainError


def train(capsys, *args):
    code = cli.main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code, err):
    assert code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_flags_beat_the_config_file_which_beats_the_defaults(tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text('rank = 4\nlearning_rate = 5e-4\nkeys = ["self_attn.q_proj"]\nschedule = "wsd"\n')
    cfg = resolve({"rank": 16, "schedule": None}, conf)
    assert (cfg.rank, cfg.learning_rate, cfg.keys, cfg.schedule, cfg.batch_size) == (
        16, 5e-4, ["self_attn.q_proj"], "wsd", TrainConfig().batch_size)
    (tmp_path / "again.toml").write_text(to_toml(cfg))
    assert resolve({}, tmp_path / "again.toml") == cfg  # the saved config reads back to the same config


@pytest.mark.parametrize("text, says", [
    ("rnak = 4\n", "unknown keys rnak"),
    ("rank = 0\n", "key rank must be in [1, 4096], got 0"),
    ("method = 'qlora'\n", "key method must be one of lora, dora, full, got 'qlora'"),
    ("learning_rate = 'fast'\n", "key learning_rate must be a number, got 'fast'"),
    ("rank = [\n", "not valid TOML"),
])
def test_bad_config_files_are_one_error(tmp_path, text, says):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(TrainError, match=says.replace("[", r"\[").replace("(", r"\(")):
        read_toml(conf)


def test_a_run_directory_holds_everything_and_json_is_the_summary(capsys, tiny_model_dir, task_data, tmp_path):
    run = tmp_path / "run"
    code, out, err = train(capsys, str(task_data / "data" / "rows.jsonl"), "--model", str(tiny_model_dir),
                           "--out", str(run), "--iters", "3", "--val-every", "2", "--save-every", "2", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "complete" and summary["step"] == summary["iters"] == 3
    assert summary["tokens_trained"] > 0 and summary["tokens_per_s"] > 0 and summary["peak_memory_mb"] > 0
    assert f"tinygpt train -> {run}" in err and "  rank = 8" in err  # the resolved config, printed first
    assert "step 3/3" in err and "val_loss" in err
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "checkpoints", "config.toml", "data-report.json",
                                                    "loss.png", "metrics.jsonl", "run.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    assert read_toml(run / "config.toml")["iters"] == 3
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "complete" and status["summary"]["adapter"] == str(run / "adapter")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert [m["step"] for m in metrics if "val_loss" in m] == [0, 2, 3]
    report = json.loads((run / "data-report.json").read_text())
    assert report["train_examples"] + report["valid_examples"] == 48


def test_a_foreign_directory_is_never_written(capsys, tiny_model_dir, task_data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = train(capsys, str(task_data / "data"), "--model", str(tiny_model_dir), "--out", str(mine))
    assert error_line(code, err) == (f"tinygpt train: error: --out {mine} exists and is not an empty directory; a "
                                     "run writes only into a new one (it is not a run of tinygpt's and is left as "
                                     "it is; name a new directory)")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("args, says", [
    ([], "--data is required"),
    (["nowhere.jsonl"], "--data nowhere.jsonl: no such file or directory"),
    (["DATA", "--num-layers", "9"], "--num-layers 9: the model has only 2 layers"),
    (["DATA", "--num-layers", "0"], "--num-layers must be -1 (every layer) or N >= 1 (the last N layers), got 0"),
    (["DATA", "--keys", "attn.nope"], "--keys attn.nope name no module of the adapted layers"),
    (["DATA", "--split", "train"], "--split filters traces; --data is not a directory of .atraj traces"),
    (["OTHER_TOKENIZER"], "tokenizer"),
])
def test_bad_input_is_one_line_and_leaves_nothing_behind(capsys, tiny_model_dir, task_data, tmp_path, args, says):
    """A refused run removes the directory it made (and the new parent above it), so the same --out works on the
    retry; a folder that was there before stays, as it was."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**json.loads(line), "tokenizer_hash": "another"}) + "\n"
                             for line in (task_data / "data" / "rows.jsonl").read_text().splitlines()))
    args = [{"DATA": str(task_data / "data"), "OTHER_TOKENIZER": str(other)}.get(a, a) for a in args]
    out = tmp_path / "new" / "run"
    code, _, err = train(capsys, *args, "--model", str(tiny_model_dir), "--out", str(out))
    assert says in error_line(code, err)
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    code, _, err = train(capsys, *args, "--model", str(tiny_model_dir), "--out", str(tmp_path / "kept"))
    assert says in error_line(code, err) and (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_ambiguous_or_self_validating_data_is_refused(capsys, tiny_model_dir, task_data, tmp_path):
    rows = task_data / "data" / "rows.jsonl"
    both = tmp_path / "both"
    both.mkdir()
    (both / "rows.jsonl").write_text(rows.read_text())
    (both / "train.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    common = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "run")]
    for args, says in (([str(both)], "holds both rows.jsonl and train.jsonl; name the file"),
                       ([str(rows), "--valid-data", str(rows)], "is the training data itself"),
                       ([str(rows), "--valid-data", str(both / "rows.jsonl"), "--valid-fraction", "0.2"],
                        "--valid-fraction (a share of --data held out) would be ignored; give one of them")):
        code, _, err = train(capsys, *args, *common)
        assert says in error_line(code, err) and not (tmp_path / "run").exists()


def test_a_failed_run_can_be_retried_with_the_same_out(capsys, tiny_model_dir, task_data, tmp_path):
    out = tmp_path / "run"
    code, _, err = train(capsys, str(task_data / "data"), "--model", str(tiny_model_dir), "--out", str(out),
                         "--num-layers", "9")
    assert "--num-layers 9" in error_line(code, err) and not out.exists()
    code, _, err = train(capsys, str(task_data / "data"), "--model", str(tiny_model_dir), "--out", str(out),
                         "--iters", "1", "--valid-fraction", "0")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("flag, value, says", [
    ("--rank", "0", "argument --rank: must be an integer in [1, 4096], got 0"),
    ("--learning-rate", "0", "argument --learning-rate: must be a number > 0.0, got 0"),
    ("--method", "qlora", "argument --method: invalid choice: 'qlora'"),
    ("--valid-fraction", "0.9", "argument --valid-fraction: must be a number in [0.0, 0.5], got 0.9"),
])
def test_flags_are_checked_by_the_parser(capsys, flag, value, says):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", flag, value])
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_a_taken_register_name_is_refused_before_anything_runs(capsys, tiny_model_dir, task_data, tmp_path,
                                                                 store_env):
    from tinygpt.runtime.store import ModelStore

    ModelStore().add("taken", tiny_model_dir)
    code, _, err = train(capsys, str(task_data / "data"), "--model", str(tiny_model_dir), "--out",
                         str(tmp_path / "run"), "--register", "taken")
    assert "--register 'taken': the name is taken" in error_line(code, err)
    assert not (tmp_path / "run").exists()


def test_resuming_a_complete_run_does_nothing_and_rewrites_nothing(capsys, tiny_model_dir, task_data, tmp_path,
                                                                     store_env):
    run = tmp_path / "run"
    code, out, err = train(capsys, str(task_data / "data" / "rows.jsonl"), "--model", str(tiny_model_dir), "--out",
                           str(run), "--iters", "2", "--valid-fraction", "0", "--register", "spec", "--json")
    assert code == 0, err
    summary = json.loads(out)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out, err = train(capsys, "--resume", str(run), "--json")
    again = json.loads(out)
    assert code == 0 and again.pop("already_complete") is True and again.pop("resumed_from") == 2
    assert again == {k: v for k, v in summary.items() if k != "resumed_from"} and again["registered"] == "spec"
    assert again["tokens_per_s"] and again["peak_memory_mb"] > 0
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    code, out, _ = train(capsys, "--resume", str(run))
    assert code == 0 and out.startswith(f"{run} is already complete; nothing was run or rewritten")
    code, _, err = train(capsys, "--resume", str(run), "--out", str(tmp_path / "new"))
    assert "continues the run where it is; leave out --out" in error_line(code, err)
    assert not (tmp_path / "new").exists()
    code, _, err = train(capsys, "--resume", str(run), "--register", "other")
    assert "already complete, so nothing is left to register" in error_line(code, err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_sequences_split_or_dropped_by_max_seq_length_are_said_and_counted(capsys, tiny_model_dir, task_data,
                                                                          tmp_path):
    rows = str(task_data / "data" / "rows.jsonl")
    common = ["--model", str(tiny_model_dir), "--iters", "1", "--valid-fraction", "0", "--json"]
    code, out, err = train(capsys, rows, *common, "--out", str(tmp_path / "a"))
    assert code == 0 and "warning: --max-seq-length" not in err  # every row fits the default
    assert json.loads(out)["train_long"]["long"] == 0
    code, out, err = train(capsys, rows, *common, "--out", str(tmp_path / "b"), "--max-seq-length", "48")
    counts = json.loads(out)["train_long"]
    report = json.loads((tmp_path / "b" / "data-report.json").read_text())
    assert code == 0 and counts == report["train_long"] and counts["long"] > 0 and counts["windows"] > 0
    line = next(line for line in err.splitlines() if line.startswith("warning: --max-seq-length 48: "))
    assert f"{counts['long']} train sequences longer than it (split into {counts['windows']} windows" in line
    assert f"longest training sequence is {report['train_longest']:,} tokens: raise --max-seq-length" in line
    code, out, err = train(capsys, rows, *common, "--out", str(tmp_path / "c"), "--max-seq-length", "80",
                           "--long-sequences", "skip")  # the rows are 73 to 90 tokens long
    skipped = json.loads(out)["train_long"]
    assert code == 0 and f"{skipped['long']} train sequences longer than it ({skipped['long_skipped']} skipped; " \
        f"{skipped['supervised_dropped']:,} trained tokens lost)" in err


def test_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for needed in ("examples:", "--resume runs/spec", "--only-passed", "--method dora", "data formats",
                   "mlx_lm.generate --adapter-path", "--grad-checkpoint", "wsd"):
        assert needed in text
