"""User mistakes and hostile places give one clear line and exit 2 (never a traceback); Ctrl-C gives
"interrupted" and exit 130 with the run marked incomplete. Real subprocesses where the process matters."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tinygpt import cli

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]


def run(*args, env=None, cwd=None, prefix=()):
    return subprocess.run(list(prefix) + TINYGPT + list(args), capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, **(env or {})})


def one_error_line(r, command: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tinygpt {command}: error: "), r.stderr
    return last


FLAG_CASES = [
    ("--max-tokens", "0", "must be an integer >= 1, got 0"),
    ("--top-k", "-3", "must be an integer >= 0, got -3"),
    ("--top-p", "0", "must be a number in (0.0, 1.0], got 0"),
    ("--top-p", "1.5", "must be a number in (0.0, 1.0], got 1.5"),
    ("--temperature", "-1", "must be a number >= 0.0, got -1"),
    ("--temperature", "nan", "must be a number >= 0.0, got nan"),
    ("--seed", "-1", "must be an integer in [0, 18446744073709551615], got -1"),
    ("--max-tokens", "ten", "expected an integer, got 'ten'"),
]


QUICKSTART_CASES = [
    ("--train-tasks", "0", "must be an integer >= 1, got 0"),
    ("--eval-tasks", "-1", "must be an integer >= 1, got -1"),
    ("--guard-tasks", "0", "must be an integer >= 1, got 0"),
    ("--in-flight", "0", "must be an integer >= 1, got 0"),
    ("--seed", "-1", "must be an integer in [0, 18446744073709551615], got -1"),
    ("--seed", str(2**64), f"must be an integer in [0, 18446744073709551615], got {2**64}"),
    ("--train-tasks", "ten", "expected an integer, got 'ten'"),
]


@pytest.mark.parametrize("command, flag, value, says", [
    (command, *case) for command in ("generate", "chat", "agent") for case in FLAG_CASES
] + [("quickstart", *case) for case in QUICKSTART_CASES])
def test_numeric_flags_are_range_checked(command, flag, value, says, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, flag, value] + (["hi"] if command == "generate" else []))
    assert stop.value.code == 2
    assert f"argument {flag}: {says}" in capsys.readouterr().err


def test_quickstart_has_no_max_tokens_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["quickstart", "--max-tokens", "8"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --max-tokens 8" in capsys.readouterr().err


def test_init_model_seed_is_range_checked(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["init-model", "m", "--seed", "-1"])
    assert stop.value.code == 2
    assert "argument --seed: must be an integer in [0, 18446744073709551615], got -1" in capsys.readouterr().err


def test_binary_standard_input_is_one_line(tmp_path):
    r = subprocess.run(TINYGPT + ["generate", "--model", str(tmp_path), "-"], input=b"\xff\xfe\x00bad",
                       capture_output=True, timeout=60)
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == b"tinygpt generate: error: standard input is not UTF-8 text"


def test_missing_config_named_by_env_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    last = one_error_line(run("generate", "--model", str(tmp_path), "hi", env={"TINYGPT_CONFIG": str(missing)}),
                          "generate")
    assert f"$TINYGPT_CONFIG names {missing}, which does not exist" in last


@pytest.mark.parametrize("text, says", [
    ("prefix_cache_mb = 'big'", "key 'prefix_cache_mb' must be an integer, got 'big'"),
    ("prefix_cache_mb = true", "must be an integer, got True"),
    ("prefix_cache_mb = -5", "must be >= 0, got -5"),
    ("model = 3", "key 'model' must be a string, got 3"),
    ("modle = 'x'", "unknown keys ['modle']"),
    ("default_preset = 'tiny'", "key 'default_preset' is gone: the embedded default model is no longer made on "
                                "first use from a preset"),
])
def test_config_errors_read_well(tmp_path, monkeypatch, text, says):
    from tinygpt.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(text)
    monkeypatch.setenv("TINYGPT_CONFIG", str(path))
    with pytest.raises(ConfigError) as err:
        load_config()
    assert says in str(err.value) and "a int" not in str(err.value)


@pytest.mark.parametrize("given, says", [
    ("models/q06", "no model directory at 'models/q06': the local path does not exist. "
                   "Create one with `tinygpt init-model models/q06`"),
    ("./nothing/here", "the local path does not exist"),
    ("FILE", "is a file; --model takes a model directory"),
    ("EMPTY", "has no config.json: an empty directory"),
    ("org/name", "could not be fetched from the Hugging Face hub (HF_HUB_OFFLINE is set"),
    ("NOWEIGHTS", "NOWEIGHTS has a config.json but no *.safetensors weights (deleted, or not converted"),
    ("NOTOKENIZER", "NOTOKENIZER has no tokenizer (tokenizer.json, tokenizer.model, vocab.json)"),
    ("NOTEMPLATE", "has no chat template; pass --raw"),
])
def test_model_argument_errors_say_what_and_how(tmp_path, tiny_model_dir, given, says):
    (tmp_path / "models").mkdir()  # `models/q06` next to an existing `models/` is a local path, not a hub id
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "EMPTY").mkdir()
    for name, files in (("NOWEIGHTS", ["config.json", "tokenizer.json", "tokenizer_config.json"]),
                        ("NOTOKENIZER", ["config.json", "model.safetensors"]),
                        ("NOTEMPLATE", ["config.json", "model.safetensors", "tokenizer.json"])):
        (tmp_path / name).mkdir()
        for f in files:
            shutil.copy(tiny_model_dir / f, tmp_path / name / f)
    last = one_error_line(run("generate", "--model", given, "hi", cwd=tmp_path,
                              env={"HF_HUB_OFFLINE": "1", "TINYGPT_CONFIG": ""}), "generate")
    assert says in last


def test_os_errors_about_places_are_one_line(capsys):
    def full_disk(_argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/rows.jsonl")

    def bug(_argv):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    assert cli._run("demo", full_disk, []) == 2
    assert capsys.readouterr().err == "tinygpt demo: error: No space left on device: /data/out/rows.jsonl\n"
    with pytest.raises(OSError):
        cli._run("demo", bug, [])  # not about a place: a bug keeps its traceback


def test_trace_errors_raised_by_any_command_are_one_line(capsys):
    from tinygpt.traces.errors import TraceError

    def refused_out(_argv):  # quickstart's data stage calls traces_to_data; its refusals are user errors
        raise TraceError("/data/out/rows.jsonl exists and no tinygpt run wrote it; pick another --out")

    assert cli._run("quickstart", refused_out, []) == 2
    assert capsys.readouterr().err.startswith("tinygpt quickstart: error: /data/out/rows.jsonl exists")


def test_an_error_raised_while_handling_ctrl_c_still_reads_interrupted(capsys):
    def cleanup_fails(_argv):
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("cache holds 3 tokens but 4 were recorded")

    assert cli._run("demo", cleanup_fails, []) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"


def quickstart(*args, cache: Path, prefix=()):
    """`tinygpt quickstart` with its own model store (TINYGPT_CACHE), so no test touches the user's."""
    return run("quickstart", *args, env={"TINYGPT_CACHE": str(cache), "TINYGPT_CONFIG": ""}, prefix=prefix)


