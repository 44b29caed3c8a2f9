"""The gate on synthetic result rows: each verdict, its exit code and reasons, Holm across suites, the bootstrap
path for K passes, and every kind of missing or mixed results as an error (never a pass)."""
import time

import msgspec
import pytest

from evals_synthetic import outcomes, write_run
from tinygpt.evals import stats
from tinygpt.evals.errors import EvalError
from tinygpt.evals.gate import EXIT_CODES, evaluate
from tinygpt.evals.gate_config import GateConfig, load_gate_config
from tinygpt.evals.results import read_results


def gate_on(tmp_path, target, guards=(), **kw):
    """Write candidate 'spec' and baseline 'base' runs: target=(n, wins, losses, both), guards={name: (...)}."""
    for suite, spec in [("fileops", target), *guards]:
        cand, base = outcomes(*spec, prefix=suite)
        write_run(tmp_path, model="spec", outcomes=cand, suite=suite, fingerprint="B+A")
        write_run(tmp_path, model="base", outcomes=base, suite=suite, fingerprint="B")
    return evaluate(read_results(tmp_path), candidate="spec", baseline="base",
                    suites=["fileops", *[g for g, _ in guards]], **kw)


def test_ship(tmp_path):
    r = gate_on(tmp_path, (40, 12, 0, 10), [("bfcl", (300, 0, 0, 150))])
    assert (r.verdict, r.exit_code) == ("ship", 0)
    target, guard = r.suites
    assert target.status == "improves" and guard.status == "holds"
    assert target.diff.estimate == pytest.approx(0.3) and target.diff.wins == 12 and target.diff.losses == 0
    assert target.diff.p_value == stats.mcnemar_exact(12, 0)
    assert target.baseline.rate == pytest.approx(10 / 40) and target.candidate.rate == pytest.approx(22 / 40)
    assert (target.candidate.lo, target.candidate.hi) == pytest.approx(stats.wilson(22, 40))
    assert guard.decision_p < target.decision_p  # so Holm doubles the guard's p and keeps the target's
    assert (guard.holm_p, target.holm_p) == pytest.approx((2 * guard.decision_p, target.decision_p))
    assert r.candidate.adapter_fingerprint == "A" and r.baseline.adapter_fingerprint is None


def test_routed_ship_when_a_guard_may_lose_more_than_its_margin(tmp_path):
    r = gate_on(tmp_path, (40, 12, 0, 10), [("bfcl", (60, 2, 12, 30))])
    assert (r.verdict, r.exit_code) == ("routed-ship", 0)
    assert r.suites[1].status == "may-regress" and r.suites[1].diff.lo < -0.05
    assert any("bfcl" in reason and "could be worse by more than the margin" in reason for reason in r.reasons)


def test_reject_without_improvement_and_when_clearly_worse(tmp_path):
    r = gate_on(tmp_path / "a", (40, 1, 3, 10))
    assert (r.verdict, r.exit_code, r.suites[0].status) == ("reject", 1, "no-improvement")
    r = gate_on(tmp_path / "b", (60, 0, 20, 20))
    assert (r.verdict, r.suites[0].status) == ("reject", "worse") and r.suites[0].diff.hi < -0.05


def test_inconclusive_says_how_many_more_tasks(tmp_path):
    r = gate_on(tmp_path, (40, 4, 1, 10))
    assert (r.verdict, r.exit_code, r.suites[0].status) == ("inconclusive", 3, "undecided")
    wins, losses = 4 / 40, 1 / 40
    assert r.more_tasks == stats.paired_tasks_needed(wins, losses, 0.0, 0.05, 0.8) - 40 > 0
    assert f"about {r.more_tasks} more tasks" in r.reasons[0]
    # the same rates on that many tasks would now be significant
    n = 40 + r.more_tasks
    assert stats.mcnemar_exact(round(wins * n), round(losses * n)) < 0.05


def test_too_few_tasks_is_inconclusive_even_when_significant(tmp_path):
    r = gate_on(tmp_path, (6, 6, 0, 0))  # exact McNemar p = 0.031, but 6 < min_tasks = 10
    assert r.suites[0].diff.p_value == pytest.approx(0.03125)
    assert (r.verdict, r.suites[0].status, r.more_tasks) == ("inconclusive", "too-few-tasks", 4)
    r = evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["fileops"],
                 cfg=GateConfig(min_tasks=5))
    assert r.verdict == "ship"


