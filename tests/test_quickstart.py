"""`tinygpt quickstart --short` end to end on the embedded default model, in a subprocess with its own model
store (TINYGPT_CACHE): the summary's numbers agree with the routes and the eval stage's per-task results, the
chart is a real PNG, and the same command again reuses every stage and gives the same numbers."""
import json
import os
import struct
import subprocess
import sys

import pytest

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]
ARMS = ("base", "specialist", "router")
COLUMNS = ("in-domain", "out-of-domain", "mixed")
STAGES = ("rollouts", "data", "train", "eval", "gate", "register")
DOMAINS = ("fileops", "calendar", "shop")


def quickstart(out, cache, cwd):
    r = subprocess.run(TINYGPT + ["quickstart", "--short", "--out", str(out), "--json"], capture_output=True,
                       text=True, timeout=600, cwd=cwd,
                       env={**os.environ, "TINYGPT_CACHE": str(cache), "TINYGPT_CONFIG": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout), r.stderr


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    out, cache = root / "run", root / "cache"
    summary, err = quickstart(out, cache, root)
    return out, cache, root, summary, err


def test_summary_has_every_arm_and_column_with_intervals(first):
    out, _, _, s, _ = first
    assert s["verdict"] in ("ship", "routed-ship", "reject", "inconclusive") and s["domain"] == "calendar"
    assert s["out"] == str(out) and s["base"] == "default" and s["specialist"] == "calendar-specialist"
    assert set(s["results"]) == set(ARMS)
    for arm in ARMS:
        assert set(s["results"][arm]) == set(COLUMNS)
        for column, tasks in zip(COLUMNS, (12, 12, 24)):  # --short: 12 calendar tasks, 6 of each other domain
            c = s["results"][arm][column]
            assert c["tasks"] == tasks and 0 <= c["passed"] <= tasks and c["rate"] == c["passed"] / tasks
            lo, hi = c["ci95"]
            assert 0 <= lo <= c["rate"] <= hi <= 1 and lo < hi
        r = s["results"][arm]
        assert r["mixed"]["passed"] == r["in-domain"]["passed"] + r["out-of-domain"]["passed"]
    assert len(s["table"]) == 4 and all(col in s["table"][0] for col in COLUMNS)
    for arm, line in zip(ARMS, s["table"][1:]):
        m = s["results"][arm]["mixed"]
        assert line.startswith(f"{arm} (") and f"({m['passed']}/{m['tasks']})" in line
    status = json.loads((out / "quickstart.json").read_text())
    assert status["created_by"] == "tinygpt quickstart" and status["status"] == "complete"
    assert status["results"] == s["results"] and status["verdict"] == s["verdict"]


def test_chart_is_a_real_png(first):
    out, _, _, s, _ = first
    assert s["chart"] == str(out / "summary.png")
    data = (out / "summary.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 200 and len(data) > 2000
    assert data[-8:-4] == b"IEND"


def test_routes_cover_every_held_out_task_and_give_the_routers_score(first):
    out, _, _, s, _ = first
    routes = json.loads((out / "routes.json").read_text())
    runs = json.loads((out / "loop" / "eval" / "v1" / "stage.json").read_text())["outputs"]["runs"]
    assert set(routes) == set(runs) == set(DOMAINS)
    for suite in DOMAINS:  # the same held-out tasks routed as evaluated, by both arms
        assert set(routes[suite]) == set(runs[suite]["base"]["passed"]) == set(runs[suite]["specialist"]["passed"])
    specialist = s["registered"] or s["specialist"]
    passed = {suite: [runs[suite]["specialist" if r["route"] == specialist else "base"]["passed"][tid]
                      for tid, r in tasks.items()] for suite, tasks in routes.items()}
    router = s["results"]["router"]
    assert router["mixed"]["passed"] == sum(sum(v) for v in passed.values())
    assert router["in-domain"]["passed"] == sum(passed["calendar"])
    for arm in ("base", "specialist"):
        assert s["results"][arm]["mixed"]["passed"] == sum(sum(runs[d][arm]["passed"].values()) for d in DOMAINS)
    if not s["registered"]:  # nothing shipped: every request goes to the base
        assert all(r["route"] == "default" for tasks in routes.values() for r in tasks.values())
        assert router == s["results"]["base"]


def test_the_same_command_again_reuses_every_stage(first):
    out, cache, root, s, _ = first
    again, err = quickstart(out, cache, root)
    for stage in STAGES:
        assert f"[{stage}] v1: reusing" in err, err
    assert f"[router] reusing {out / 'router'}" in err and ": start" not in err
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in s.items() if k != "seconds"}
    assert json.loads((out / "quickstart.json").read_text())["status"] == "complete"
