"""`tinygpt traces ls|show|stats` and `tinygpt traces-to-data`: output, --json, and exit 2 on bad input."""
import json
import subprocess
import sys

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
