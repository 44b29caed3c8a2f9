"""evals/results_view.py on real files: the index of runs and gate verdicts, a run's rows, a dropped JSONL checked
line by line, and the summary, whose intervals and paired differences must be the gate's own numbers."""
import json
from types import SimpleNamespace

import msgspec
import pytest
from eval_runs_for_tests import BAD, BASE, GOOD, rows_file, write_evals, write_run

from tinygpt.evals import results_view as view
from tinygpt.evals import stats
from tinygpt.evals.compare import compare
from tinygpt.evals.errors import EvalError
from tinygpt.evals.gate_config import GateConfig
from tinygpt.evals.paired import pair
from tinygpt.evals.results import read_run


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, write_evals(root)


def ref(evals, name):
    return evals[1][name].relative_to(evals[0]).as_posix()


def lines_of(evals, *names):
    return [json.loads(line) for k in names for line in rows_file(evals[1][k]).read_text().splitlines()]


def test_index_lists_runs_gate_verdicts_and_problems(evals):
    root, paths = evals
    body = view.index(root)
    assert body["exists"] and body["dir"] == str(root)
    (problem,) = body["problems"]
    assert "copied.results.jsonl: a results file without its run manifest" in problem
    by_model = {r["model"]: r for r in body["runs"]}
    assert set(by_model) == {"base-m", "spec-bad", "spec-good", "spec-live"}
    assert by_model["spec-live"]["status"] == "running" and by_model["base-m"]["tasks"] == 12
    assert by_model["base-m"]["ref"] == ref(evals, "base")
    assert [r["model"] for r in body["runs"]] == ["base-m", "spec-bad", "spec-good", "spec-live"]  # oldest first
    (gate,) = body["gates"]
    assert gate["verdict"] == "reject" and gate["ref"] == "evals/gate-result.json"
    assert gate["candidate"]["model"] == "spec-bad" and gate["baseline"]["model"] == "base-m"
    assert gate["baseline_arm"] == view.arm_id("base-m", "fpB", "model")
    assert msgspec.json.decode(msgspec.json.encode(body)) == body  # plain JSON values only


def test_index_of_a_missing_dir_a_damaged_manifest_and_skipped_folders(tmp_path):
    assert view.index(tmp_path / "nothing") == {"dir": str(tmp_path / "nothing"), "exists": False, "runs": [],
                                                "gates": [], "problems": []}
    write_run(tmp_path / "traces", "hidden-in-traces", [True], fingerprint="f")  # traces/ is not searched
    write_run(tmp_path / ".cache", "hidden", [True], fingerprint="f")
    good = write_run(tmp_path / "a", "m", [True, False], fingerprint="f")
    (tmp_path / "a" / "broken.run.json").write_text("{not json")
    body = view.index(tmp_path)
    assert [r["ref"] for r in body["runs"]] == [good.relative_to(tmp_path).as_posix()]
    (problem,) = body["problems"]
    assert "broken.run.json: not a valid run manifest" in problem


def test_rows_of_a_complete_and_a_running_run(evals):
    root, paths = evals
    body = view.run_rows(root, ref(evals, "bad"))
    assert [r["passed"] for r in body["rows"]] == BAD and body["folder"] == "evals" and not body["partial"]
    assert body["rows"][0]["trajectories"] == [f"traces/{body['run_id']}/fileops-t00.k0.atraj"]
    live = view.run_rows(root, ref(evals, "live"))
    assert live["partial"] and [r["passed"] for r in live["rows"]] == [True, False, True]


def test_a_running_runs_torn_last_line_is_left_out(tmp_path):
    path = write_run(tmp_path, "m", [True, True], fingerprint="f", complete=False)
    with open(rows_file(path), "ab") as f:
        f.write(b'{"version": 1, "run_id"')  # the writer is half-way through a row
    body = view.run_rows(tmp_path, path.name)
    assert body["partial"] and len(body["rows"]) == 2 and body["folder"] == "."


