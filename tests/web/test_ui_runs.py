"""The Training runs page (/ui/runs) against a real server: the run list (running, stalled, complete, nested runs,
folders that are no run), metrics read from an offset (a line being written waits, a rewritten file resets), and in
Chromium a live curve that gains the points appended to metrics.jsonl while the page is open."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from browser_for_tests import browser, ui_page  # noqa: F401


def step(n, loss=2.0, tokens=512, seconds=0.25):
    return {"step": n, "loss": loss - 0.1 * n, "tokens": tokens, "lr": 1e-4, "seconds": seconds}


def make_run(path, status="running", lines=(), **marker):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"created_by": "tinygpt train", "status": status,
                                               "created": "2026-01-01T00:00:00Z", **marker}))
    (path / "config.toml").write_text('model = "tiny"\nmethod = "lora"\niters = 10\nlearning_rate = 0.0001\n')
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def append(path, text):
    with open(path / "metrics.jsonl", "a") as f:
        f.write(text)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "train-a", lines=[step(1), step(2), {"step": 2, "val_loss": 1.9, "seconds": 0.1}, step(3)])
    make_run(root / "pre-b", status="complete", kind="pretrain", lines=[step(i) for i in range(1, 6)],
             summary={"status": "complete", "step": 5, "iters": 5})
    make_run(root / "old", lines=[step(1)])
    past = time.time() - 3600
    for name in ("run.json", "metrics.jsonl"):
        os.utime(root / "old" / name, (past, past))
    make_run(root / "retrain" / "train" / "v1" / "run", status="complete", lines=[step(1)])
    (root / "other").mkdir()
    (root / "other" / "run.json").write_text(json.dumps({"created_by": "someone else", "status": "running"}))
    make_run(root / "live", lines=[step(1), step(2), step(3)])
    return root


@pytest.fixture(scope="module")
def srv(start_server, runs):
    return start_server(runs_dir=str(runs), evals_dir=str(runs))


def metrics(srv, ref, offset=0, file=None):
    params = {"ref": ref, "offset": offset} | ({"file": file} if file else {})
    r = httpx.get(f"{srv.url}/ui/api/runs/metrics", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_index_lists_the_trainers_runs(srv):
    body = httpx.get(f"{srv.url}/ui/api/runs/index").json()
    runs = {r["ref"]: r for r in body["runs"]}
    assert set(runs) == {"train-a", "pre-b", "old", "retrain/train/v1/run", "live"}
    assert runs["train-a"]["status"] == "running" and runs["train-a"]["live"]
    assert runs["old"]["status"] == "stalled" and not runs["old"]["live"]
    assert runs["pre-b"]["kind"] == "pretrain" and runs["pre-b"]["summary"]["step"] == 5
    assert runs["train-a"]["config"] == {"model": "tiny", "method": "lora", "iters": 10, "learning_rate": 0.0001}


def test_metrics_from_an_offset(srv, runs):
    run = runs / "train-a"
    first = metrics(srv, "train-a")
    assert [p["step"] for p in first["points"]] == [1, 2, 2, 3] and first["points"][2] == {
        "step": 2, "val_loss": 1.9, "seconds": 0.1}
    assert first["offset"] == (run / "metrics.jsonl").stat().st_size and not first["reset"]
    assert metrics(srv, "train-a", first["offset"], first["file"])["points"] == []
    half = json.dumps(step(4))
    append(run, half[:10])  # a line still being written
    got = metrics(srv, "train-a", first["offset"], first["file"])
    assert got["points"] == [] and got["offset"] == first["offset"]
    append(run, half[10:] + "\n" + "not json\n" + json.dumps({"step": "x"}) + "\n")
    got = metrics(srv, "train-a", first["offset"], first["file"])
    assert [p["step"] for p in got["points"]] == [4] and got["skipped"] == 2
    assert got["run"]["status"] == "running"


def test_a_rewritten_file_resets_the_reader(srv, runs):
    run = runs / "pre-b"
    first = metrics(srv, "pre-b")
    assert len(first["points"]) == 5 and first["run"]["status"] == "complete"
    tmp = run / ".metrics.tmp"  # as the trainer's resume does: a new file renamed over the old one, cut short
    tmp.write_text(json.dumps(step(1)) + "\n")
    os.replace(tmp, run / "metrics.jsonl")
    again = metrics(srv, "pre-b", first["offset"], first["file"])
    assert again["reset"] and [p["step"] for p in again["points"]] == [1]
    assert metrics(srv, "pre-b", 10**6)["reset"]  # past the end: start over


def test_refs_and_offsets_that_are_refused(srv):
    for ref in ("../x", "/etc", "other", "nothing", "retrain/train"):
        r = httpx.get(f"{srv.url}/ui/api/runs/metrics", params={"ref": ref})
        assert r.status_code == 404 and "no training run" in r.json()["error"], ref
    r = httpx.get(f"{srv.url}/ui/api/runs/metrics", params={"ref": "pre-b", "offset": -1})
    assert r.status_code == 400


def test_the_curve_gains_the_points_appended_while_the_page_is_open(srv, runs, ui_page):
    page, run = ui_page, runs / "live"
    page.goto(f"{srv.url}/ui/runs?runs=live")
    count = "() => { const g = document.getElementById('loss-chart'); return g && g.data ? g.data[0].x.length : -1; }"
    page.wait_for_function(f"() => ({count})() === 3")
    append(run, json.dumps(step(4)) + "\n" + json.dumps({"step": 4, "val_loss": 1.5, "seconds": 0.1}) + "\n"
           + json.dumps(step(5))[:12])
    page.wait_for_function(f"() => ({count})() === 4")
    page.wait_for_function("() => document.getElementById('loss-chart').data[1].x.length === 1")
    append(run, json.dumps(step(5))[12:] + "\n")
    page.wait_for_function(f"() => ({count})() === 5")
    loss = page.evaluate("() => document.getElementById('loss-chart').data[0].y")
    assert loss == pytest.approx([step(i)["loss"] for i in range(1, 6)])
    speed = page.evaluate("() => document.getElementById('speed-chart').data[0]")
    assert speed["x"] == [1, 2, 3, 4, 5] and speed["y"] == pytest.approx([512 / 0.25] * 5)
    marker = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**marker, "status": "complete"}))
    page.wait_for_selector("#run-table [data-status=complete]")
    assert page.locator("#run-table .last-step").inner_text() == "5"


@pytest.mark.slow
def test_a_real_training_run_is_drawn(start_server, tiny_model, tmp_path, ui_page):
    """`tinygpt train` on the tiny model while the page is open: the run appears, and when it completes the curves
    hold every metrics line it wrote."""
    page, root = ui_page, tmp_path / "runs"
    root.mkdir()
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"the quick brown fox {i} jumps over dog {7 * i}"}) + "\n"
                            for i in range(24)))
    srv = start_server(runs_dir=str(root))
    page.goto(f"{srv.url}/ui/runs")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    tinygpt = Path(sys.executable).with_name("tinygpt")
    proc = subprocess.Popen([str(tinygpt), "train", str(data), "--model", str(tiny_model), "--out", str(root / "real"),
                             "--iters", "12", "--val-every", "4", "--batch-size", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page.locator("#run-list input[data-ref=real]").check(timeout=60_000)
        page.wait_for_selector("#run-table [data-status=complete]", timeout=240_000)
    finally:
        err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in (root / "real" / "metrics.jsonl").read_text().splitlines()]
    traces = page.evaluate("() => document.getElementById('loss-chart').data.map(t => [t.x, t.y])")
    assert traces[0] == [[m["step"] for m in lines if "loss" in m], [m["loss"] for m in lines if "loss" in m]]
    val = [m for m in lines if "val_loss" in m]
    assert traces[1] == [[m["step"] for m in val], [m["val_loss"] for m in val]]
    assert len(traces[0][0]) == 12
