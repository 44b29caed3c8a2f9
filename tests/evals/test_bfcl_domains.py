"""The out-of-domain guard suite: BFCL's multi-turn tasks with no file system, replayed through the same harness."""
import pytest

pytest.importorskip("bfcl_eval", reason="BFCL's data, backends and checker come from the bfcl-eval wheel")

from tinygpt.evals import bfcl, bfcl_domains  # noqa: E402
from tinygpt.evals.results import read_results  # noqa: E402
from tinygpt.evals.runner import RunSettings, run_suite  # noqa: E402
from tinygpt.evals.suite import load_suite, select_tasks  # noqa: E402

OTHER_SEVEN = {"MathAPI", "MessageAPI", "TwitterAPI", "TicketAPI", "TradingBot", "TravelAPI", "VehicleControlAPI"}


def test_it_is_bfcls_tasks_without_a_file_system_150_per_category():
    tasks = bfcl_domains.tasks("test")
    assert load_suite("bfcl-other-domains") is bfcl_domains
    assert {c: sum(t.category == c for t in tasks) for c in bfcl.CATEGORIES} == dict.fromkeys(bfcl.CATEGORIES, 150)
    assert {c for t in tasks for c in t.data.entry["involved_classes"]} == OTHER_SEVEN
    full = {t.id: t for t in bfcl.tasks("test")}
    assert all(t.suite == "bfcl-other-domains" and t.turns == full[t.id].turns and t.gold == full[t.id].gold
               for t in tasks)
    left_out = [t for t in full.values() if "GorillaFileSystem" in t.data.entry["involved_classes"]]
    assert len(left_out) == 200 and not {t.id for t in left_out} & {t.id for t in tasks}
    assert bfcl_domains.tasks("validation") == []


@pytest.mark.parametrize("policy", ["gold", "drop-last"])
def test_gold_replays_pass_and_the_broken_solution_fails(tiny_engine, tmp_path, policy):
    suite = load_suite("bfcl-other-domains")
    tasks = [t for c in bfcl.CATEGORIES for t in select_tasks(suite, "test", categories=[c], limit=2)]
    manifest, rows = run_suite(tiny_engine, suite, tasks, RunSettings(policy=policy), tmp_path, model="tiny",
                               split="test")
    assert [r.task_id for r in rows] == [t.id for t in tasks]
    assert [r.passed for r in rows] == [policy == "gold"] * len(tasks), [r.reason for r in rows]
    (run,) = read_results(tmp_path)
    assert run.manifest.suite == "bfcl-other-domains" and {r.suite for r in run.rows} == {"bfcl-other-domains"}
