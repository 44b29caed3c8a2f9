"""The Eval results page (/ui/evals) against a real server: its JSON (runs, gate verdicts, rows, a dropped file,
the summary's intervals and paired differences, which must be the gate's own numbers) and, in Chromium, the chart:
an interval read off a bar's hover label, a regression marked, a gate verdict shown, a dropped file drawn."""
import json
import time

import httpx
import msgspec
import pytest
from browser_for_tests import browser, ui_page  # noqa: F401

from tinygpt.evals import stats
from tinygpt.evals.compare import compare
from tinygpt.evals.gate import evaluate
from tinygpt.evals.gate_config import GateConfig
from tinygpt.evals.paired import pair
from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id, read_run

CATEGORIES = ("find-copy", "sort-save")


def write_run(directory, model, outcomes, *, fingerprint, suite="fileops", split="validation", policy="model",
              complete=True):
    """A run written by the real writer: `outcomes[i]` is task i's pass (K = 1). Returns the manifest path."""
    manifest = RunManifest(run_id=new_run_id(suite, split, model), status="running", suite=suite, split=split,
                           model=model, model_fingerprint=fingerprint, policy=policy, passes=1, tasks=len(outcomes),
                           started_at=time.time())
    with ResultWriter(directory, manifest) as writer:
        for i, ok in enumerate(outcomes):
            task = f"{suite}-t{i:02d}"
            writer.add(ResultRow(
                run_id=manifest.run_id, suite=suite, split=split, category=CATEGORIES[i % 2], task_id=task,
                pass_index=0, model=model, model_fingerprint=fingerprint, base_fingerprint=fingerprint.split("+")[0],
                adapter_fingerprint=fingerprint.split("+")[1] if "+" in fingerprint else None, policy=policy,
                passed=ok, score=float(ok), steps=3, prompt_tokens=100, output_tokens=20, latency_s=0.5, seed=i,
                finished_at=time.time(), end="answer", reason="ok" if ok else "the tree differs",
                trajectories=[f"traces/{manifest.run_id}/{task}.k0.atraj"]))
        if complete:
            writer.complete()
    return writer.manifest_path


BASE = [True] * 10 + [False] * 2  # 10/12
BAD = [True] * 2 + [False] * 10  # loses 8 tasks the base passes, wins none: McNemar p = 2/2^8
GOOD = [True] * 11 + [False]  # one more task than the base: no significant difference


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    results = root / "evals"
    paths = {"base": write_run(results, "base-m", BASE, fingerprint="fpB"),
             "bad": write_run(results, "spec-bad", BAD, fingerprint="fpB+fpA1"),
             "good": write_run(results, "spec-good", GOOD, fingerprint="fpB+fpA2")}
    gate = evaluate([read_run(paths["base"]), read_run(paths["bad"])], candidate="spec-bad", baseline="base-m",
                    suites=["fileops"])
    (results / "gate-result.json").write_bytes(msgspec.json.format(msgspec.json.encode(gate), indent=2))
    paths["live"] = write_run(results, "spec-live", [True, False, True], fingerprint="fpB+fpA3", complete=False)
    stray = root / "elsewhere" / "copied.results.jsonl"  # rows without their manifest: listed as a problem
    stray.parent.mkdir()
    stray.write_bytes(paths["base"].with_name(paths["base"].name.replace(".run.json", ".results.jsonl")).read_bytes())
    return root, paths


@pytest.fixture(scope="module")
def srv(start_server, evals):
    return start_server(evals_dir=str(evals[0]), runs_dir=str(evals[0]))


def ref(evals, name):
    return evals[1][name].relative_to(evals[0]).as_posix()


def test_index_lists_runs_and_gate_verdicts(srv, evals):
    body = httpx.get(f"{srv.url}/ui/api/evals/index").json()
    assert body["exists"]
    (problem,) = body["problems"]
    assert "copied.results.jsonl: a results file without its run manifest" in problem
    by_model = {r["model"]: r for r in body["runs"]}
    assert set(by_model) == {"base-m", "spec-bad", "spec-good", "spec-live"}
    assert by_model["spec-live"]["status"] == "running" and by_model["base-m"]["tasks"] == 12
    assert by_model["base-m"]["ref"] == ref(evals, "base")
    (gate,) = body["gates"]
    assert gate["verdict"] == "reject" and gate["ref"] == "evals/gate-result.json"
    assert gate["candidate"]["model"] == "spec-bad" and gate["baseline"]["model"] == "base-m"


