"""The Eval results page (/ui/evals) against a real server built as `tinygpt serve` builds it: its JSON is what the
evals provider (tinygpt.evals.results_view, unit-tested in tests/evals/test_results_view.py) gives, plus each row's
trajectory links; the provider's NotFound / ViewError and bad requests are 4xx; a server without the provider says
so (404, never a 500). In Chromium: an interval read off a bar's hover label, a regression marked, a gate verdict
shown, a dropped file drawn, and the message of a server without the provider."""
import json

import httpx
import pytest
from browser_for_tests import browser, ui_page, ui_server  # noqa: F401
from eval_runs_for_tests import BAD, rows_file, write_evals
from server_for_tests import serving

from tinygpt.evals import results_view, stats
from tinygpt.web.app import create_app
from tinygpt.web.config import ServeConfig
from tinygpt.web.ui_evals import NOT_WIRED


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, write_evals(root)


class Srv:
    def __init__(self, url):
        self.url = url


@pytest.fixture(scope="module")
def srv(tiny_model, empty_store, evals):
    with ui_server(tiny_model, store=empty_store, max_tokens=64, evals_dir=str(evals[0]),
                   runs_dir=str(evals[0])) as (url, _app):
        yield Srv(url)


def ref(evals, name):
    return evals[1][name].relative_to(evals[0]).as_posix()


def test_index_is_the_providers(srv, evals):
    body = httpx.get(f"{srv.url}/ui/api/evals/index").json()
    assert body == results_view.index(evals[0])
    assert {r["model"] for r in body["runs"]} == {"base-m", "spec-bad", "spec-good", "spec-live"}
    assert [g["verdict"] for g in body["gates"]] == ["reject"] and len(body["problems"]) == 1


def test_rows_carry_trajectory_links_and_refused_refs_are_404(srv, evals):
    body = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": ref(evals, "bad")}).json()
    assert [r["passed"] for r in body["rows"]] == BAD and body["folder"] == "evals" and not body["partial"]
    run_id = body["run_id"]  # each turn's trajectory links to the viewer, the evals directory being its root "evals"
    assert body["links"][0] == [f"/ui/trajectories/evals/evals/traces/{run_id}/fileops-t00.k0.atraj"]
    assert len(body["links"]) == 12
    live = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": ref(evals, "live")}).json()
    assert live["partial"] and len(live["rows"]) == 3 and len(live["links"]) == 3
    for bad in ("../x.run.json", "/etc/passwd", "evals/nothing.run.json", "evals/gate-result.json"):
        r = httpx.get(f"{srv.url}/ui/api/evals/rows", params={"ref": bad})
        assert r.status_code == 404 and "no eval file" in r.json()["error"]
    assert httpx.get(f"{srv.url}/ui/api/evals/rows").status_code == 400  # no ref at all


def test_summary_is_the_providers(srv, evals):
    refs = [ref(evals, k) for k in ("base", "bad", "good")]
    s = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"refs": refs}).json()
    assert s == results_view.summary(evals[0], refs, [], None)
    flags = {c["arm"]: c["flag"] for c in s["comparisons"]}
    arms = {a["model"]: a["id"] for a in s["arms"]}
    assert flags == {arms["spec-bad"]: "regression", arms["spec-good"]: "not-significant"}
    rows = [json.loads(line) for line in rows_file(evals[1]["good"]).read_text().splitlines()]
    mixed = httpx.post(f"{srv.url}/ui/api/evals/summary",
                       json={"refs": [ref(evals, "base")], "rows": rows, "baseline": arms["spec-good"]}).json()
    assert mixed == results_view.summary(evals[0], [ref(evals, "base")], rows, arms["spec-good"])
    assert mixed["baseline"] == arms["spec-good"]


def test_parse_gives_the_rows_or_a_400_naming_the_line(srv, evals):
    good = rows_file(evals[1]["base"]).read_bytes()
    ok = httpx.post(f"{srv.url}/ui/api/evals/parse", params={"name": "a.jsonl"}, content=good).json()
    assert ok["count"] == 12 and ok["rows"][0]["model"] == "base-m"
    lines = good.splitlines()
    for body, said in {b"": "a.jsonl is empty", lines[0] + b"\n{not json\n": "a.jsonl line 2",
                       lines[0] + b"\n\n" + lines[1]: "a.jsonl line 2: empty"}.items():
        r = httpx.post(f"{srv.url}/ui/api/evals/parse", params={"name": "a.jsonl"}, content=body)
        assert r.status_code == 400 and said in r.json()["error"], (body[:40], r.text)


def test_a_bad_summary_request_is_a_4xx(srv):
    for body in ({"refs": "x"}, {"nope": 1}, {"rows": [{"model": "m"}]}, {"rows": "x"}):
        r = httpx.post(f"{srv.url}/ui/api/evals/summary", json=body)
        assert r.status_code == 400 and r.json()["error"], r.text
    r = httpx.post(f"{srv.url}/ui/api/evals/summary", json={"refs": ["../../etc/x.run.json"]})
    assert r.status_code == 404 and "no eval file" in r.json()["error"]


@pytest.fixture(scope="module")
def unwired(tiny_model, empty_store, evals):
    """A server whose app was built without the evals provider (create_app alone, as a caller that forgets it)."""
    app = create_app(ServeConfig(model=str(tiny_model), store=empty_store, max_tokens=64, evals_dir=str(evals[0])))
    with serving(app) as url:
        yield url


def test_without_the_provider_the_api_says_so(unwired, evals):
    answers = [httpx.get(f"{unwired}/ui/api/evals/index"),
               httpx.get(f"{unwired}/ui/api/evals/rows", params={"ref": ref(evals, "base")}),
               httpx.post(f"{unwired}/ui/api/evals/parse", content=b"{}"),
               httpx.post(f"{unwired}/ui/api/evals/summary", json={"refs": []})]
    for r in answers:
        assert r.status_code == 404 and r.json() == {"error": NOT_WIRED}, r.text
    assert "not available in this server" in NOT_WIRED
    page = httpx.get(f"{unwired}/ui/evals")
    assert page.status_code == 200 and "evals.js" in page.text


@pytest.mark.ui_allowed_errors(r"status of 404")
def test_without_the_provider_the_page_says_so(unwired, ui_page):
    ui_page.goto(f"{unwired}/ui/evals")
    ui_page.wait_for_selector("#problems li")
    assert ui_page.locator("#problems").inner_text() == NOT_WIRED


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
    lines = [line for k in ("base", "good") for line in rows_file(evals[1][k]).read_text().splitlines()]
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


def test_the_test_servers_are_tinygpt_serves_app(tiny_model, empty_store, evals):
    """running_server builds through tinygpt.cli_serve.build_app, as ui_server does: the chat's tool worlds and
    the eval results are there."""
    from server_for_tests import running_server

    with running_server(tiny_model, store=empty_store, max_tokens=64, evals_dir=str(evals[0])) as url:
        base = url.removesuffix("/v1")
        tools = [w["name"] for w in httpx.get(f"{base}/ui/api/chat/options").json()["tools"]]
        assert tools == ["none", "files", "sandbox", "calendar", "shop"]
        index = httpx.get(f"{base}/ui/api/evals/index")
        assert index.status_code == 200 and len(index.json()["runs"]) == 4
