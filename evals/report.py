"""Tables for people: an eval run's pass rates by category, and a gate result by suite and category, with their
intervals (rich). Machine-readable output is the JSON of the same values (the CLI's --json); this module only
formats and never computes a statistic beyond a run's Wilson intervals.
"""
from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from tinygpt.evals.gate import GateResult
from tinygpt.evals.results import ResultRow
from tinygpt.evals.stats import wilson

_STYLE = {"ship": "bold green", "routed-ship": "bold yellow", "reject": "bold red", "inconclusive": "bold magenta"}


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def interval(rate: float, lo: float, hi: float) -> str:
    return f"{rate * 100:.1f}% [{lo * 100:.1f}, {hi * 100:.1f}]"


def signed(estimate: float, lo: float, hi: float) -> str:
    return f"{estimate * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def pass_rate(rows: list[ResultRow]) -> tuple[float, float, float]:
    """The mean per-task pass rate of `rows` and its Wilson 95% interval (the task is the unit, not the pass)."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_task[row.task_id].append(row.passed)
    rates = [sum(v) / len(v) for v in by_task.values()]
    return (sum(rates) / len(rates), *wilson(sum(rates), len(rates)))


def run_table(rows: list[ResultRow], title: str) -> Table:
    """Pass rate per category and overall (Wilson 95%, the task as the unit), with mean steps and tokens."""
    by_category: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        by_category[row.category].append(row)
    table = Table(title=title)
    for name in ("category", "tasks", "passed", "pass rate [95%]", "steps", "tokens in/out"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for name, group in sorted(by_category.items()) + [("all", rows)]:
        n = len(group)
        table.add_row(name, str(len({r.task_id for r in group})), f"{sum(r.passed for r in group)}/{n}",
                      interval(*pass_rate(group)), f"{sum(r.steps for r in group) / n:.1f}",
                      f"{sum(r.prompt_tokens for r in group) // n}/{sum(r.output_tokens for r in group) // n}",
                      style="bold" if name == "all" else None)
    return table


def print_gate(result: GateResult, console: Console) -> None:
    """The gate's suites table, a categories table per suite, then the verdict with its reasons and notes."""
    conf = f"{result.confidence:.0%}"
    table = Table(title=f"{result.candidate.model} (candidate) vs {result.baseline.model} (baseline)")
    for name in ("suite", "role", "tasks", "K", f"baseline [{conf}]", f"candidate [{conf}]",
                 f"difference, points [{conf}]", "p", "Holm p", "status"):
        table.add_column(name, justify="left" if name in ("suite", "role", "status") else "right")
    for s in result.suites:
        table.add_row(s.suite, s.role + ("" if s.role == "target" else f" (margin {s.margin * 100:.1f})"),
                      str(s.tasks), f"{s.candidate.passes}/{s.baseline.passes}",
                      interval(s.baseline.rate, s.baseline.lo, s.baseline.hi),
                      interval(s.candidate.rate, s.candidate.lo, s.candidate.hi),
                      signed(s.diff.estimate, s.diff.lo, s.diff.hi), f"{s.diff.p_value:.3g}", f"{s.holm_p:.3g}",
                      s.status)
    console.print(table)
    for s in result.suites:
        cats = Table(title=f"{s.suite} by category ({s.diff.method})")
        for name in ("category", "tasks", "baseline", "candidate", "difference, points", "p"):
            cats.add_column(name, justify="left" if name == "category" else "right")
        for c in s.categories:
            cats.add_row(c.category, str(c.tasks), interval(c.baseline.rate, c.baseline.lo, c.baseline.hi),
                         interval(c.candidate.rate, c.candidate.lo, c.candidate.hi),
                         signed(c.diff.estimate, c.diff.lo, c.diff.hi), f"{c.diff.p_value:.3g}")
        console.print(cats)
    console.print(f"verdict: {result.verdict}", style=_STYLE[result.verdict])
    for reason in result.reasons:
        console.print(f"  {reason}")
    for note in result.notes:
        console.print(f"  note: {note}", style="yellow")
