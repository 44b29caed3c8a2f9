"""`tinygpt eval` and `tinygpt eval-gate` end to end on a tiny base and a specialist from the model store: gold
replay 100%, drop-last 0%, the gate's verdicts and exit codes, gate-result.json, the chart and the store's status;
bad input is one line and exit 2, and a user's file is never replaced."""
import json
import shutil
from types import SimpleNamespace

import pytest

from evals_synthetic import write_run
from test_eval_chart import decode_png
from tinygpt import cli
from tinygpt.runtime.store import ModelStore


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    """A model store with a tiny base and a specialist on it; the specialist replays gold, the base drop-last."""
    from tinygpt.evals.results import read_results
    from tinygpt.runtime.presets import init_adapter

    root = tmp_path_factory.mktemp("cli-eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_CACHE", str(root / "cache"))
        mp.setenv("TINYGPT_CONFIG", "")
        store = ModelStore()
        store.add("base", tiny_model_dir)
        store.add("spec", init_adapter(tiny_model_dir, root / "adapter", rank=2), base="base")
        out = root / "results"
        assert cli.main(["eval", "--model", "spec", "--policy", "gold", "--limit", "12", "--out", str(out)]) == 0
        assert cli.main(["eval", "--model", "base", "--policy", "drop-last", "--limit", "12", "--out", str(out),
                         "--json"]) == 0
        runs = {run.manifest.policy: run for run in read_results(out)}
        assert [r.passed for r in runs["gold"].rows] == [True] * 12
        assert [r.passed for r in runs["drop-last"].rows] == [False] * 12
        yield SimpleNamespace(store=store, results=out)


@pytest.fixture
def store(env):
    return env.store


@pytest.fixture
def scripted(env, tmp_path):
    """A copy of the results as the scripted replays wrote them."""
    copy = tmp_path / "scripted"
    shutil.copytree(env.results, copy)
    return copy


@pytest.fixture
def results(env, tmp_path):
    """A copy of the results, for a test to write into or damage, relabelled as the models' own answers (as if
    each model had answered as its replay did): the gate records no verdict on scripted rows."""
    copy = tmp_path / "results"
    shutil.copytree(env.results, copy)
    for path in copy.rglob("*.json*"):
        text = path.read_text()
        for policy in ("gold", "drop-last"):
            text = text.replace(f'"policy":"{policy}"', '"policy":"model"')
        path.write_text(text)
    return copy


def gate(out, *extra):
    return cli.main(["eval-gate", "--candidate", "spec", "--baseline", "base", "--suites", "fileops",
                     "--results", str(out), *extra])


def test_ship_writes_the_result_and_chart_and_records_the_verdict(results, store, capsys):
    assert gate(results) == 0
    printed = capsys.readouterr()
    assert "verdict: ship" in printed.out and "fileops" in printed.out
    assert "recorded: spec status = shipped" in printed.err
    result = json.loads((results / "gate-result.json").read_text())
    assert result["kind"] == "tinygpt.gate-result" and result["verdict"] == "ship" and result["exit_code"] == 0
    suite = result["suites"][0]
    assert suite["tasks"] == 12 and suite["diff"]["wins"] == 12 and suite["candidate"]["rate"] == 1.0
    assert result["candidate"]["adapter_fingerprint"] and result["baseline"]["adapter_fingerprint"] is None
    assert len(result["config_sha256"]) == 64
    width, height, _, text = decode_png((results / "gate-result.png").read_bytes())
    assert text["Software"] == "tinygpt eval-gate" and width > 300
    assert store.entry("spec").status == "shipped"
    assert gate(results, "--json", "--no-record") == 0  # its own files are replaced
    assert json.loads(capsys.readouterr().out)["recorded"] == "not recorded (--no-record)"


def test_a_verdict_on_scripted_replays_is_never_recorded(scripted, store, capsys):
    before = store.entry("spec").status
    assert gate(scripted, "--no-chart") == 0
    printed = capsys.readouterr()
    assert "verdict: ship" in printed.out
    assert ("not recorded: the candidate's rows are a scripted replay (policy gold); the baseline's rows are a "
            "scripted replay (policy drop-last), not the model's own answers") in printed.err.replace("\n", "")
    assert store.entry("spec").status == before


