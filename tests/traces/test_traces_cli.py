"""`tinygpt traces ls|show|stats` and `tinygpt traces-to-data`: output, --json, and exit 2 on bad input."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tinygpt.cli_traces import traces_main, traces_to_data_main
from tinygpt.traces.recorder import Recorder


@pytest.fixture
def traces_dir(tmp_path, episode_factory, header_factory):
    src = tmp_path / "traces"
    for i in range(3):
        episode_factory(src, f"ep{i}", user=f"distinct task number {i} " + "word " * i, seed=i, passed=i != 1)
    Recorder(src, header_factory("ep9"), fsync="none").close()
    return src


def test_ls_json_lists_finished_episodes_and_all_adds_unfinished(traces_dir, capsys):
    assert traces_main(["ls", str(traces_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["episodes"]
    assert [e["episode_id"] for e in listed] == ["ep0", "ep1", "ep2"]
    assert listed[1]["passed"] is False and listed[0]["calls"] == 3 and listed[0]["tool_calls"] == 2
    assert traces_main(["ls", str(traces_dir), "--all", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["episodes"]
    assert listed[-1]["episode_id"] == "ep9" and listed[-1]["status"] == "unfinished"


def test_ls_table(traces_dir, capsys):
    assert traces_main(["ls", str(traces_dir)]) == 0
    out = capsys.readouterr().out
    assert "ep0" in out and "task-ep2" in out and "3 episode(s); 0 unreadable" in out


def test_show_renders_calls_results_and_outcome(traces_dir, capsys):
    assert traces_main(["show", "ep1", "--dir", str(traces_dir), "--ids"]) == 0
    out = capsys.readouterr().out
    assert "→ ls" in out and '"/d0"' in out and "file1.txt" in out
    assert "checker unit: fail" in out and "mean logprob -0.250" in out and "output ids: [" in out
    assert traces_main(["show", str(traces_dir / "ep0.atraj"), "--json"]) == 0
    episode = json.loads(capsys.readouterr().out)
    assert episode["header"]["episode_id"] == "ep0" and episode["end"]["verdict"]["passed"] is True


def test_stats_json(traces_dir, capsys):
    assert traces_main(["stats", str(traces_dir), "--all", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["episodes"] == 4 and stats["complete"] == 3 and stats["unfinished"] == 1
    assert stats["pass_rate"] == pytest.approx(2 / 3) and stats["calls"] == 9
    assert stats["by_model"] == {"tiny": 4}


def test_traces_to_data_json_report(traces_dir, tmp_path, capsys):
    out = tmp_path / "data"
    assert traces_to_data_main([str(traces_dir), "--out", str(out), "--require-pass", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 2 and report["filtered"] == {"not_passed": 1} and report["incomplete"] == 1
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2


def test_traces_to_data_table_report(traces_dir, tmp_path, capsys):
    assert traces_to_data_main([str(traces_dir), "--out", str(tmp_path / "d"), "--no-near-dedupe"]) == 0
    captured = capsys.readouterr()
    assert "written" in captured.out and "3 (3 rows, 0 chat only)" in captured.out
    assert "near_dedupe=False" in captured.err  # the resolved config, printed first


@pytest.mark.parametrize("argv, message", [
    (["show", "nope"], "no episode id starts with 'nope' under ."),
    (["show", "no/such.atraj"], "no/such.atraj does not exist"),
    (["show", "nope", "--dir", "/does/not/exist"], "--dir /does/not/exist is not a directory"),
    (["ls", "/does/not/exist"], "neither a trace file nor a directory"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_traces_bad_input_exits_2_with_a_message(argv, message, capsys):
    assert traces_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--threshold", "2"], "--threshold must be in (0, 1]"),
    (["--num-perm", "abc"], "invalid int value"),
    (["--decontaminate", "/no/such.jsonl"], "cannot read eval tasks"),
])
def test_traces_to_data_bad_input_exits_2(traces_dir, tmp_path, extra, message, capsys):
    assert traces_to_data_main([str(traces_dir), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_file_in_show_is_exit_2_without_traceback(traces_dir):
    path = traces_dir / "ep0.atraj"
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    code = "import sys; from tinygpt.cli_traces import traces_main; sys.exit(traces_main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "show", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "fails its CRC check" in proc.stderr and "Traceback" not in proc.stderr


def test_help_has_examples(capsys):
    assert traces_main(["--help"]) == 0
    assert "examples:" in capsys.readouterr().out
    assert traces_to_data_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--decontaminate" in out and "rows.jsonl" in out and "examples:" in out


LONG_ID = "episode-" + "x" * 100 + "-end"


def test_ls_piped_prints_full_ids_and_times_one_row_per_line_without_colour(tmp_path, episode_factory, capsys):
    src = tmp_path / ("a-rather-long-directory-name-" * 3) / "traces"
    episode_factory(src, LONG_ID, created_at=1_700_000_000.0, model="/models/" + "m" * 90, passed=False)
    assert traces_main(["ls", str(src)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # no colour codes when not a terminal
    (row,) = [line for line in out.splitlines() if LONG_ID in line]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000.0))
    assert when in row and "/models/" + "m" * 90 in row and row.rstrip().endswith("done")
    assert " no " in row  # the passed column, plain
    assert traces_main(["ls", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"][0]["created_at"] == 1_700_000_000.0


def test_show_piped_keeps_long_paths_on_one_line(tmp_path, episode_factory, capsys):
    src = tmp_path / ("a-rather-long-directory-name-" * 4)
    path, _ = episode_factory(src, LONG_ID)
    assert traces_main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and any(str(path) in line for line in out.splitlines())


@pytest.fixture
def prefixed(tmp_path, episode_factory):
    src = tmp_path / "t"
    for name in ("3c7f0a11", "3c80beef", "ab12"):
        episode_factory(src / "sub", name, user=f"task {name}")
    return src


def test_show_selects_an_episode_by_an_unambiguous_id_prefix(prefixed, capsys, monkeypatch):
    assert traces_main(["show", "3c7f", "--dir", str(prefixed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["header"]["episode_id"] == "3c7f0a11"
    monkeypatch.chdir(prefixed / "sub")  # without --dir: the current directory
    assert traces_main(["show", "ab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["header"]["episode_id"] == "ab12"


def test_an_ambiguous_prefix_is_one_line_listing_the_candidates(prefixed, capsys):
    assert traces_main(["show", "3c", "--dir", str(prefixed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'3c' is the start of 2 episode ids" in err
    assert "3c7f0a11, 3c80beef; give more of the id" in err
    assert traces_main(["show", "zz", "--dir", str(prefixed)]) == 2
    assert "no episode id starts with 'zz'" in capsys.readouterr().err


def test_traces_to_data_prints_settings_only_when_changed(traces_dir, tmp_path, capsys):
    assert traces_to_data_main([str(traces_dir), "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""  # defaults: no dump of every setting
    assert traces_to_data_main([str(traces_dir), "--out", str(tmp_path / "b"), "--split", "train",
                                "--split", "eval", "--threshold", "0.9"]) == 0
    assert capsys.readouterr().err == "traces-to-data: split=train,eval, threshold=0.9\n"


def _one_line_exit_2(argv, capsys) -> str:
    assert traces_to_data_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unwritable_out_is_one_line_and_exit_2(traces_dir, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    err = _one_line_exit_2([str(traces_dir), "--out", str(a_file / "data")], capsys)
    assert f"cannot write training data to --out {a_file / 'data'}: a part of that path is a file" in err
    err = _one_line_exit_2([str(traces_dir), "--out", str(a_file)], capsys)
    assert f"--out {a_file} is a file; pass a directory" in err
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_one_line_and_exit_2(traces_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    err = _one_line_exit_2([str(traces_dir), "--out", str(locked)], capsys)
    assert "Permission denied" in err and list(locked.iterdir()) == []


def test_outputs_that_no_run_wrote_are_never_overwritten(traces_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.jsonl").write_text("the user's own file\n")
    err = _one_line_exit_2([str(traces_dir), "--out", str(out)], capsys)
    assert "already holds rows.jsonl that traces-to-data did not write" in err
    assert (out / "rows.jsonl").read_text() == "the user's own file\n" and len(list(out.iterdir())) == 1
    again = tmp_path / "again"  # a previous run's outputs are replaced by the next run's
    assert traces_to_data_main([str(traces_dir), "--out", str(again), "--require-pass", "--json"]) == 0
    assert traces_to_data_main([str(traces_dir), "--out", str(again), "--json"]) == 0
    capsys.readouterr()
    assert len((again / "rows.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in again.iterdir()) == ["chat.jsonl", "report.json", "rows.jsonl"]


INTERRUPTED = textwrap.dedent("""
    import sys, time
    import tinygpt.traces.to_data as to_data
    from tinygpt.cli_traces import traces_to_data_main

    real = to_data._process

    def process_then_wait(paths):  # the test's hook: say when a batch is done, then wait for Ctrl-C
        results = real(paths)
        print("ready", flush=True)
        time.sleep(60)
        return results

    to_data._process = process_then_wait
    sys.exit(traces_to_data_main(sys.argv[1:]))