def test_rows_of_a_run_and_refs_that_are_refused(srv, evals):
    body = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": ref(evals, "bad")}).json()
    assert [r["passed"] for r in body["rows"]] == BAD and body["folder"] == "evals" and not body["partial"]
    run_id = body["run_id"]  # each turn's trajectory links to the viewer, the evals directory being its root "evals"
    assert body["links"][0] == [f"/ui/trajectories/evals/evals/traces/{run_id}/fileops-t00.k0.atraj"]
    live = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": ref(evals, "live")}).json()
    assert live["partial"] and len(live["rows"]) == 3
    for bad in ("../x.run.json", "/etc/passwd", "evals/nothing.run.json", "evals/gate-result.json"):
        r = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": bad})
        assert r.status_code == 404 and "no eval file" in r.json()["error"]


def test_summary_is_the_gates_statistics(srv, evals):
    refs = [ref(evals, k) for k in ("base", "bad", "good")]
    s = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"refs": refs}).json()
    arms = {a["model"]: a for a in s["arms"]}
    assert s["baseline"] == arms["base-m"]["id"]  # the arm without an adapter
    cells = {c["arm"]: c for c in s["cells"]}
    for model, outcome in (("base-m", BASE), ("spec-bad", BAD), ("spec-good", GOOD)):
        cell = cells[arms[model]["id"]]
        assert cell["tasks"] == 12 and cell["rate"] == pytest.approx(sum(outcome) / 12)
        assert (cell["lo"], cell["hi"]) == pytest.approx(stats.wilson(sum(outcome), 12))
    runs = [read_run(evals[1][k]) for k in ("base", "bad", "good")]
    comps = {c["arm"]: c for c in s["comparisons"]}
    for model, flag in (("spec-bad", "regression"), ("spec-good", "not-significant")):
        want = compare(pair(runs, candidate=model, baseline="base-m", suite="fileops"), GateConfig(), 0.0).diff
        got = comps[arms[model]["id"]]
        assert (got["estimate"], got["lo"], got["hi"], got["p_value"]) == pytest.approx(
            (want.estimate, want.lo, want.hi, want.p_value))
        assert got["flag"] == flag
    assert comps[arms["spec-bad"]["id"]]["hi"] < 0 and comps[arms["spec-bad"]["id"]]["p_value"] == 2 / 2**8


def test_summary_of_dropped_rows_equals_the_files(srv, evals):
    rows = [json.loads(line) for k in ("base", "bad") for line in
            evals[1][k].with_name(evals[1][k].name.replace(".run.json", ".results.jsonl")).read_text().splitlines()]
    from_rows = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"rows": rows}).json()
    from_files = httpx.post(f"{srv.url}/ui/api/evals/summary",
                            json={"refs": [ref(evals, "base"), ref(evals, "bad")]}).json()
    assert from_rows["cells"] == from_files["cells"] and from_rows["comparisons"] == from_files["comparisons"]


def test_a_partial_run_is_shown_but_not_paired(srv, evals):
    s = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"refs": [ref(evals, "base"), ref(evals, "live")]}).json()
    live = next(c for c in s["cells"] if c["partial"])
    assert live["tasks"] == 3 and live["rate"] == pytest.approx(2 / 3)
    (comp,) = s["comparisons"]
    assert "different tasks" in comp["error"] and "9 task(s) only for 'base-m'" in comp["error"]  # labels, not ids


def test_parse_names_the_bad_line(srv, evals):
    path = evals[1]["base"].with_name(evals[1]["base"].name.replace(".run.json", ".results.jsonl"))
    good = path.read_bytes()
    ok = httpx.post(f"{srv.url}/ui/api/evals/parse", params={"name": "a.jsonl"}, content=good).json()
    assert ok["count"] == 12 and ok["rows"][0]["model"] == "base-m"
    lines = good.splitlines()
    broken = json.loads(lines[2])
    broken["score"] = 3
    cases = {b"": "empty", lines[0] + b"\n{not json\n": "line 2",
             b"\n".join([lines[0], lines[1], json.dumps(broken).encode()]): "line 3",
             lines[0] + b"\n\n" + lines[1]: "line 2: empty",
             json.dumps({**json.loads(lines[0]), "extra": 1}).encode(): "line 1"}
    for body, said in cases.items():
        r = httpx.post(f"{srv.url}/ui/api/evals/parse", params={"name": "a.jsonl"}, content=body)
        assert r.status_code == 400 and said in r.json()["error"], (body[:40], r.text)


def test_a_bad_summary_request_is_a_400(srv):
    for body in ({"refs": "x"}, {"nope": 1}, {"rows": [{"model": "m"}]}):
        r = httpx.post(f"{srv.url}/ui/api/evals/summary", json=body)
        assert r.status_code == 400, r.text
    r = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"refs": ["../../etc/x.run.json"]})
    assert r.status_code == 404


# ---- in the browser

def _wait_chart(page):
    page.wait_for_function("() => { const g = document.getElementById('evals-chart');"
                           " return g && g.data && g.data.length > 0 && g.querySelector('.errorbar'); }")


