"""Synthetic result runs for gate tests: rows with chosen pass/fail outcomes, written through the real writer."""
import time

from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id


def write_run(directory, *, model: str, outcomes: dict[str, list[bool]], suite: str = "fileops",
              split: str = "validation", fingerprint: str | None = None, policy: str = "model",
              categories: dict[str, str] | None = None, started_at: float | None = None,
              settings: dict | None = None) -> RunManifest:
    """One complete run: task id -> its passes' outcomes (K = the list's length, the same for every task)."""
    passes = {len(v) for v in outcomes.values()}
    assert len(passes) == 1, "every task needs the same number of passes"
    fingerprint = fingerprint or f"base-{model}"
    manifest = RunManifest(run_id=new_run_id(suite, split, model), status="running", suite=suite, split=split,
                           model=model, model_fingerprint=fingerprint, policy=policy, passes=passes.pop(),
                           tasks=len(outcomes), started_at=started_at or time.time(), settings=settings or {})
    with ResultWriter(directory, manifest) as writer:
        for task, results in outcomes.items():
            for k, passed in enumerate(results):
                writer.add(ResultRow(
                    run_id=manifest.run_id, suite=suite, split=split,
                    category=(categories or {}).get(task, "general"), task_id=task, pass_index=k, model=model,
                    model_fingerprint=fingerprint, base_fingerprint=fingerprint.split("+")[0],
                    adapter_fingerprint=fingerprint.split("+")[1] if "+" in fingerprint else None, policy=policy,
                    passed=passed, score=float(passed), steps=1, prompt_tokens=10, output_tokens=5, latency_s=0.1,
                    seed=k, finished_at=time.time(), end="answer", reason="ok" if passed else "synthetic failure"))
        writer.complete()
    return writer.manifest


def outcomes(n: int, wins: int = 0, losses: int = 0, both: int = 0, prefix: str = "t") -> tuple[dict, dict]:
    """One-pass outcomes for (candidate, baseline) on n tasks: `wins` tasks only the candidate passes, `losses`
    only the baseline passes, `both` both pass, the rest neither."""
    assert wins + losses + both <= n
    cand, base = {}, {}
    for i in range(n):
        task = f"{prefix}{i:04d}"
        cand[task] = [i < wins or wins + losses <= i < wins + losses + both]
        base[task] = [wins <= i < wins + losses + both]
    return cand, base
