"""Fit a router on labelled examples: split, fit the classifier, fit its temperature, measure, return the model.

With `text_only`, each request offered tools is also learned without them (a request may come with no tools;
a router that learned only tool names would be sure and wrong about it). Examples are split by group (related
rows stay together), per domain, with a seeded shuffle: `calibration` and `test` shares of each domain's groups
are held out (at least one group each when a domain has three or more). The classifier is fit on the rest; the
temperature on the calibration rows; accuracy and the expected calibration error (before and after scaling) on
the test rows, which nothing was fit on. Fewer than two domains is a RouterError: a router with one answer is
not a router. Not here: reading data (data.py), files (model.py).
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict
from typing import Callable

import numpy as np

from tinygpt.router.classifier import Sparse, ece, fit, fit_temperature, softmax
from tinygpt.router.data import Example
from tinygpt.router.errors import RouterError
from tinygpt.router.features import Request, featurize
from tinygpt.router.model import Metrics, RouterFile, RouterModel, coverage
from tinygpt.router.registry import GENERAL
from tinygpt.router.settings import Settings
from tinygpt.router.train_options import TrainOptions


def split(examples: list[Example], calibration: float, test: float, seed: int) -> tuple[list[int], ...]:
    """Indices (train, calibration, test), split per domain by group with a seeded shuffle."""
    groups: dict[str, dict[str, list[int]]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.domain, {}).setdefault(e.group, []).append(i)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for domain in sorted(groups):
        keys = sorted(groups[domain])
        random.Random(f"{seed}/{domain}").shuffle(keys)
        n = len(keys)
        n_test = max(1, round(n * test)) if test and n >= 3 else 0
        n_cal = max(1, round(n * calibration)) if calibration and n >= 3 else 0
        for j, key in enumerate(keys):
            which = 2 if j < n_test else 1 if j < n_test + n_cal else 0
            parts[which].extend(groups[domain][key])
    return tuple(sorted(p) for p in parts)


def train(examples: list[Example], options: TrainOptions = TrainOptions(), settings: Settings = Settings(), *,
          sources: list[str] = (), progress: Callable[[int, float], None] | None = None) -> RouterModel:
    """A calibrated router over the domains of `examples`."""
    options = options.checked()
    try:
        settings = settings.checked()
    except ValueError as exc:
        raise RouterError(str(exc)) from exc
    domains = sorted({e.domain for e in examples})
    if len(domains) < 2:
        raise RouterError(f"the labelled data has {len(domains)} domain(s) ({', '.join(domains) or 'none'}); a "
                          "router needs examples of at least two domains")
    per_domain = {d: sum(e.domain == d for e in examples) for d in domains}
    if options.text_only:  # same group: a copy stays on its original's side of the split
        examples = examples + [Example(Request(e.request.text), e.domain, e.group) for e in examples
                               if e.request.tools and e.request.text]
    label = {d: i for i, d in enumerate(domains)}
    y = np.array([label[e.domain] for e in examples])
    x = Sparse.from_rows([featurize(e.request, options.dim) for e in examples], options.dim)
    tr, cal, te = (np.array(p, dtype=np.int64) for p in split(examples, options.calibration, options.test,
                                                              options.seed))
    weights, bias = fit(x.take(tr), y[tr], len(domains), l2=options.l2, steps=options.steps, lr=options.lr,
                        balanced=options.balanced, progress=progress)
    temperature = fit_temperature(x.take(cal).matmul(weights) + bias, y[cal]) if len(cal) else 1.0
    metrics = Metrics(train=len(tr), calibration=len(cal), test=len(te),
                      per_domain=per_domain)
    if len(te):
        logits = x.take(te).matmul(weights) + bias
        raw, scaled = softmax(logits), softmax(logits / temperature)
        metrics = Metrics(**{**_fields(metrics), "accuracy": float((scaled.argmax(1) == y[te]).mean()),
                             "ece_raw": ece(raw, y[te]), "ece": ece(scaled, y[te])})
    min_coverage = _min_coverage([examples[i].request for i in cal if examples[i].domain != GENERAL], weights)
    meta = RouterFile(domains=domains, dim=options.dim, temperature=temperature, settings=settings,
                      min_coverage=min_coverage,
                      trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), sources=list(sources),
                      options={k: v for k, v in asdict(options).items()}, metrics=metrics)
    return RouterModel(domains=tuple(domains), weights=weights, bias=bias, temperature=temperature, meta=meta)


COVERAGE_QUANTILE, COVERAGE_MARGIN = 0.01, 0.5  # guard at half the coverage of the 1% least-covered in-domain rows


def _min_coverage(requests: list[Request], weights: np.ndarray) -> float:
    """The guard's threshold: COVERAGE_MARGIN x the COVERAGE_QUANTILE of `coverage` over `requests` (the held-out
    calibration rows of the specialists' domains; the margin: a small domain's few calibration rows understate
    how low its own requests go); 0 (no guard) without such rows."""
    if not requests:
        return 0.0
    seen = np.any(weights != 0, axis=1)
    shares = [coverage(r, seen) for r in requests]
    return round(COVERAGE_MARGIN * float(np.quantile(shares, COVERAGE_QUANTILE)), 6)


def _fields(m: Metrics) -> dict:
    return {f: getattr(m, f) for f in m.__struct_fields__}