def test_the_chart_shows_intervals_and_the_regression(srv, evals, ui_page):
    page = ui_page
    runs = ",".join(ref(evals, k) for k in ("base", "bad", "good"))
    page.goto(f"{srv.url}/ui/evals?runs={runs}")
    _wait_chart(page)
    names = page.evaluate("() => document.getElementById('evals-chart').data.map(t => t.name)")
    bad = next(i for i, n in enumerate(names) if n.startswith("spec-bad"))
    # hover the spec-bad bar and read its interval off the hover label
    page.evaluate(f"() => Plotly.Fx.hover('evals-chart', [{{curveNumber: {bad}, pointNumber: 0}}])")
    label = page.locator("#evals-chart .hoverlayer").text_content()
    lo, hi = stats.wilson(2, 12)
    assert f"[{100 * lo:.1f}%, {100 * hi:.1f}%]" in label and "regression" in label
    # the error bar drawn is that interval
    bar = page.evaluate(f"() => {{ const t = document.getElementById('evals-chart').data[{bad}]; return [t.y[0], "
                        "t.error_y.array[0], t.error_y.arrayminus[0], t.marker.line.color[0], t.text[0]]; }")
    assert bar[0] + bar[1] == pytest.approx(hi) and bar[0] - bar[2] == pytest.approx(lo)
    assert bar[3] == "#c62828" and bar[4] == "▼"
    flags = page.locator("#summary-table tr.regression")
    assert flags.count() == 1 and "spec-bad" in flags.inner_text()
    assert page.locator(".gate-card[data-verdict=reject]").count() == 1
    # the difference chart: spec-bad's point and interval below zero
    diff = page.evaluate("() => document.getElementById('diff-chart').data"
                         ".map(t => [t.name, t.x[0], t.error_x.array[0]])")
    d = {n: (x, up) for n, x, up in diff}
    assert d["spec-bad"][0] + d["spec-bad"][1] < 0 and d["spec-good"][0] + d["spec-good"][1] > 0
    # clicking the table's row lists the episodes behind the bar
    flags.locator("button").click()
    page.wait_for_selector("#episodes-table tbody tr")
    assert page.locator("#episodes-table tbody tr").count() == 12


def test_a_gate_card_shows_its_runs(srv, evals, ui_page):
    page = ui_page
    page.goto(f"{srv.url}/ui/evals?runs={ref(evals, 'good')}")
    _wait_chart(page)
    page.locator(".gate-card[data-verdict=reject] button").click()
    page.wait_for_function("() => document.getElementById('evals-chart').data.length === 2")
    assert page.evaluate("() => new URLSearchParams(location.search).get('runs').split(',').length") == 2
    assert page.locator("#summary-table tr.regression").count() == 1
    page.check("#by-category")  # one bar per category: 4 losses of 6 is no significant regression (McNemar p = 1/8)
    page.wait_for_function("() => document.getElementById('evals-chart').data[0].x.length === 2")
    assert page.evaluate("() => document.getElementById('evals-chart').data[0].x") == [
        "fileops / find-copy", "fileops / sort-save"]
    assert "by=category" in page.url and page.locator("#summary-table tr.regression").count() == 0
    assert page.locator("#summary-table .flag-not-significant").count() == 2


@pytest.mark.ui_allowed_errors(r"status of 400")
def test_a_dropped_file_is_drawn_or_its_bad_line_named(srv, evals, ui_page, tmp_path):
    page = ui_page
    page.goto(f"{srv.url}/ui/evals?runs=")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    lines = [line for k in ("base", "good") for line in
             evals[1][k].with_name(evals[1][k].name.replace(".run.json", ".results.jsonl")).read_text().splitlines()]
    # a file dropped on the drop zone (a real drop event carrying a File)
    page.evaluate("""text => { const dt = new DataTransfer();
        dt.items.add(new File([text], 'bad.jsonl', {type: 'application/x-ndjson'}));
        document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                                                 cancelable: true})); }""",
                  lines[0] + "\n" + '{"version": 1}\n')
    page.wait_for_selector("#drop-error:not([hidden])")
    assert "bad.jsonl line 2" in page.locator("#drop-error").inner_text()
    good = tmp_path / "two-models.results.jsonl"
    good.write_text("\n".join(lines) + "\n")
    page.set_input_files("#file-input", str(good))
    _wait_chart(page)
    ys = page.evaluate("() => document.getElementById('evals-chart').data.map(t => t.y[0])")
    assert sorted(ys) == pytest.approx([10 / 12, 11 / 12])
    assert page.locator("#drop-error").is_hidden() and "24 rows" in page.locator("#dropped").inner_text()