def test_reject_and_inconclusive_exit_codes(results, store, tmp_path, capsys):
    assert cli.main(["eval-gate", "--candidate", "base", "--baseline", "spec", "--suites", "fileops",
                     "--results", str(results), "--no-chart"]) == 1
    assert "verdict: reject" in capsys.readouterr().out
    assert store.entry("base").status == "rejected"
    config = tmp_path / "gate.toml"
    config.write_text("min_tasks = 20\n")
    assert gate(results, "--config", str(config), "--json") == 3
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "inconclusive" and result["more_tasks"] == 8 and result["config_path"] == str(config)
    assert store.entry("spec").status == "inconclusive"


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"tinygpt {command}: error: ")
    return line


def test_a_users_file_is_never_replaced(results, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    assert gate(results, "--out", str(mine)) == 2
    assert "was not written by tinygpt" in one_error_line(capsys, "eval-gate")
    assert mine.read_text() == '{"my": "notes"}'
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\nnot ours")
    assert gate(results, "--chart", str(picture)) == 2
    assert picture.read_bytes() == b"\x89PNG\r\n\x1a\nnot ours"
    assert not (results / "gate-result.json").exists()  # refused before writing anything


def test_bad_rows_and_missing_results_are_one_line_errors(results, capsys):
    assert gate(results, "--suites", "fileops", "bfcl-other-domains") == 2
    assert "suite bfcl-other-domains: no results for model 'spec'" in one_error_line(capsys, "eval-gate")
    assert gate(results, "--suites", "fileops,bogus") == 2
    assert "unknown suite 'bogus'; suites: fileops, calendar, shop, bfcl-multi-turn" in one_error_line(capsys, "eval-gate")
    (rows,) = [p for p in results.glob("*.results.jsonl") if "spec" in p.name]
    rows.write_text(rows.read_text().replace('"passed":true', '"passed":1', 1))
    assert gate(results) == 2
    assert f"{rows}:1: not a valid result row" in one_error_line(capsys, "eval-gate")


def test_missing_task_in_one_arm_is_an_error(store, tmp_path, capsys):
    write_run(tmp_path, model="spec", outcomes={"a": [True], "b": [True]})
    write_run(tmp_path, model="base", outcomes={"a": [False]})
    assert gate(tmp_path) == 2
    assert "the arms ran different tasks: 1 task(s) only for 'spec' (b)" in one_error_line(capsys, "eval-gate")


def test_eval_usage_errors(store, tmp_path, capsys):
    assert cli.main(["eval", "--suite", "bfcl", "--model", "spec"]) == 2
    assert "unknown suite 'bfcl'; suites: fileops" in one_error_line(capsys, "eval")
    assert cli.main(["eval", "--split", "test", "--model", "spec"]) == 2
    assert "no split 'test'" in one_error_line(capsys, "eval")
    assert cli.main(["eval", "--model", "nope", "--limit", "1", "--out", str(tmp_path / "r")]) == 2
    assert "unknown model 'nope'" in one_error_line(capsys, "eval")
    with pytest.raises(SystemExit) as stop:
        cli.main(["eval", "--passes", "0"])
    assert stop.value.code == 2
    assert cli.main(["eval", "--split", "heldout", "--category", "sort-save", "--limit", "3", "--list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert len(listed) == 3 and all("\tsort-save\t" in line for line in listed)


@pytest.mark.parametrize("command", ["eval", "eval-gate"])
def test_help_teaches_with_examples(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "tinygpt eval-gate --candidate" in text
    assert command in cli.HELP


def test_a_remote_model_that_never_answers_fails_the_run_and_the_gate_refuses_it(store, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "runs"
    assert cli.main(["eval", "--remote", f"http://127.0.0.1:{port}/v1", "--model", "foo", "--limit", "2",
                     "--timeout", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "the run failed: 2 of 2 episodes got no answer from the remote model" in err
    assert "episodes 2/2 (0 passed)" in err  # progress lines when stderr is no terminal
    (manifest,) = out.glob("*.run.json")
    data = json.loads(manifest.read_text())
    assert data["status"] == "failed" and "no answer from the remote model" in data["failure"]
    rows = [json.loads(line) for line in next(out.glob("*.results.jsonl")).read_text().splitlines()]
    assert [r["end"] for r in rows] == ["remote_error"] * 2 and all(r["reason"].startswith("remote_error: ")
                                                                     for r in rows)
    assert cli.main(["eval-gate", "--candidate", "foo", "--baseline", "base", "--suites", "fileops",
                     "--results", str(out)]) == 2
    assert "failed: 2 of 2 episodes got no answer" in one_error_line(capsys, "eval-gate")