def test_quickstart_out_under_a_file_is_one_line(tmp_path, tiny_model_dir):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    last = one_error_line(quickstart("--out", str(blocker / "run"), "--model", str(tiny_model_dir),
                                     cache=tmp_path / "cache"), "quickstart")
    assert "cannot create the run directory" in last and str(blocker) in last and "--out" in last
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("status", [None, {"created_by": "someone else", "status": "complete"}])
def test_quickstart_never_writes_into_a_users_directory(tmp_path, tiny_model_dir, status):
    """A non-empty directory is continued only if quickstart made it (its quickstart.json says so)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mine.txt").write_text("mine")
    if status is not None:
        (mine / "quickstart.json").write_text(json.dumps(status))
    before = sorted(os.listdir(mine))
    last = one_error_line(quickstart("--out", str(mine), "--model", str(tiny_model_dir), cache=tmp_path / "cache"),
                          "quickstart")
    assert f"--out {mine} exists and is neither empty nor a quickstart run" in last and "another --out" in last
    assert sorted(os.listdir(mine)) == before and (mine / "mine.txt").read_text() == "mine"
    assert not (tmp_path / "cache").exists()


def test_quickstart_bad_traces_are_one_line_and_create_nothing(tmp_path, tiny_model_dir):
    """retrain.prepare's refusals (here --traces) read as quickstart's own error, before any directory is made."""
    last = one_error_line(quickstart("--out", str(tmp_path / "run"), "--model", str(tiny_model_dir), "--traces",
                                     str(tmp_path / "nope"), cache=tmp_path / "cache"), "quickstart")
    assert f"--traces {tmp_path / 'nope'}: no such file or directory" in last
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a read-only mount")
def test_read_only_mount_is_one_line(tmp_path, tiny_model_dir):
    """A real EROFS (root ignores chmod): init-model and quickstart into a read-only tmpfs."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {ro} && exec \"$@\"", "sh"]
    probe = subprocess.run(mount + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount here: {probe.stderr!r}")
    last = one_error_line(run("init-model", str(ro / "m"), prefix=mount), "init-model")
    assert "Read-only file system" in last and str(ro) in last
    last = one_error_line(quickstart("--out", str(ro / "run"), "--model", str(tiny_model_dir),
                                     cache=tmp_path / "cache", prefix=mount), "quickstart")
    assert "cannot create the run directory" in last and "Read-only file system" in last
    assert str(ro / "run") in last


def test_ctrl_c_during_quickstart_says_interrupted_and_marks_the_run(tmp_path, tiny_model_dir):
    """SIGINT once the first stage reports its start (waits for output, not for time)."""
    out = tmp_path / "run[1]"  # brackets: printed as they are, not taken for rich markup
    proc = subprocess.Popen(TINYGPT + ["quickstart", "--short", "--out", str(out), "--model", str(tiny_model_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TINYGPT_CACHE": str(tmp_path / "cache"), "TINYGPT_CONFIG": ""})
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[rollouts] v1: start"):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err
    assert "cli_quickstart.py" not in err and "retrain.py" not in err  # log lines carry no source-file column
    settings = next(line for line in seen if line.startswith("retrain "))
    assert settings.startswith(f"retrain {tiny_model_dir} on calendar (guards: fileops, shop) -> {out / 'loop'}: ")
    assert settings.rstrip().endswith("specialist calendar-specialist")  # one line, not wrapped at 80 columns
    assert f"run directory {out} is incomplete" in err
    status = json.loads((out / "quickstart.json").read_text())
    assert status["created_by"] == "tinygpt quickstart" and status["status"] == "interrupted"
    assert json.loads((out / "loop" / "retrain.json").read_text())["status"] == "interrupted"
    assert not (out / "loop" / "data").exists() and not (out / "routes.json").exists()


def test_quickstart_with_a_bad_model_creates_no_run_dir(tmp_path):
    last = one_error_line(quickstart("--out", str(tmp_path / "run"), "--model", str(tmp_path / "nope"),
                                     cache=tmp_path / "cache"), "quickstart")
    assert "the local path does not exist" in last and not (tmp_path / "run").exists()


def test_doctor_piped_prints_plain_unwrapped_lines():
    r = run("doctor")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(": ", 1) for line in r.stdout.strip().splitlines())
    assert lines["blas"].endswith("libopenblas.so.0") and float(lines["matmul_1024_gflops"]) > 0
    assert "┃" not in r.stdout and "│" not in r.stdout


def test_a_closed_output_pipe_is_quiet(tiny_model_dir):
    proc = subprocess.Popen(TINYGPT + ["generate", "--model", str(tiny_model_dir), "--max-tokens", "64", "hi"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first token is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err
