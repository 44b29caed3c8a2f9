"""The statistics of the eval gate, each written from its definition (standard library, plus numpy for resampling).

- `wilson`: the Wilson score interval for a proportion (Wilson 1927).
- `mcnemar_exact`: the exact McNemar test — the discordant pairs are Binomial(b + c, 1/2) under "no difference".
- `tango_interval` / `tango_p`: Tango's (1998) score interval and score test for a paired difference of
  proportions at any null value, including a non-inferiority margin (the exact test only tests "no difference").
- `holm`: Holm's (1979) step-down adjusted p-values.
- `bootstrap_means`: the paired bootstrap over tasks (Efron), seeded; `bootstrap_summary` reads an interval
  and p-values off it (percentile method; p-values with the +1 correction of Davison & Hinkley).
- `tasks_needed` / `paired_tasks_needed`: normal-approximation sample sizes (the paired-difference formula; for
  pass/fail pairs the score-test form, which at a null of 0 is Connor's 1987 McNemar formula).
It knows nothing of result rows or verdicts (gate.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


def z_of(confidence: float) -> float:
    """The two-sided normal critical value: z_of(0.95) = 1.95996..."""
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for successes/n; `successes` may be fractional (a mean of per-task rates times n).
    n = 0 gives (0, 1): nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    z = z_of(confidence)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    lo = 0.0 if successes <= 0 else max(0.0, center - half)  # exactly 0 and 1 at the ends (no rounding residue)
    hi = 1.0 if successes >= n else min(1.0, center + half)
    return lo, hi


def binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b pairs won by one arm and c by the other: twice the smaller
    binomial tail, at most 1 (no discordant pairs: 1)."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * binom_half_cdf(min(b, c), n))


def mcnemar_exact_greater(b: int, c: int) -> float:
    """One-sided exact p-value for "the arm winning b pairs is not better": P(X >= b), X ~ Bin(b + c, 1/2)."""
    return binom_half_cdf(c, b + c)  # P(X >= b) = P(b + c - X <= c), and b + c - X has the same law


def _tango_q(b: float, c: float, n: float, delta: float) -> float:
    """Tango's restricted MLE of p(loss) when p(win) - p(loss) = delta (closed form; b, c, n may be rates)."""
    a_ = 2 * n
    b_ = -b - c + (2 * n - b + c) * delta
    c_ = -c * delta * (1 - delta)
    return (math.sqrt(max(0.0, b_ * b_ - 4 * a_ * c_)) - b_) / (2 * a_)


def _tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for H: p(win) - p(loss) = delta. b: pairs the candidate wins, c: pairs it loses,
    n: all pairs."""
    var = n * (2 * _tango_q(b, c, n, delta) + delta * (1 - delta))
    num = b - c - n * delta
    if var <= 0:
        return math.copysign(math.inf, num) if num else 0.0
    return num / math.sqrt(var)


def _solve(f, lo: float, hi: float) -> float:
    """A root of `f` on (lo, hi) by bisection, given f(lo) < 0 <= f(hi); never evaluates f at lo or hi."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def tango_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for the paired difference (b - c) / n: every delta its score test does not reject.
    Unlike a conditional interval it is not [0, 0] when no pair is discordant (n = 12: about +-24 points)."""
    if n <= 0:
        return -1.0, 1.0
    z = z_of(confidence)
    d = (b - c) / n
    lo = -1.0 if d <= -1 else _solve(lambda t: z - _tango_z(b, c, n, t), -1.0, d)
    hi = 1.0 if d >= 1 else _solve(lambda t: -_tango_z(b, c, n, t) - z, d, 1.0)
    return lo, hi


def tango_p(b: int, c: int, n: int, delta0: float) -> float:
    """One-sided p-value of Tango's score test for H0: difference <= delta0 (small when it is clearly above)."""
    if n <= 0:
        return 1.0
    if delta0 <= -1:
        return 0.0 if b - c > -n else 1.0
    return 1 - _NORMAL.cdf(_tango_z(b, c, n, delta0))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the input order: reject hypothesis i at family-wise level alpha iff
    adjusted[i] <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_means(diffs: list[float], resamples: int, seed: int):
    """Means of `resamples` paired-bootstrap resamples of the per-task differences (tasks drawn with
    replacement), as a numpy array; the same seed gives the same array."""
    import numpy as np

    values = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    block = max(1, 2_000_000 // max(1, len(values)))  # bound memory: block x n indices at a time
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        out[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    return out


@dataclass(frozen=True)
class BootstrapSummary:
    """What the gate reads off a bootstrap distribution of the mean difference."""

    lo: float
    hi: float
    p_two_sided: float  # for "no difference"
    p_above: float  # one-sided, for H0: difference <= null


def bootstrap_summary(means, confidence: float, null: float = 0.0) -> BootstrapSummary:
    """Percentile interval at `confidence`, two-sided p for 0, and one-sided p for H0: difference <= `null`."""
    import numpy as np

    b = len(means)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    at_most_zero = (1 + int(np.sum(means <= 0))) / (b + 1)
    at_least_zero = (1 + int(np.sum(means >= 0))) / (b + 1)
    return BootstrapSummary(lo=float(lo), hi=float(hi), p_two_sided=min(1.0, 2 * min(at_most_zero, at_least_zero)),
                            p_above=(1 + int(np.sum(means <= null))) / (b + 1))


def tasks_needed(effect: float, sd: float, alpha: float, power: float) -> int | None:
    """Tasks for a two-sided level-`alpha` test to detect `effect` with `power`, when a task's difference has
    standard deviation `sd` (normal approximation). None when the effect is not positive."""
    if effect <= 0:
        return None
    z = _NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)
    return max(1, math.ceil((z * sd / effect) ** 2))


def paired_tasks_needed(win_rate: float, loss_rate: float, null: float, alpha: float, power: float) -> int | None:
    """Pairs for a two-sided level-`alpha` test of difference = `null` on paired pass/fail data to detect the
    observed rates of won and lost pairs with `power`: n = (z_a s0 + z_b s1)^2 / (delta - null)^2, with s0^2
    the variance under the null (Tango's restricted MLE) and s1^2 = psi - delta^2 (psi: discordant rate). At
    null 0 this is Connor's (1987) McNemar formula; there it is never below what the exact test needs (k
    discordant pairs all one way, 2 * 2**-k <= alpha, at the observed discordant rate). None when the observed
    difference is not above the null."""
    delta, psi = win_rate - loss_rate, win_rate + loss_rate
    if delta <= null:
        return None
    za, zb = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    s0 = math.sqrt(max(0.0, 2 * _tango_q(win_rate, loss_rate, 1.0, null) + null * (1 - null)))
    s1 = math.sqrt(max(0.0, psi - delta * delta))
    n = (za * s0 + zb * s1) ** 2 / (delta - null) ** 2
    if null == 0:
        n = max(n, math.ceil(math.log2(2 / alpha)) / psi)
    return max(1, math.ceil(n))