def test_holm_can_turn_a_significant_suite_into_an_undecided_one(tmp_path):
    alone = gate_on(tmp_path / "a", (60, 7, 0, 20))  # one-sided exact p = 1/128 -> decision p 0.0156
    assert alone.verdict == "ship" and alone.suites[0].holm_p == pytest.approx(2 / 128)
    weak_guard = ("bfcl", (60, 3, 6, 20))
    r = gate_on(tmp_path / "b", (60, 7, 0, 20), [weak_guard], cfg=GateConfig(confidence=0.99))
    assert r.suites[0].holm_p == pytest.approx(min(1, 2 * r.suites[0].decision_p))
    assert r.suites[0].holm_p > 0.01 and r.verdict == "inconclusive"


def test_k_passes_use_the_seeded_paired_bootstrap(tmp_path):
    cand = {f"t{i:03d}": [i % 3 != 0, True, i % 2 == 0] for i in range(30)}
    base = {f"t{i:03d}": [i % 4 == 0, False, i % 5 == 0] for i in range(30)}
    write_run(tmp_path, model="spec", outcomes=cand, fingerprint="B+A")
    write_run(tmp_path, model="base", outcomes=base, fingerprint="B")
    runs = read_results(tmp_path)
    a = evaluate(runs, candidate="spec", baseline="base", suites=["fileops"], cfg=GateConfig(seed=3))
    b = evaluate(runs, candidate="spec", baseline="base", suites=["fileops"], cfg=GateConfig(seed=3))
    c = evaluate(runs, candidate="spec", baseline="base", suites=["fileops"], cfg=GateConfig(seed=4))
    s = a.suites[0]
    assert s.diff.method == "paired-bootstrap" and (s.candidate.passes, s.baseline.passes) == (3, 3)
    assert (s.diff.lo, s.diff.hi) == (b.suites[0].diff.lo, b.suites[0].diff.hi) != (c.suites[0].diff.lo,
                                                                                     c.suites[0].diff.hi)
    rates_c = [sum(v) / 3 for v in cand.values()]
    rates_b = [sum(v) / 3 for v in base.values()]
    assert s.diff.estimate == pytest.approx(sum(rates_c) / 30 - sum(rates_b) / 30)
    assert s.candidate.rate == pytest.approx(sum(rates_c) / 30) and a.verdict == "ship"


def test_categories_are_compared_too(tmp_path):
    cand, base = outcomes(40, 12, 0, 10)
    cats = {t: "even" if i % 2 == 0 else "odd" for i, t in enumerate(cand)}
    write_run(tmp_path, model="spec", outcomes=cand, categories=cats)
    write_run(tmp_path, model="base", outcomes=base, categories=cats)
    r = evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["fileops"])
    even, odd = r.suites[0].categories
    assert (even.category, even.tasks, odd.tasks) == ("even", 20, 20)
    assert even.diff.wins + odd.diff.wins == 12 and even.diff.p_value == stats.mcnemar_exact(even.diff.wins, 0)


def test_arms_run_in_different_modes_are_not_compared(tmp_path):
    cand, base = outcomes(20, 8, 0, 5)
    write_run(tmp_path, model="spec", outcomes=cand, suite="bfcl-multi-turn", settings={"mode": "prompting"})
    write_run(tmp_path, model="base", outcomes=base, suite="bfcl-multi-turn", settings={"mode": "native"})
    with pytest.raises(EvalError, match="the arms ran in different --mode settings \\('spec': prompting; 'base': "
                                        "native\\)"):
        evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["bfcl-multi-turn"])


