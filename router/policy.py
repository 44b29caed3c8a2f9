"""The routing decision: a request's calibrated domain scores, the registry and the thresholds give one target.

The rule, in order (the Decision's `reason` says which step decided):
  0. an empty request (no text, no tools) goes to the local generalist; one unlike the training data (the share
     of its features seen in training below the router's fitted `min_coverage`) goes to no specialist: to the
     low-confidence target of step 3 when one is enabled and `escalate_below` > 0, else the generalist;
  1. the router's top domain d and its calibrated confidence s;
  2. the best routable specialist of d (ship before routed-ship) takes the request if s >= its threshold
     (`ship` for a ship specialist, the stricter `routed_ship` for a routed-ship one: such a specialist is
     never used outside its domain);
  3. otherwise, if s < `escalate_below` and an enabled target takes low-confidence requests, that target;
  4. otherwise the local generalist.
`scores` holds each considered target's score: a specialist's is its domain's probability, the generalist's
the probability that the request belongs to no routable specialist's domain. Pure: no I/O, no model loading.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from tinygpt.router.features import Request
from tinygpt.router.model import RouterModel
from tinygpt.router.registry import Registry
from tinygpt.router.settings import Settings
from tinygpt.traces.atraj import RouteDecision

RouteKind = Literal["specialist", "generalist", "local", "remote", "cloud"]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Where a request goes and why."""

    route: str                  # the target's name: a store model, or a remote/cloud target
    kind: RouteKind
    domain: str                 # the router's top domain
    score: float                # its calibrated confidence in that domain
    threshold: float | None     # what the score was compared with (None: no comparison decided it)
    reason: str
    scores: dict[str, float]    # per target considered
    domain_scores: dict[str, float]
    policy: str                 # the router's id

    def to_route(self) -> RouteDecision:
        """The trajectory header's record of this decision."""
        return RouteDecision(target=self.route, policy=self.policy, reason=self.reason, scores=dict(self.scores),
                             kind=self.kind, domain=self.domain, score=self.score, threshold=self.threshold)


def decide(request: Request, model: RouterModel, registry: Registry, settings: Settings | None = None) -> Decision:
    """The Decision for `request` (see the module docstring for the rule)."""
    settings = settings or model.meta.settings
    p, coverage = model.assess(request)
    domain_scores = {d: round(float(v), 6) for d, v in zip(model.domains, p)}
    top = int(p.argmax())
    domain, score = model.domains[top], float(p[top])
    scores: dict[str, float] = {}
    covered = 0.0
    for d, v in domain_scores.items():
        found = registry.routable(d)
        for s in found:
            scores[s.name] = v
        covered += v if found else 0.0
    scores[registry.generalist] = round(max(0.0, 1.0 - covered), 6)
    common = dict(domain=domain, score=round(score, 6), scores=scores, domain_scores=domain_scores,
                  policy=model.id)
    if not request.text.strip() and not request.tools:
        return Decision(route=registry.generalist, kind="generalist", threshold=None, **common,
                        reason=f"empty request: the generalist {registry.generalist}")
    unlike = coverage < model.meta.min_coverage  # no specialist; a low-confidence target may take it (rule 3)
    best = None if unlike else next(iter(registry.routable(domain)), None)
    if unlike:
        threshold = model.meta.min_coverage
        why = (f"unlike the training data (features seen in training {coverage:.2f} < "
               f"{model.meta.min_coverage:.2f})")
    elif best is not None:
        threshold = settings.ship if best.verdict == "ship" else settings.routed_ship
        if score >= threshold:
            return Decision(route=best.name, kind="specialist", threshold=threshold, **common,
                            reason=f"domain {domain} at {score:.3f} >= {threshold:g}: {best.verdict} specialist "
                                   f"{best.name}")
        why = f"domain {domain} at {score:.3f} < {threshold:g} for {best.verdict} specialist {best.name}"
    else:
        threshold = None
        why = f"no routable specialist for domain {domain} ({score:.3f})"
    unsure = score < settings.escalate_below or unlike and settings.escalate_below > 0
    target = registry.low_confidence_target()
    if target is not None and unsure:
        return Decision(route=target.name, kind=target.kind,
                        threshold=settings.escalate_below, **common,
                        reason=f"{why}; confidence below {settings.escalate_below:g}: {target.kind} target "
                               f"{target.name}")
    skipped = next((t for t in registry.targets if t.low_confidence and not t.enabled), None)
    if skipped is not None and unsure:
        why += f"; {skipped.kind} target {skipped.name} skipped (disabled)"
    return Decision(route=registry.generalist, kind="generalist", threshold=threshold, **common,
                    reason=f"{why}: the generalist {registry.generalist}")
