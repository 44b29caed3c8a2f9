"""One suite's paired comparison: each arm's pass rate with its Wilson interval, the paired difference with its
interval and p-values, per suite and per category.

With one pass per task on both arms the difference is tested with the exact McNemar test and its interval is
Tango's score interval; with K > 1 passes, both come from a seeded paired bootstrap over tasks (each task's
pass rate over its K passes is one value). An arm's interval treats the task as the unit: Wilson with n = tasks
and the mean per-task pass rate. `decision_p` tests the null the gate needs — "no improvement" (difference
<= 0) for the target, "worse by more than the margin" (difference <= -margin) for a guard — one-sided, doubled
to the two-sided scale Holm is applied on. It does not decide verdicts (gate.py).
"""
from __future__ import annotations

import hashlib
import math

import msgspec

from tinygpt.evals import stats
from tinygpt.evals.gate_config import GateConfig
from tinygpt.evals.paired import PairedSuite

EXACT, BOOTSTRAP = "exact-mcnemar+tango", "paired-bootstrap"


class Rate(msgspec.Struct, frozen=True, kw_only=True):
    """An arm's mean pass rate over tasks, with its interval, and the passes per task it rests on."""

    rate: float
    lo: float
    hi: float
    passes: int


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """Candidate minus baseline: estimate, interval, two-sided p for "no difference", and the tasks each arm
    did better on (for K = 1: McNemar's discordant pairs)."""

    estimate: float
    lo: float
    hi: float
    p_value: float
    method: str
    wins: int
    losses: int


class Category(msgspec.Struct, frozen=True, kw_only=True):
    category: str
    tasks: int
    baseline: Rate
    candidate: Rate
    diff: Difference


class SuiteStats(msgspec.Struct, frozen=True, kw_only=True):
    """A suite's comparison before Holm: `decision_p` tests difference <= `null` (see the module docstring)."""

    suite: str
    tasks: int
    baseline: Rate
    candidate: Rate
    diff: Difference
    null: float
    decision_p: float
    sd: float  # standard deviation of the per-task differences (the power calculation uses it)
    categories: list[Category]


def _seed(base: int, *parts: str) -> int:
    return int.from_bytes(hashlib.sha256(":".join([str(base), *parts]).encode()).digest()[:8], "big")


def _rate(rates: list[float], passes: int, confidence: float) -> Rate:
    n = len(rates)
    mean = sum(rates) / n
    lo, hi = stats.wilson(mean * n, n, confidence)
    return Rate(rate=mean, lo=lo, hi=hi, passes=passes)


def _difference(cand: list[float], base: list[float], single: bool, cfg: GateConfig, seed: int,
                null: float) -> tuple[Difference, float]:
    """The difference and the one-sided p for difference <= null (doubled, capped at 1)."""
    n = len(cand)
    diffs = [c - b for c, b in zip(cand, base)]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    estimate = sum(diffs) / n
    if single:
        lo, hi = stats.tango_interval(wins, losses, n, cfg.confidence)
        one_sided = stats.mcnemar_exact_greater(wins, losses) if null == 0 else stats.tango_p(wins, losses, n, null)
        diff = Difference(estimate=estimate, lo=lo, hi=hi, p_value=stats.mcnemar_exact(wins, losses), method=EXACT,
                          wins=wins, losses=losses)
        return diff, min(1.0, 2 * one_sided)
    summary = stats.bootstrap_summary(stats.bootstrap_means(diffs, cfg.bootstrap_resamples, seed), cfg.confidence,
                                      null)
    diff = Difference(estimate=estimate, lo=summary.lo, hi=summary.hi, p_value=summary.p_two_sided,
                      method=BOOTSTRAP, wins=wins, losses=losses)
    return diff, min(1.0, 2 * summary.p_above)


def compare(paired: PairedSuite, cfg: GateConfig, null: float) -> SuiteStats:
    """The suite's comparison, testing difference <= `null` for the decision."""
    ids = paired.task_ids
    kc, kb = paired.candidate.passes, paired.baseline.passes
    single = kc == 1 and kb == 1
    cand = [paired.candidate.rates[t] for t in ids]
    base = [paired.baseline.rates[t] for t in ids]
    diff, decision_p = _difference(cand, base, single, cfg, _seed(cfg.seed, paired.suite), null)
    diffs = [c - b for c, b in zip(cand, base)]
    sd = math.sqrt(sum((d - diff.estimate) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else 0.0
    categories = []
    for name in sorted(set(paired.categories.values())):
        idx = [i for i, t in enumerate(ids) if paired.categories[t] == name]
        c, b = [cand[i] for i in idx], [base[i] for i in idx]
        cat_diff, _ = _difference(c, b, single, cfg, _seed(cfg.seed, paired.suite, name), 0.0)
        categories.append(Category(category=name, tasks=len(idx), baseline=_rate(b, kb, cfg.confidence),
                                   candidate=_rate(c, kc, cfg.confidence), diff=cat_diff))
    return SuiteStats(suite=paired.suite, tasks=len(ids), baseline=_rate(base, kb, cfg.confidence),
                      candidate=_rate(cand, kc, cfg.confidence), diff=diff, null=null, decision_p=decision_p, sd=sd,
                      categories=categories)


def tasks_to_resolve(s: SuiteStats, alpha: float, power: float, min_tasks: int) -> int | None:
    """How many more tasks would decide the suite's test at its observed effect (normal approximation, level
    `alpha` two-sided, `power`); at least up to `min_tasks`. None when the observed effect points the other way
    (more tasks of the same kind cannot be expected to help)."""
    n = s.tasks
    effect = s.diff.estimate - s.null
    if effect <= 0:
        return None
    if s.diff.method == EXACT:
        needed = stats.paired_tasks_needed(s.diff.wins / n, s.diff.losses / n, s.null, alpha, power)
    else:
        needed = stats.tasks_needed(effect, s.sd, alpha, power)
    return max(0, max(needed or 0, min_tasks) - n)