@pytest.mark.parametrize("damage, says", [
    ("drop-a-task", "the arms ran different tasks: 1 task(s) only for 'spec'"),
    ("no-guard-rows", "suite bfcl: no results for model 'base'"),
    ("no-candidate", "no results for model 'nobody'"),
    ("two-identities", "come from 2 model identities"),
    ("duplicate-pass", "has task fileops0000 pass 0 twice"),
    ("same-model", "--candidate and --baseline are both"),
])
def test_missing_or_mixed_results_are_errors_never_a_pass(tmp_path, damage, says):
    cand, base = outcomes(20, 8, 0, 5, prefix="fileops")
    if damage == "drop-a-task":
        del base["fileops0003"]
    write_run(tmp_path, model="spec", outcomes=cand, fingerprint="B+A")
    write_run(tmp_path, model="base", outcomes=base, fingerprint="B")
    gcand, _ = outcomes(20, 0, 0, 5, prefix="g")
    write_run(tmp_path, model="spec", outcomes=gcand, suite="bfcl", fingerprint="B+A")
    if damage == "two-identities":
        write_run(tmp_path, model="base", outcomes={"fileops9999": [True]}, fingerprint="other")
    if damage == "duplicate-pass":
        write_run(tmp_path, model="spec", outcomes={"fileops0000": [True]}, fingerprint="B+A")
    suites = ["fileops", "bfcl"] if damage == "no-guard-rows" else ["fileops"]
    candidate = {"no-candidate": "nobody", "same-model": "base"}.get(damage, "spec")
    with pytest.raises(EvalError, match=says.replace("(", r"\(").replace(")", r"\)")):
        evaluate(read_results(tmp_path), candidate=candidate, baseline="base", suites=suites)


def test_uneven_passes_are_an_error(tmp_path):
    write_run(tmp_path, model="spec", outcomes={"a": [True, True], "b": [False, True]})
    write_run(tmp_path, model="spec", outcomes={"c": [True]})
    write_run(tmp_path, model="base", outcomes={"a": [True], "b": [True], "c": [True]})
    with pytest.raises(EvalError, match="has 2 passes of some tasks but not of 1 others \\(c\\)"):
        evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["fileops"])


def test_bad_suite_lists(tmp_path):
    write_run(tmp_path, model="spec", outcomes={"a": [True]})
    runs = read_results(tmp_path)
    with pytest.raises(EvalError, match="named twice"):
        evaluate(runs, candidate="spec", baseline="base", suites=["fileops", "fileops"])
    with pytest.raises(EvalError, match="target suite 'x' is not one of"):
        evaluate(runs, candidate="spec", baseline="base", suites=["fileops"], target="x")


def test_scripted_arms_and_the_config_are_recorded(tmp_path):
    cand, base = outcomes(20, 15, 0, 0)
    write_run(tmp_path, model="spec", outcomes=cand, policy="gold", started_at=time.time() - 60)
    write_run(tmp_path, model="base", outcomes=base, policy="drop-last")
    config = tmp_path / "gate.toml"
    config.write_text("margin = 0.02\n[margins]\nfileops = 0.01\n")
    cfg, source = load_gate_config(config)
    r = evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["fileops"], cfg=cfg,
                 source=source)
    assert r.config_sha256 == __import__("hashlib").sha256(config.read_bytes()).hexdigest()
    assert r.config.margins == {"fileops": 0.01} and r.suites[0].margin == 0.01
    assert r.config_fixed_before_runs is False  # written after the runs started
    assert any("scripted replay (policy gold)" in n for n in r.notes)
    assert any("scripted replay (policy drop-last)" in n for n in r.notes)
    decoded = msgspec.json.decode(msgspec.json.encode(r))
    assert decoded["kind"] == "tinygpt.gate-result" and decoded["verdict"] == "ship"
    assert EXIT_CODES == {"ship": 0, "routed-ship": 0, "reject": 1, "inconclusive": 3}


@pytest.mark.parametrize("text, says", [
    ("foo = 1\n", "unknown field `foo`"),
    ("margin = 2\n", "<= 1.0 - at `$.margin`"),
    ("confidence = 'high'\n", "Expected `float`, got `str`"),
    ("margin = [\n", "gate config"),
    ("[margins]\nfileopz = 0.01\n", "[margins] names 'fileopz', which is no suite; suites: fileops,"),
])
def test_bad_gate_configs(tmp_path, text, says):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(EvalError, match=str(path).replace(".", r"\.")) as err:
        load_gate_config(path)
    assert says in str(err.value)
    with pytest.raises(EvalError, match="does not exist"):
        load_gate_config(tmp_path / "nope.toml")
