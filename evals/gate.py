"""The eval gate: a candidate against a baseline on a target suite and guard suites, and its verdict.

Each suite is paired by task (paired.py) and compared (compare.py). The decision tests — target: "difference
<= 0", each guard: "difference <= -margin" — are Holm-adjusted together at the config's family-wise level.
Verdicts, in this order:
  reject        the target shows no improvement (observed difference <= 0), or its upper bound is below -margin;
  inconclusive  the target improves in the data but not significantly (or has fewer than min_tasks tasks):
                the result says how many more tasks would resolve it at the observed effect;
  ship          the target improves significantly and every guard holds (its decision test rejects
                "worse by more than its margin", i.e. its lower bound is above -margin);
  routed-ship   the target improves but some guard could be worse by more than its margin: usable only behind
                the router, for the target's kind of request.
Exit codes: ship / routed-ship 0, reject 1, inconclusive 3 (2, usage, is the CLI's). It reads no files.
"""
from __future__ import annotations

import time

import msgspec

from tinygpt.evals.compare import Category, Difference, Rate, SuiteStats, compare, tasks_to_resolve
from tinygpt.evals.errors import EvalError
from tinygpt.evals.gate_config import ConfigSource, GateConfig
from tinygpt.evals.paired import ArmRows, pair
from tinygpt.evals.results import Run
from tinygpt.evals.stats import holm

RESULT_KIND = "tinygpt.gate-result"
EXIT_CODES = {"ship": 0, "routed-ship": 0, "reject": 1, "inconclusive": 3}


class Arm(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    model_fingerprint: str
    base_fingerprint: str
    adapter_fingerprint: str | None
    policy: str
    runs: list[str]


class SuiteResult(msgspec.Struct, frozen=True, kw_only=True):
    """One suite in the gate: its role, margin, comparison, Holm-adjusted decision p and what it showed."""

    suite: str
    role: str  # target | guard
    margin: float
    tasks: int
    baseline: Rate
    candidate: Rate
    diff: Difference
    null: float
    decision_p: float
    holm_p: float
    status: str  # target: improves | undecided | no-improvement | worse | too-few-tasks; guard: holds | may-regress
    more_tasks: int | None
    categories: list[Category]


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    """What gate-result.json holds."""

    kind: str = RESULT_KIND
    version: int = 1
    verdict: str
    exit_code: int
    reasons: list[str]
    more_tasks: int | None  # more target tasks that would resolve an inconclusive verdict
    notes: list[str]
    candidate: Arm
    baseline: Arm
    target: str
    split: str | None
    suites: list[SuiteResult]
    confidence: float
    config: GateConfig
    config_path: str | None
    config_sha256: str
    config_fixed_before_runs: bool | None
    created_at: float
    recorded: str = ""  # what happened to the verdict in the model store (the CLI fills it)


def _arm(rows: ArmRows, runs: set[str]) -> Arm:
    return Arm(model=rows.model, model_fingerprint=rows.fingerprint, base_fingerprint=rows.base_fingerprint,
               adapter_fingerprint=rows.adapter_fingerprint, policy=rows.policy, runs=sorted(runs))


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}" if x else "0.0"


def _status(role: str, s: SuiteStats, holm_p: float, cfg: GateConfig, margin: float) -> str:
    significant = holm_p <= cfg.alpha and s.tasks >= cfg.min_tasks
    if role == "guard":
        return "holds" if significant else "may-regress"
    if s.diff.hi < -margin:
        return "worse"
    if s.diff.estimate <= 0:
        return "no-improvement"
    if s.tasks < cfg.min_tasks:
        return "too-few-tasks"
    return "improves" if significant else "undecided"


def _verdict(target: SuiteResult, guards: list[SuiteResult], cfg: GateConfig) -> tuple[str, list[str]]:
    t = target
    line = (f"target {t.suite}: {_pct(t.diff.estimate)} points, {cfg.confidence:.0%} interval "
            f"[{_pct(t.diff.lo)}, {_pct(t.diff.hi)}], Holm p = {t.holm_p:.3g}, {t.tasks} tasks")
    if t.status == "no-improvement":
        return "reject", [f"{line}: no improvement on the target"]
    if t.status == "worse":
        return "reject", [f"{line}: worse than the baseline by more than the margin ({cfg.margin_for(t.suite):.1%})"]
    if t.status == "too-few-tasks":
        return "inconclusive", [f"{line}: fewer than min_tasks = {cfg.min_tasks} tasks; add {t.more_tasks} tasks"]
    if t.status == "undecided" and t.more_tasks:
        return "inconclusive", [f"{line}: the improvement is not significant; about {t.more_tasks} more tasks "
                                f"would resolve it at the observed effect (power {cfg.power:.0%})"]
    if t.status == "undecided":  # the normal approximation says this many tasks should do: a borderline result
        return "inconclusive", [f"{line}: the improvement is not significant, though this many tasks would usually "
                                f"show the observed effect (power {cfg.power:.0%}): a borderline result; add tasks"]
    reasons = [f"{line}: improves"]
    weak = [g for g in guards if g.status != "holds"]
    for g in guards:
        reasons.append(f"guard {g.suite}: {_pct(g.diff.estimate)} points, lower bound {_pct(g.diff.lo)} vs margin "
                       f"-{g.margin * 100:.1f}, Holm p = {g.holm_p:.3g}: " +
                       ("holds" if g.status == "holds" else
                        "could be worse by more than the margin" + (f" (about {g.more_tasks} more tasks could show "
                                                                    "it holds)" if g.more_tasks else "")))
    return ("routed-ship" if weak else "ship"), reasons


