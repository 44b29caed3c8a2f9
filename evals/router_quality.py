"""Where eval-router's per-tier quality comes from, in order, and the costs per tier; the output names the source.

1. `results`: eval result rows (`tinygpt eval`), a model named per tier — `generalist=M`, `cloud=M`, and each
   specialist by its domain, `fileops=M` — and the request's `task_id` (the project's labelled set has it): the
   quality is the model's mean pass rate on that task. A request routed to the specialist of its top domain takes
   that specialist's rows, in or out of its domain. A missing row is an error: never a guessed pass.
2. `labelled`: the labelled set's own per-row outcomes, `"quality": {"specialist", "off_domain", "generalist",
   "cloud"}` (each in [0, 1]; `specialist` is its own domain's specialist, `off_domain` another domain's).
3. `assumed`: the same four numbers for every row, from `--quality` (an explicit, named assumption).
Costs are per request in relative units (`--costs`), or in USD for the cloud from the price table. No I/O beyond
reading the result rows; the CLI reads the flags.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from tinygpt.evals.errors import EvalError

QUALITY_KEYS = ("specialist", "off_domain", "generalist", "cloud")
COST_KEYS = ("specialist", "generalist", "cloud")


def parse_pairs(text: str, flag: str, keys: tuple[str, ...] | None = None, number: bool = True) -> dict:
    """`a=1,b=2` as a dict; with `keys`, exactly those keys; numbers must be >= 0 (EvalError, one line)."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise EvalError(f"{flag}: expected NAME=VALUE pairs separated by commas, got {part!r}")
        if number:
            try:
                value = float(value)
            except ValueError:
                raise EvalError(f"{flag}: {key} must be a number, got {value!r}") from None
            if not np.isfinite(value) or value < 0:
                raise EvalError(f"{flag}: {key} must be a finite number >= 0, got {value}")
        out[key] = value
    if keys is not None and set(out) != set(keys):
        raise EvalError(f"{flag}: give exactly {', '.join(keys)} (got {', '.join(out) or 'nothing'})")
    return out


def assumed(q: dict[str, float], predicted: list[str], labels: list[str]) -> np.ndarray:
    """(n, 3) quality from one assumption set: specialist (in or off its domain), generalist, cloud."""
    if any(v > 1 for v in q.values()):
        raise EvalError("--quality: each value is a pass rate between 0 and 1")
    return np.array([[q["specialist"] if p == y else q["off_domain"], q["generalist"], q["cloud"]]
                     for p, y in zip(predicted, labels)], dtype=np.float64)


def labelled(rows: list[dict], predicted: list[str], where: str) -> np.ndarray | None:
    """(n, 3) quality from each row's "quality" object; None when no row has one, EvalError when only some do."""
    found = [r.get("quality") for r in rows]
    if all(q is None for q in found):
        return None
    out = []
    for i, (q, p, row) in enumerate(zip(found, predicted, rows)):
        ok = isinstance(q, dict) and set(q) == set(QUALITY_KEYS) and all(
            isinstance(q[k], (int, float)) and not isinstance(q[k], bool) and 0 <= q[k] <= 1 for k in QUALITY_KEYS)
        if not ok:
            raise EvalError(f"{where}: row {i + 1}: 'quality' must be an object of {', '.join(QUALITY_KEYS)}, each "
                            f"in [0, 1] (every row or none), got {q!r}")
        out.append([q["specialist"] if p == row["domain"] else q["off_domain"], q["generalist"], q["cloud"]])
    return np.array(out, dtype=np.float64)


def from_results(runs, models: dict[str, str], rows: list[dict], predicted: list[str]) -> np.ndarray:
    """(n, 3) quality from result rows: the pass rate of each tier's model on each request's task."""
    if "generalist" not in models or "cloud" not in models:
        raise EvalError("--models must name the generalist and the cloud model (generalist=M,cloud=M) and the "
                        "specialist of each domain that has one (fileops=M,...)")
    passes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for run in runs:
        for r in run.rows:
            passes[(r.model, r.task_id)].append(r.passed)
    missing, out = [], []
    for i, (row, p) in enumerate(zip(rows, predicted)):
        task = row.get("task_id")
        if not isinstance(task, str):
            raise EvalError(f"row {i + 1} of the labelled set has no task_id; --results needs one per request")
        line = []
        for model in (models.get(p), models["generalist"], models["cloud"]):
            got = passes.get((model, task)) if model else None
            if model and not got:
                missing.append(f"{model} on {task}")
            line.append(sum(got) / len(got) if got else np.nan)
        out.append(line)
    if missing:
        raise EvalError(f"{len(missing)} (model, task) pairs have no result rows, e.g. {missing[0]}; run `tinygpt "
                        "eval` for them or use another quality source")
    q = np.array(out, dtype=np.float64)
    q[np.isnan(q[:, 0]), 0] = q[np.isnan(q[:, 0]), 1]  # no specialist for that domain: never routed there
    return q


def cloud_cost_usd(model: str, tokens: tuple[int, int]) -> float:
    """One cloud request's cost in USD from the shipped price table, `tokens` = (input, output)."""
    from tinygpt.router.prices import cost_usd, price_for, shipped_prices

    price = price_for(shipped_prices(), model)
    if price is None:
        raise EvalError(f"--cloud-model {model} has no price in router/prices.toml; give --costs instead")
    return float(cost_usd(price, *tokens))
