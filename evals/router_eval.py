"""eval-router's measurements: how well a router routes a labelled held-out set, and what its routing buys.

From each request's calibrated domain probabilities, its label and a quality per tier (router_quality.py):
routing accuracy (Wilson 95%), per-domain accuracy, a reliability table and the expected calibration error,
escalation precision/recall (a request should leave the specialists when its label has no specialist), and the
cost–quality curve of RouteLLM (Ong et al. 2024) extended to three tiers: the local tiers (specialist,
generalist) split by the router are the "weak model", the cloud the "strong" one, and one threshold θ sends
every request with confidence < θ to the cloud. APGR is the area under the performance-gap-recovered curve over
the share of cloud calls; CPT(p) the least share that recovers p of the gap. Pure numpy; no I/O, no models.
"""
from __future__ import annotations

import numpy as np

from tinygpt.evals.stats import wilson

SPECIALIST, GENERALIST, CLOUD = 0, 1, 2
TIERS = ("specialist", "generalist", "cloud")


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width confidence bins (the last one closed): count, mean confidence and accuracy of each non-empty
    bin. The bins are those of router.classifier.ece, so sum(|accuracy - confidence| x count) / n is the ECE."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for k in range(bins):
        inside = which == k
        if inside.any():
            out.append({"lo": k / bins, "hi": (k + 1) / bins, "count": int(inside.sum()),
                        "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return out


def ece_of(table: list[dict]) -> float:
    """The expected calibration error of a reliability table."""
    n = sum(b["count"] for b in table)
    return float(sum(abs(b["accuracy"] - b["confidence"]) * b["count"] for b in table) / n) if n else 0.0


def rate(successes: int, n: int) -> dict:
    lo, hi = wilson(successes, n)
    return {"n": n, "correct": int(successes), "rate": successes / n if n else None, "lo": lo, "hi": hi}


def escalation(escalated: np.ndarray, should: np.ndarray) -> dict:
    """Precision and recall of `escalated` (the request left the specialists) against `should` (its label has no
    routable specialist); None where nothing was escalated, or nothing should have been."""
    tp = int((escalated & should).sum())
    fp, fn = int((escalated & ~should).sum()), int((~escalated & should).sum())
    return {"escalated": int(escalated.sum()), "should": int(should.sum()), "true_positives": tp,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None}


def route_tiers(confidence: np.ndarray, specialist_threshold: np.ndarray, escalate_below: float) -> np.ndarray:
    """The policy's rule (router/policy.py), vectorised: the tier of each request. `specialist_threshold` is the
    threshold of the best routable specialist of the request's top domain, +inf where there is none."""
    tiers = np.full(len(confidence), GENERALIST)
    tiers[confidence < escalate_below] = CLOUD
    tiers[confidence >= specialist_threshold] = SPECIALIST  # rule 1 comes before escalation
    return tiers


def tier_quality(tiers: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Each request's quality under its tier; `quality` is (n, 3): specialist (of the top domain), generalist,
    cloud."""
    return quality[np.arange(len(tiers)), tiers]


def escalation_curve(order_key: np.ndarray, local: np.ndarray, cloud: np.ndarray) -> tuple[np.ndarray, ...]:
    """(thresholds, cloud shares, mean qualities) as the threshold rises: requests go to the cloud in ascending
    `order_key`; requests with equal keys move together (one point per distinct key, plus both ends). `local` and
    `cloud` are each request's quality on the local tier the router chose and on the cloud."""
    n = len(local)
    order = np.argsort(order_key, kind="stable")
    keys, gain = order_key[order], (cloud - local)[order]
    ends = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True]) + 1  # after each run of equal keys
    shares = np.r_[0.0, ends / n]
    quality = local.mean() + np.r_[0.0, np.cumsum(gain)[ends - 1]] / n
    thresholds = np.r_[keys[0], np.r_[keys[ends[:-1]], np.inf]] if n else np.array([np.inf])
    return thresholds, shares, quality


def pgr(quality: np.ndarray, weak: float, strong: float) -> np.ndarray | None:
    """Performance gap recovered: (quality - weak) / (strong - weak); None when there is no gap."""
    gap = strong - weak
    return None if abs(gap) < 1e-12 else (quality - weak) / gap


def apgr(shares: np.ndarray, recovered: np.ndarray) -> float:
    """Area under the PGR curve over the share of cloud calls in [0, 1] (trapezoids: between two points, a
    random tie-break among the requests that move together)."""
    return float(np.sum((shares[1:] - shares[:-1]) * (recovered[1:] + recovered[:-1]) / 2))


def cpt(shares: np.ndarray, recovered: np.ndarray, target: float) -> float | None:
    """The least share of cloud calls at which PGR reaches `target` (interpolated along the curve); None if never."""
    hit = np.flatnonzero(recovered >= target - 1e-12)
    if not len(hit):
        return None
    k = int(hit[0])
    if k == 0:
        return float(shares[0])
    a, b = recovered[k - 1], recovered[k]
    return float(shares[k - 1] + (shares[k] - shares[k - 1]) * (target - a) / (b - a))


def curve_summary(shares: np.ndarray, quality: np.ndarray, weak: float, strong: float) -> dict:
    recovered = pgr(quality, weak, strong)
    if recovered is None:
        return {"pgr": None, "apgr": None, "cpt50": None, "cpt80": None}
    return {"pgr": recovered.tolist(), "apgr": apgr(shares, recovered), "cpt50": cpt(shares, recovered, 0.5),
            "cpt80": cpt(shares, recovered, 0.8)}


def evaluate(probs: np.ndarray, labels: list[str], domains: list[str], specialists: dict[str, float],
             escalate_below: float, quality: np.ndarray | None, costs: dict[str, float], bins: int = 10,
             guarded: np.ndarray | None = None) -> dict:
    """Every measurement of eval-router (see the module docstring) as plain values.

    probs: (n, len(domains)) calibrated probabilities; labels: each request's true domain (one the router does
    not know is always a wrong answer); specialists: the threshold of the best routable specialist per domain;
    quality: (n, 3) quality per tier, the specialist column meaning the specialist of the request's top domain
    (None: no curve); costs: per tier, per request; guarded: the requests the policy's guard sends to the
    generalist whatever their scores (empty, or unlike the training data): no specialist takes them."""
    n = len(labels)
    top = probs.argmax(axis=1)
    predicted = [domains[k] for k in top]
    confidence = probs[np.arange(n), top]
    correct = np.array([p == y for p, y in zip(predicted, labels)])
    table = reliability(confidence, correct, bins)
    per_domain = {d: rate(int(sum(c for c, y in zip(correct, labels) if y == d)), labels.count(d))
                  for d in sorted(set(labels))}
    threshold = np.array([specialists.get(d, np.inf) for d in predicted])
    if guarded is not None:
        threshold[guarded] = np.inf
    tiers = route_tiers(confidence, threshold, escalate_below)
    if guarded is not None and escalate_below > 0:  # the policy sends a request unlike the data to the target
        tiers[guarded] = CLOUD
    should = np.array([y not in specialists for y in labels])
    out = {"requests": n, "accuracy": rate(int(correct.sum()), n), "per_domain": per_domain,
           "ece": ece_of(table), "reliability": table,
           "unknown_labels": sorted(set(labels) - set(domains)),
           "escalation": escalation(tiers != SPECIALIST, should),
           "shares": {t: float((tiers == k).mean()) for k, t in enumerate(TIERS)}, "curve": None}
    if quality is not None:
        out["curve"] = cost_quality(confidence, threshold, quality, costs)
        out["quality_at_settings"] = float(tier_quality(tiers, quality).mean())
        out["cost_at_settings"] = float(sum((tiers == k).mean() * costs[t] for k, t in enumerate(TIERS)))
    return out


def cost_quality(confidence: np.ndarray, threshold: np.ndarray, quality: np.ndarray, costs: dict[str, float]
                 ) -> dict:
    """The three-tier cost–quality curve: θ from 0 up, every request with confidence < θ to the cloud, the rest
    split by the specialist thresholds (the settings escalate_below = θ, ship and routed_ship raised to at least
    θ). With references: all generalist, the local split (θ = 0), all cloud, a random escalation order (its
    expected curve is the straight line, APGR 0.5) and the oracle order (largest gain first); and the local tiers' own curve (local_curve)."""
    local_tiers = np.where(confidence >= threshold, SPECIALIST, GENERALIST)
    local = tier_quality(local_tiers, quality)
    cloud = quality[:, CLOUD]
    thresholds, shares, q = escalation_curve(confidence, local, cloud)
    weak, strong = float(local.mean()), float(cloud.mean())
    spec_share = np.r_[0.0, np.cumsum((local_tiers == SPECIALIST)[np.argsort(confidence, kind="stable")])]
    spec_left = (local_tiers == SPECIALIST).mean() - spec_share[np.round(shares * len(local)).astype(int)] / len(local)
    cost = spec_left * costs["specialist"] + (1 - shares - spec_left) * costs["generalist"] + shares * costs["cloud"]
    _, oshares, oq = escalation_curve(-(cloud - local), local, cloud)
    points = [{"threshold": None if not np.isfinite(t) else float(t), "cloud_share": float(s),
               "specialist_share": float(p), "quality": float(v), "cost": float(c)}
              for t, s, p, v, c in zip(thresholds, shares, spec_left, q, cost)]
    return {"weak": weak, "strong": strong, "points": points, **curve_summary(shares, q, weak, strong),
            "local": local_curve(confidence, threshold, quality, costs),
            "oracle": {"shares": oshares.tolist(), "quality": oq.tolist(),
                       **{k: v for k, v in curve_summary(oshares, oq, weak, strong).items() if k != "pgr"}},
            "references": {
                "all_generalist": {"quality": float(quality[:, GENERALIST].mean()), "cost": costs["generalist"]},
                "local_split": {"quality": weak, "cost": float(cost[0]),
                                "specialist_share": float((local_tiers == SPECIALIST).mean())},
                "all_cloud": {"quality": strong, "cost": costs["cloud"]}}}


def local_curve(confidence: np.ndarray, threshold: np.ndarray, quality: np.ndarray, costs: dict[str, float]
                ) -> list[dict]:
    """The local tiers alone (no cloud): every specialist threshold set to t, t rising from 0, so the requests
    whose top domain has a specialist move to the generalist in ascending confidence. Each point: t, the share
    of requests on specialists, mean quality, mean cost."""
    eligible = np.isfinite(threshold)
    n = len(confidence)
    if not eligible.any():
        return []
    t, moved, q = escalation_curve(confidence[eligible], quality[eligible, SPECIALIST], quality[eligible, GENERALIST])
    share = eligible.mean() * (1 - moved)
    quality_all = quality[~eligible, GENERALIST].sum() / n + eligible.mean() * q
    return [{"threshold": None if not np.isfinite(a) else float(a), "specialist_share": float(b),
             "quality": float(c), "cost": float(b * costs["specialist"] + (1 - b) * costs["generalist"])}
            for a, b, c in zip(t, share, quality_all)]