def test_refs_that_name_no_eval_file_are_not_found(evals):
    root, _ = evals
    for bad in ("../x.run.json", "/etc/passwd", "evals/nothing.run.json", "evals/gate-result.json", ""):
        with pytest.raises(view.NotFound, match="no eval file"):
            view.run_rows(root, bad)


def test_a_failed_or_damaged_run_is_a_view_error(tmp_path):
    failed = write_run(tmp_path, "m", [True], fingerprint="f", complete=False)
    manifest = json.loads(failed.read_text())
    failed.write_text(json.dumps({**manifest, "status": "failed", "failure": "the model crashed"}))
    with pytest.raises(view.ViewError, match="the model crashed"):
        view.run_rows(tmp_path, failed.name)
    cut = write_run(tmp_path, "n", [True, False], fingerprint="f")
    rows_file(cut).write_text(rows_file(cut).read_text().splitlines()[0] + "\n")
    with pytest.raises(view.ViewError, match="1 rows, but the run planned 2 tasks"):
        view.run_rows(tmp_path, cut.name)


def test_parse_gives_the_rows_or_names_the_bad_line(evals):
    good = rows_file(evals[1]["base"]).read_bytes()
    ok = view.parse_rows(good, "a.jsonl")
    assert ok["count"] == 12 and ok["name"] == "a.jsonl" and ok["rows"][0]["model"] == "base-m"
    assert ok["rows"] == lines_of(evals, "base")
    lines = good.splitlines()
    broken = json.loads(lines[2])
    broken["score"] = 3
    newer = {**json.loads(lines[0]), "version": 99}
    cases = {b"": "a.jsonl is empty", b" \n": "a.jsonl is empty", lines[0] + b"\n{not json\n": "a.jsonl line 2",
             b"\n".join([lines[0], lines[1], json.dumps(broken).encode()]): "a.jsonl line 3",
             lines[0] + b"\n\n" + lines[1]: "a.jsonl line 2: empty",
             json.dumps({**json.loads(lines[0]), "extra": 1}).encode(): "a.jsonl line 1",
             json.dumps(newer).encode(): "line 1: result row version 99 is newer"}
    for body, said in cases.items():
        with pytest.raises(view.ViewError) as caught:
            view.parse_rows(body, "a.jsonl")
        assert said in str(caught.value), (body[:40], str(caught.value))


def test_the_errors_are_eval_errors_of_two_kinds():
    assert issubclass(view.ViewError, EvalError) and issubclass(view.NotFound, EvalError)
    assert not issubclass(view.NotFound, view.ViewError) and not issubclass(view.ViewError, view.NotFound)


def test_summary_is_the_gates_statistics(evals):
    root, paths = evals
    s = view.summary(root, [ref(evals, k) for k in ("base", "bad", "good")], [], None)
    arms = {a["model"]: a for a in s["arms"]}
    assert s["baseline"] == arms["base-m"]["id"]  # the arm without an adapter
    assert s["groups"] == [{"suite": "fileops", "split": "validation"}] and s["errors"] == []
    cells = {c["arm"]: c for c in s["cells"]}
    for model, outcome in (("base-m", BASE), ("spec-bad", BAD), ("spec-good", GOOD)):
        cell = cells[arms[model]["id"]]
        assert cell["tasks"] == 12 and cell["rate"] == pytest.approx(sum(outcome) / 12) and not cell["partial"]
        assert (cell["lo"], cell["hi"]) == pytest.approx(stats.wilson(sum(outcome), 12))
        for cat in cell["categories"]:  # tasks alternate between the two categories
            passed = sum(ok for i, ok in enumerate(outcome) if ("find-copy", "sort-save")[i % 2] == cat["category"])
            assert cat["tasks"] == 6 and (cat["lo"], cat["hi"]) == pytest.approx(stats.wilson(passed, 6))
    runs = [read_run(paths[k]) for k in ("base", "bad", "good")]
    comps = {c["arm"]: c for c in s["comparisons"]}
    assert len(comps) == 2
    for model, want_flag in (("spec-bad", "regression"), ("spec-good", "not-significant")):
        want = compare(pair(runs, candidate=model, baseline="base-m", suite="fileops"), GateConfig(), 0.0).diff
        got = comps[arms[model]["id"]]
        assert (got["estimate"], got["lo"], got["hi"], got["p_value"]) == pytest.approx(
            (want.estimate, want.lo, want.hi, want.p_value))
        assert got["flag"] == want_flag and got["baseline"] == s["baseline"]
    bad = comps[arms["spec-bad"]["id"]]
    assert bad["hi"] < 0 and bad["p_value"] == 2 / 2**8 and (bad["wins"], bad["losses"]) == (0, 8)
    # another baseline, by its arm id: the base is then compared with it
    other = view.summary(root, [ref(evals, "base"), ref(evals, "good")], [], arms["spec-good"]["id"])
    (comp,) = other["comparisons"]
    assert other["baseline"] == arms["spec-good"]["id"] and comp["arm"] == arms["base-m"]["id"]
    assert comp["estimate"] == pytest.approx(-1 / 12)


