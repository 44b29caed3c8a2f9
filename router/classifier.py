"""A multinomial logistic regression over sparse hashed features, with temperature scaling, in numpy alone.

`Sparse` holds rows as CSR arrays (no dense matrix is ever built: the gradient is a segment sum over the sorted
non-zeros). `fit` minimises mean cross-entropy + l2/2 |W|^2 by full-batch Adam for a fixed number of steps from
zero weights, so a fit is deterministic. `fit_temperature` finds the T that minimises the negative log-likelihood
of softmax(logits / T) on held-out rows (golden-section search on log T); `ece` is the expected calibration
error over equal-width confidence bins. Not here: features (features.py), data and splits (train.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Sparse:
    """n rows of a dim-wide sparse matrix in CSR form."""

    indptr: np.ndarray   # int64, n + 1
    indices: np.ndarray  # int64, nnz
    values: np.ndarray   # float32, nnz
    dim: int

    @classmethod
    def from_rows(cls, rows: list[tuple[list[int], list[float]]], dim: int) -> "Sparse":
        lengths = [len(i) for i, _ in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.fromiter((i for idx, _ in rows for i in idx), dtype=np.int64, count=int(indptr[-1]))
        values = np.fromiter((v for _, val in rows for v in val), dtype=np.float32, count=int(indptr[-1]))
        return cls(indptr, indices, values, dim)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    def take(self, rows: np.ndarray) -> "Sparse":
        return Sparse.from_rows([self.row(int(r)) for r in rows], self.dim)

    def row(self, r: int) -> tuple[list[int], list[float]]:
        a, b = self.indptr[r], self.indptr[r + 1]
        return self.indices[a:b].tolist(), self.values[a:b].tolist()

    def matmul(self, w: np.ndarray) -> np.ndarray:
        """X @ w for w of shape (dim, C)."""
        out = np.zeros((self.n, w.shape[1]), dtype=np.float64)
        if len(self.indices):
            products = w[self.indices] * self.values[:, None]
            nonempty = np.flatnonzero(np.diff(self.indptr))
            out[nonempty] = np.add.reduceat(products, self.indptr[nonempty], axis=0)
        return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit(x: Sparse, y: np.ndarray, classes: int, *, l2: float = 1e-4, steps: int = 300, lr: float = 0.1,
        balanced: bool = False, progress: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights (dim, C) and bias (C,) of the logistic regression of labels `y` (ints < classes) on `x`. With
    `balanced`, each class's rows weigh 1 / its count in the mean (every class counts alike in the loss), so a
    large class (the general requests) cannot swamp a small domain."""
    n = x.n
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    # mean weight 1; exactly 1 for every row when the classes are already of one size
    row_weight = (n / (np.count_nonzero(counts) * counts[y]) if balanced else np.ones(n)).astype(np.float32)
    order = np.argsort(x.indices, kind="stable")  # non-zeros grouped by feature (CSC): X^T G is a segment sum
    by_feature_rows = np.repeat(np.arange(n), np.diff(x.indptr))[order]
    by_feature_values = x.values[order][:, None]
    features, starts = np.unique(x.indices[order], return_index=True)
    row_values = x.values[:, None]
    nonempty = np.flatnonzero(np.diff(x.indptr))
    onehot = np.zeros((n, classes), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    w = np.zeros((len(features), classes), dtype=np.float32)  # only features seen in training can get weight
    b = np.zeros(classes, dtype=np.float32)
    local = np.searchsorted(features, x.indices)
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        logits = np.zeros((n, classes), dtype=np.float32)
        if len(local):
            logits[nonempty] = np.add.reduceat(w[local] * row_values, x.indptr[nonempty], axis=0)
        logits += b
        p = softmax(logits)
        g = (p - onehot) * row_weight[:, None] / n
        gw = (np.add.reduceat(g[by_feature_rows] * by_feature_values, starts, axis=0) if len(starts)
              else np.zeros_like(w))
        gw += l2 * w
        gb = g.sum(axis=0)
        for param, grad, m, v in ((w, gw, moments[0], moments[1]), (b, gb, moments[2], moments[3])):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= lr * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps)
        if progress is not None and (step % 25 == 0 or step == steps):
            loss = -(np.log(p[np.arange(n), y] + 1e-12) * row_weight).mean() + 0.5 * l2 * float((w * w).sum())
            progress(step, float(loss))
    full = np.zeros((x.dim, classes), dtype=np.float32)
    full[features] = w
    return full, b


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature T in [lo, hi] minimising the NLL of softmax(logits / T) on (logits, y)."""
    if len(y) == 0:
        return 1.0
    a, b = math.log(lo), math.log(hi)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, y, math.exp(c)), nll(logits, y, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, y, math.exp(d))
    return math.exp((a + b) / 2)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - mean confidence| x share of rows."""
    if len(y) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        inside = which == k
        if inside.any():
            total += abs(correct[inside].mean() - confidence[inside].mean()) * inside.mean()
    return float(total)