def evaluate(runs: list[Run], *, candidate: str, baseline: str, suites: list[str], target: str | None = None,
             cfg: GateConfig = GateConfig(), source: ConfigSource | None = None,
             split: str | None = None) -> GateResult:
    """Judge `candidate` against `baseline` on `suites` (the first is the target unless `target` names one)."""
    if not suites:
        raise EvalError("name at least one suite (--suites)")
    if len(set(suites)) != len(suites):
        raise EvalError(f"a suite is named twice in --suites {','.join(suites)}")
    target = target or suites[0]
    if target not in suites:
        raise EvalError(f"the target suite {target!r} is not one of --suites ({', '.join(suites)})")
    if candidate == baseline:
        raise EvalError(f"--candidate and --baseline are both {candidate!r}; compare two models")
    paired = [pair(runs, candidate=candidate, baseline=baseline, suite=s, split=split) for s in suites]
    roles = ["target" if s == target else "guard" for s in suites]
    compared = [compare(p, cfg, 0.0 if role == "target" else -cfg.margin_for(p.suite))
                for p, role in zip(paired, roles)]
    adjusted = holm([c.decision_p for c in compared])
    alpha_each = cfg.alpha / len(suites)  # Holm's strictest level: what a power calculation must plan for
    results = []
    for s, role, hp in zip(compared, roles, adjusted):
        margin = cfg.margin_for(s.suite)
        status = _status(role, s, hp, cfg, margin)
        more = (tasks_to_resolve(s, alpha_each, cfg.power, cfg.min_tasks)
                if status in ("undecided", "too-few-tasks", "may-regress") else None)
        results.append(SuiteResult(suite=s.suite, role=role, margin=margin, tasks=s.tasks, baseline=s.baseline,
                                   candidate=s.candidate, diff=s.diff, null=s.null, decision_p=s.decision_p, holm_p=hp,
                                   status=status, more_tasks=more, categories=s.categories))
    tgt = next(r for r in results if r.role == "target")
    verdict, reasons = _verdict(tgt, [r for r in results if r.role == "guard"], cfg)
    arms = [(p.candidate, p.baseline) for p in paired]
    cand = _arm(arms[0][0], {r for a, _ in arms for r in a.runs})
    base = _arm(arms[0][1], {r for _, b in arms for r in b.runs})
    notes = _notes(arms, cand, base)
    started = min(run.manifest.started_at for run in runs if run.manifest.run_id in set(cand.runs) | set(base.runs))
    source = source or ConfigSource(None, "", None)
    return GateResult(
        verdict=verdict, exit_code=EXIT_CODES[verdict], reasons=reasons,
        more_tasks=tgt.more_tasks if verdict == "inconclusive" else None, notes=notes, candidate=cand, baseline=base,
        target=target, split=split, suites=results, confidence=cfg.confidence, config=cfg, config_path=source.path,
        config_sha256=source.sha256, config_fixed_before_runs=None if source.mtime is None else source.mtime < started,
        created_at=time.time())


def _notes(arms: list[tuple[ArmRows, ArmRows]], cand: Arm, base: Arm) -> list[str]:
    notes = []
    for side, name in ((0, "candidate"), (1, "baseline")):
        for field, what in (("fingerprint", "model identities"), ("policy", "policies")):
            values = {getattr(a[side], field) for a in arms}
            if len(values) > 1:
                raise EvalError(f"the {name}'s results on different suites come from different {what} "
                                f"({', '.join(sorted(values))}); evaluate one model the same way on every suite")
    for arm, name in ((cand, "candidate"), (base, "baseline")):
        if arm.policy != "model":
            notes.append(f"the {name}'s rows are a scripted replay (policy {arm.policy}), not {arm.model}'s own "
                         "answers: this checks the harness, not the model")
    if cand.model_fingerprint == base.model_fingerprint:
        notes.append(f"candidate and baseline are the same model identity ({cand.model_fingerprint})")
    return notes