def test_summary_of_dropped_rows_equals_the_files(evals):
    root, _ = evals
    from_rows = view.summary(root, [], lines_of(evals, "base", "bad"), None)
    from_files = view.summary(root, [ref(evals, "base"), ref(evals, "bad")], [], None)
    assert from_rows["cells"] == from_files["cells"] and from_rows["comparisons"] == from_files["comparisons"]


def test_a_partial_run_is_shown_but_not_paired(evals):
    root, _ = evals
    s = view.summary(root, [ref(evals, "base"), ref(evals, "live")], [], None)
    live = next(c for c in s["cells"] if c["partial"])
    assert live["tasks"] == 3 and live["rate"] == pytest.approx(2 / 3)
    (comp,) = s["comparisons"]
    assert "different tasks" in comp["error"] and "9 task(s) only for 'base-m'" in comp["error"]  # labels, not ids


def test_one_name_with_two_identities_is_two_arms(tmp_path):
    a = write_run(tmp_path, "spec", [True, False, True], fingerprint="fpB+aaaaaaaaaa")
    b = write_run(tmp_path, "spec", [True, True, True], fingerprint="fpB+bbbbbbbbbb")
    c = write_run(tmp_path, "spec", [False, False, True], fingerprint="fpB+aaaaaaaaaa", policy="replay")
    s = view.summary(tmp_path, [a.name, b.name, c.name], [], None)
    assert sorted(x["label"] for x in s["arms"]) == ["spec @aaaaaaaa", "spec @aaaaaaaa [replay]", "spec @bbbbbbbb"]
    assert len(s["cells"]) == 3 and len(s["comparisons"]) == 2  # no arm without an adapter: the first is baseline


def test_rows_that_are_not_result_rows_are_a_view_error(evals):
    root, _ = evals
    for rows in ([{"model": "m"}], [{**lines_of(evals, "base")[0], "passed": "maybe"}]):
        with pytest.raises(view.ViewError, match="the dropped rows are not result rows"):
            view.summary(root, [], rows, None)
    with pytest.raises(view.NotFound):
        view.summary(root, ["../../etc/x.run.json"], [], None)


def test_a_flag_needs_the_interval_and_the_test_to_agree():
    d = SimpleNamespace
    assert view.flag(d(p_value=0.01, lo=-0.3, hi=-0.1)) == "regression"
    assert view.flag(d(p_value=0.01, lo=0.1, hi=0.3)) == "improvement"
    assert view.flag(d(p_value=0.01, lo=-0.1, hi=0.2)) == "not-significant"  # interval straddles 0
    assert view.flag(d(p_value=0.2, lo=-0.3, hi=-0.1)) == "not-significant"  # the exact test disagrees
