"""Two arms' result rows on one suite, paired by task — or an EvalError saying exactly what is missing.

`pair(runs, candidate=, baseline=, suite=)` keeps the rows of each model (by the name it was run under),
checks that each arm is one model identity and one policy, that every task has passes 0..K-1 exactly once with
the same K throughout, and that both arms ran the same tasks. Anything else — a task in one arm and not the
other, a suite with no rows, a duplicated pass — is an error, never a smaller comparison. It computes no
statistics (compare.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from tinygpt.evals.errors import EvalError
from tinygpt.evals.results import ResultRow, Run


@dataclass(frozen=True)
class ArmRows:
    """One arm on one suite: per task (sorted by id) its pass rate over K passes, and who produced them."""

    model: str
    fingerprint: str
    base_fingerprint: str
    adapter_fingerprint: str | None
    policy: str
    passes: int
    rates: dict[str, float]
    categories: dict[str, str]
    runs: tuple[str, ...]


@dataclass(frozen=True)
class PairedSuite:
    """Both arms on the same tasks of one suite."""

    suite: str
    task_ids: tuple[str, ...]
    categories: dict[str, str]
    candidate: ArmRows
    baseline: ArmRows


def _listing(items, limit: int = 5) -> str:
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def arm_rows(runs: list[Run], model: str, suite: str, split: str | None) -> ArmRows:
    """The rows of `model` on `suite` (and `split`), checked to form K complete passes over each task."""
    chosen = [run for run in runs if run.manifest.model == model]
    if not chosen:
        names = sorted({run.manifest.model for run in runs})
        raise EvalError(f"no results for model {model!r}; models with results here: {_listing(names) or 'none'}")
    chosen = [run for run in chosen if run.manifest.suite == suite and (split is None or run.manifest.split == split)]
    if not chosen:
        where = f" split {split}" if split else ""
        raise EvalError(f"suite {suite}{where}: no results for model {model!r}; run `tinygpt eval --suite {suite} "
                        f"--model {model}` first")
    rows: list[ResultRow] = [row for run in chosen for row in run.rows]
    for field, what in (("model_fingerprint", "model identities"), ("policy", "policies")):
        values = sorted({getattr(r, field) for r in rows})
        if len(values) > 1:
            raise EvalError(f"suite {suite}: the results for {model!r} come from {len(values)} {what} "
                            f"({_listing(values)}); keep one model's runs of one kind per results directory, or "
                            "choose runs with --split")
    passes: dict[str, dict[int, ResultRow]] = {}
    for row in rows:
        seen = passes.setdefault(row.task_id, {})
        if row.pass_index in seen:
            raise EvalError(f"suite {suite}: {model!r} has task {row.task_id} pass {row.pass_index} twice (runs "
                            f"{seen[row.pass_index].run_id} and {row.run_id}); remove one run's files")
        seen[row.pass_index] = row
    counts = {task: len(p) for task, p in passes.items()}
    k = max(counts.values())
    short = [t for t, p in passes.items() if sorted(p) != list(range(k))]
    if short:
        raise EvalError(f"suite {suite}: {model!r} has {k} passes of some tasks but not of {len(short)} others "
                        f"({_listing(short)}); run every task the same number of times")
    first = rows[0]
    return ArmRows(model=model, fingerprint=first.model_fingerprint, base_fingerprint=first.base_fingerprint,
                   adapter_fingerprint=first.adapter_fingerprint, policy=first.policy, passes=k,
                   rates={t: sum(r.passed for r in p.values()) / k for t, p in sorted(passes.items())},
                   categories={t: p[0].category for t, p in passes.items()},
                   runs=tuple(sorted({run.manifest.run_id for run in chosen})))


def pair(runs: list[Run], *, candidate: str, baseline: str, suite: str, split: str | None = None) -> PairedSuite:
    """Both arms on `suite`, on exactly the same tasks."""
    cand = arm_rows(runs, candidate, suite, split)
    base = arm_rows(runs, baseline, suite, split)
    only_c, only_b = set(cand.rates) - set(base.rates), set(base.rates) - set(cand.rates)
    if only_c or only_b:
        parts = [f"{len(s)} task(s) only for {name!r} ({_listing(s)})" for s, name in
                 ((only_c, candidate), (only_b, baseline)) if s]
        raise EvalError(f"suite {suite}: the arms ran different tasks: {'; '.join(parts)}. Missing results are "
                        "never counted as a pass: run both models on the same split and tasks (or pick one split "
                        "with --split)")
    modes = [sorted({str(run.manifest.settings.get("mode") or "") for run in runs if run.manifest.run_id in arm.runs})
             for arm in (cand, base)]
    if modes[0] != modes[1] or len(modes[0]) > 1:
        said = "; ".join(f"{name!r}: {', '.join(m) or 'the default'}" for name, m in zip((candidate, baseline), modes))
        raise EvalError(f"suite {suite}: the arms ran in different --mode settings ({said}); compare runs of one mode")
    for task, category in cand.categories.items():
        if base.categories[task] != category:
            raise EvalError(f"suite {suite}: task {task} is category {category!r} for {candidate!r} but "
                            f"{base.categories[task]!r} for {baseline!r}; the runs used different suite versions")
    return PairedSuite(suite=suite, task_ids=tuple(cand.rates), categories=dict(cand.categories),
                       candidate=cand, baseline=base)