""")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_says_interrupted_exits_130_and_leaves_the_previous_outputs(traces_dir, tmp_path, workers):
    out = tmp_path / "out"
    assert traces_to_data_main([str(traces_dir), "--out", str(out), "--require-pass", "--json"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    proc = subprocess.Popen([sys.executable, str(script), str(traces_dir), "--out", str(out), "--workers", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # the run is under way: its outputs are being assembled
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.endswith("interrupted\n") and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no work dir, nothing half-replaced


def test_help_imports_nothing_heavy():
    code = textwrap.dedent("""
        import contextlib, io, sys
        from tinygpt.cli_traces import traces_main, traces_to_data_main
        with contextlib.redirect_stdout(io.StringIO()):
            codes = [traces_main(["--help"]), traces_main(["show", "--help"]), traces_to_data_main(["--help"])]
        heavy = ("rich", "numpy", "datasketch", "scipy", "mlx", "mlx_lm", "tinygpt.traces.to_data")
        print(codes, sorted(m for m in heavy if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "[0, 0, 0] []\n", proc.stderr


def test_show_never_cuts_a_footer_to_a_short_answers_width(traces_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert traces_main(["show", "ep0", "--dir", str(traces_dir)]) == 0
    footers = [line for line in capsys.readouterr().out.splitlines() if "prompt +" in line]
    assert len(footers) == 3 and all(" ms" in line and line.endswith(" ─╯") for line in footers), footers
