"""The gate's statistics against known values and against independent computations."""
import math

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.evals import stats


def test_wilson_7_of_12_is_32_0_to_80_7_percent():
    lo, hi = stats.wilson(7, 12)
    assert (round(lo * 100, 1), round(hi * 100, 1)) == (32.0, 80.7)


def test_wilson_edges():
    assert stats.wilson(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-6)  # z^2/(n+z^2) at 0
    lo, hi = stats.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + 1.959964**2), abs=1e-6)


def test_exact_mcnemar_known_values():
    assert round(stats.mcnemar_exact(6, 0), 3) == 0.031  # 2 / 2**6
    assert stats.mcnemar_exact(0, 6) == stats.mcnemar_exact(6, 0) == 2 / 64
    assert stats.mcnemar_exact(5, 0) == 0.0625
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact_greater(6, 0) == 1 / 64
    assert stats.mcnemar_exact_greater(0, 6) == 1.0


@pytest.mark.parametrize("k, n", [(0, 1), (3, 20), (47, 100), (120, 300)])
def test_binomial_tail_matches_mpmath(k, n):
    with mpmath.workdps(50):  # its own precision: BFCL's modules, imported by other tests, set mpmath's global one
        exact = mpmath.fsum(mpmath.binomial(n, i) for i in range(k + 1)) / mpmath.mpf(2) ** n
    assert stats.binom_half_cdf(k, n) == pytest.approx(float(exact), rel=1e-12)


def test_tango_interval_matches_the_published_example():
    # Fagerland, Lydersen & Laake (2013), airway hyper-responsiveness: n12 = 1, n21 = 7, N = 21;
    # Tango's asymptotic score interval for p1+ - p+1 is (-0.517, -0.026).
    lo, hi = stats.tango_interval(1, 7, 21)
    assert (round(lo, 3), round(hi, 3)) == (-0.517, -0.026)


def test_tango_interval_without_discordant_pairs_is_not_degenerate():
    # b = c = 0: the restricted MLE puts p(loss) at 0 and the bound solves n*d/(1-d) = z^2, i.e. d = z^2/(n+z^2)
    z2 = stats.z_of(0.95) ** 2
    lo, hi = stats.tango_interval(0, 0, 12)
    assert hi == pytest.approx(z2 / (12 + z2), abs=1e-9) and lo == pytest.approx(-hi, abs=1e-9)


def _score_by_brute_force(b, c, n, delta):
    """Tango's statistic with the restricted MLE found by maximizing the multinomial likelihood numerically."""
    rest = n - b - c

    def loglik(q):
        p12, p21 = q + delta, q
        if p12 <= 0 and b or p21 <= 0 and c or 1 - p12 - p21 <= 0 and rest:
            return -math.inf
        return ((b * math.log(p12) if b else 0) + (c * math.log(p21) if c else 0)
                + (rest * math.log(1 - p12 - p21) if rest else 0))

    lo_q, hi_q = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    for _ in range(200):  # golden-section search on the concave log-likelihood
        m1, m2 = lo_q + (hi_q - lo_q) * 0.382, lo_q + (hi_q - lo_q) * 0.618
        if loglik(m1) < loglik(m2):
            lo_q = m1
        else:
            hi_q = m2
    q = (lo_q + hi_q) / 2
    return (b - c - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize("b, c, n, delta", [(1, 7, 21, -0.2), (6, 0, 12, 0.1), (10, 4, 50, -0.05), (3, 3, 30, 0.0)])
def test_tango_statistic_uses_the_true_restricted_mle(b, c, n, delta):
    assert stats._tango_z(b, c, n, delta) == pytest.approx(_score_by_brute_force(b, c, n, delta), rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_tango_interval_holds_the_estimate_and_its_bounds_are_where_the_test_turns(b, c, rest):
    n = b + c + rest
    if n == 0:
        return
    lo, hi = stats.tango_interval(b, c, n)
    d = (b - c) / n
    assert -1 <= lo <= d <= hi <= 1
    z = stats.z_of(0.95)
    if lo > -1 + 1e-6:
        assert stats._tango_z(b, c, n, lo) == pytest.approx(z, abs=1e-4)
    if hi < 1 - 1e-6:
        assert stats._tango_z(b, c, n, hi) == pytest.approx(-z, abs=1e-4)
    # one-sided score p at a bound is alpha/2
    if -1 + 1e-6 < lo:
        assert stats.tango_p(b, c, n, lo) == pytest.approx(0.025, abs=1e-4)


def test_holm_on_known_sets():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # R: p.adjust(c(0.001, 0.2, 0.012), "holm") -> 0.003 0.200 0.024
    assert stats.holm([0.001, 0.2, 0.012]) == pytest.approx([0.003, 0.2, 0.024])
    assert stats.holm([0.04]) == [0.04]
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone


def test_bootstrap_is_reproducible_with_a_seed():
    diffs = [1, 0, 0, 0.5, -0.5, 1, 0, 0.25] * 5
    a = stats.bootstrap_means(diffs, 2000, seed=7)
    b = stats.bootstrap_means(diffs, 2000, seed=7)
    c = stats.bootstrap_means(diffs, 2000, seed=8)
    assert (a == b).all() and not (a == c).all()
    s = stats.bootstrap_summary(a, 0.95)
    mean = sum(diffs) / len(diffs)
    assert s.lo < mean < s.hi
    assert s.p_above < 0.025 and s.p_two_sided < 0.05  # mean 0.28 with sd ~0.45 over 40 tasks: clearly above 0
    flat = stats.bootstrap_summary(stats.bootstrap_means([1, -1] * 20, 2000, seed=1), 0.95)
    assert flat.p_two_sided > 0.5 and flat.lo < 0 < flat.hi


def test_bootstrap_matches_the_normal_theory_for_a_large_sample():
    diffs = [(i % 7 - 3) / 3 for i in range(400)]  # mean 0, known sd
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs))
    s = stats.bootstrap_summary(stats.bootstrap_means(diffs, 20000, seed=3), 0.95)
    half = 1.959964 * sd / math.sqrt(len(diffs))
    assert s.lo == pytest.approx(mean - half, abs=0.15 * half) and s.hi == pytest.approx(mean + half, abs=0.15 * half)


def test_sample_sizes():
    # Connor (1987) with psi = 0.5, delta = 0.5, alpha 0.05, power 0.8: (1.96*0.707 + 0.842*0.5)^2 / 0.25 = 13.04
    assert stats.paired_tasks_needed(0.5, 0.0, 0.0, 0.05, 0.8) == 14
    # exact floor: 6 discordant pairs all one way are needed for 2 * 2**-k <= 0.05, at psi = 1 -> 6 pairs
    assert stats.paired_tasks_needed(1.0, 0.0, 0.0, 0.05, 0.8) == 6
    # no discordance, margin 5 points: z^2 * s0^2 / 0.05^2 with s0^2 = 2*0.05 - 0.05*1.05 -> 73 (Tango's
    # interval with 73 concordant pairs reaches -5.0)
    assert stats.paired_tasks_needed(0.0, 0.0, -0.05, 0.05, 0.8) == 73
    assert stats.tango_interval(0, 0, 73)[0] > -0.05 > stats.tango_interval(0, 0, 72)[0]
    assert stats.paired_tasks_needed(0.1, 0.2, 0.0, 0.05, 0.8) is None
    assert stats.tasks_needed(0.1, 0.3, 0.05, 0.8) == math.ceil(((1.959964 + 0.841621) * 3) ** 2)
    assert stats.tasks_needed(0.0, 0.3, 0.05, 0.8) is None
