"""A trained router: the domains, the classifier's weights, its temperature; saved as router.json + weights.npz.

router.json (`RouterFile`) holds everything but the numbers: the domains, the feature width, the temperature,
the policy settings, how it was trained and what it measured; weights.npz holds only the rows of the weight
matrix that training gave weight (their indices, the rows, the bias), read with allow_pickle=False. `load`
checks that the two agree and names the file on any problem (RouterError). `probs` is the calibrated
distribution over domains for one request. Not here: training (train.py), the decision (policy.py).
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import msgspec
import numpy as np

from tinygpt.router.errors import RouterError
from tinygpt.router.features import VERSION as FEATURES_VERSION
from tinygpt.router.features import Request, featurize
from tinygpt.router.settings import Settings

FILE_KIND = "tinygpt.router"
VERSION = 1
JSON_NAME, WEIGHTS_NAME = "router.json", "weights.npz"


class Metrics(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What training measured on rows it did not fit: calibration rows set T, test rows score the router."""

    train: int
    calibration: int
    test: int
    accuracy: float | None = None       # on test rows
    ece_raw: float | None = None        # on test rows, before temperature scaling
    ece: float | None = None            # on test rows, after
    per_domain: dict[str, int] = {}     # labelled examples per domain


class RouterFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: str = FILE_KIND
    version: int = VERSION
    domains: list[str]
    dim: int
    features: int = FEATURES_VERSION
    temperature: float
    settings: Settings = Settings()
    trained_at: str = ""
    sources: list[str] = []
    options: dict[str, bool | int | float] = {}
    metrics: Metrics | None = None
    min_coverage: float = 0.0  # below this share of features seen in training, a request is unlike the data


@dataclass(frozen=True)
class RouterModel:
    """Calibrated domain probabilities for requests."""

    domains: tuple[str, ...]
    weights: np.ndarray  # (dim, len(domains)) float32
    bias: np.ndarray     # (len(domains),) float32
    temperature: float
    meta: RouterFile

    @property
    def dim(self) -> int:
        return self.weights.shape[0]

    @cached_property
    def id(self) -> str:
        """A short id of the weights, temperature and domains: what the trajectory header's route.policy names."""
        h = hashlib.blake2b(digest_size=6)
        h.update(self.weights.tobytes() + self.bias.tobytes())
        h.update(repr((self.domains, round(self.temperature, 9))).encode())
        return f"router:{h.hexdigest()}"

    @cached_property
    def seen(self) -> np.ndarray:
        """Which feature buckets training saw (fit gives weight only to those): (dim,) bool."""
        return np.any(self.weights != 0, axis=1)

    def coverage(self, request: Request) -> float:
        """How much of the request training saw: see `coverage`."""
        return _coverage(_parts(request, self.dim), self.seen)

    def logits(self, request: Request) -> np.ndarray:
        return self._logits(_parts(request, self.dim))

    def probs(self, request: Request) -> np.ndarray:
        return self._softmax(self._logits(_parts(request, self.dim)))

    def assess(self, request: Request) -> tuple[np.ndarray, float]:
        """(probs, coverage) of a request, its features computed once."""
        parts = _parts(request, self.dim)
        return self._softmax(self._logits(parts)), _coverage(parts, self.seen)

    def _logits(self, parts) -> np.ndarray:
        out = self.bias.astype(np.float64)
        for idx, val in parts:  # the features are linear: the text's and the tools' add up to the request's
            if idx:
                out = out + np.asarray(val, dtype=np.float64) @ self.weights[idx]
        return out

    def _softmax(self, logits: np.ndarray) -> np.ndarray:
        z = logits / self.temperature
        e = np.exp(z - z.max())
        return e / e.sum()


def _parts(request: Request, dim: int) -> list[tuple[list[int], list[float]]]:
    """The features of the request's text and of its tools, apart (their blocks are normalised apart anyway)."""
    return [featurize(Request(request.text), dim), featurize(Request("", request.tools), dim)]


def _coverage(parts, seen: np.ndarray) -> float:
    best = 0.0
    for idx, val in parts:
        if idx:
            mass = np.asarray(val, dtype=np.float64) ** 2
            best = max(best, float((mass * seen[idx]).sum() / mass.sum()))
    return best


def coverage(request: Request, seen: np.ndarray) -> float:
    """The share of a request's feature mass (squared values) on the buckets `seen` in training, its text and its
    tools measured apart and the larger kept (familiar tools with new words, or familiar words with new tools,
    are still like the training data); 0 for an empty request."""
    return _coverage(_parts(request, len(seen)), seen)


def save(model: RouterModel, directory: str | Path) -> Path:
    """Write router.json and weights.npz into `directory` (each atomically); returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = np.flatnonzero(np.any(model.weights != 0, axis=1)).astype(np.int64)
    _atomic(out / WEIGHTS_NAME, lambda f: np.savez(f, rows=rows, weights=model.weights[rows], bias=model.bias))
    _atomic(out / JSON_NAME, lambda f: f.write(msgspec.json.format(msgspec.json.encode(model.meta), indent=2)))
    return out


def saved_settings(directory: str | Path) -> Settings | None:
    """The settings of the router tinygpt saved in `directory` (None when there is no router.json there), so a
    retrained router keeps hand-edited targets and thresholds; RouterError when a router.json there is a link or
    was not written by tinygpt (it is never replaced)."""
    path = Path(directory).expanduser() / JSON_NAME
    if path.is_symlink() or path.exists() and not path.is_file():
        raise RouterError(f"{path} is a link or not a file; tinygpt writes a router only as plain files. Choose "
                          "another --out")
    if not path.exists():
        return None
    try:
        value = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        value = None
    if not isinstance(value, dict) or value.get("kind") != FILE_KIND:
        raise RouterError(f"{path} exists and was not written by tinygpt; it is left alone. Choose another --out "
                          "or move that file")
    try:
        return msgspec.convert(value.get("settings", {}), Settings).checked()
    except (msgspec.ValidationError, ValueError) as exc:
        raise RouterError(f"{path}: its settings cannot be kept ({exc}); fix them or move the file") from exc


def load(directory: str | Path) -> RouterModel:
    """The router saved in `directory`; RouterError naming the file when it is missing, damaged or inconsistent."""
    where = Path(directory).expanduser()
    meta_path, weights_path = where / JSON_NAME, where / WEIGHTS_NAME
    if not meta_path.is_file():
        raise RouterError(f"no router at {where} ({JSON_NAME} missing); train one with "
                          "`tinygpt route train --data LABELLED.jsonl --out DIR`")
    try:
        meta = msgspec.json.decode(meta_path.read_bytes(), type=RouterFile)
    except msgspec.DecodeError as exc:
        raise RouterError(f"{meta_path} is not a router file ({exc}); train the router again") from exc
    if meta.kind != FILE_KIND or meta.version > VERSION:
        raise RouterError(f"{meta_path} is a {meta.kind!r} file of version {meta.version}; this tinygpt reads "
                          f"{FILE_KIND} version {VERSION} (upgrade, or train the router again)")
    if meta.features != FEATURES_VERSION:
        raise RouterError(f"{meta_path} was trained on features of version {meta.features}; this tinygpt computes "
                          f"version {FEATURES_VERSION}: train the router again")
    try:
        with np.load(weights_path, allow_pickle=False) as z:
            rows, w, bias = z["rows"], z["weights"], z["bias"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RouterError(f"{weights_path} is missing or damaged ({type(exc).__name__}: {exc}); train the router "
                          "again") from exc
    classes, dim = len(meta.domains), meta.dim
    if (dim < 2 or dim & (dim - 1) or w.ndim != 2 or w.shape != (len(rows), classes) or bias.shape != (classes,)
            or (len(rows) and (rows.min() < 0 or rows.max() >= dim)) or not np.isfinite(w).all()):
        raise RouterError(f"{weights_path} does not match {meta_path} (shapes, indices or values); train the "
                          "router again")
    if not (math.isfinite(meta.temperature) and meta.temperature > 0) or not 0.0 <= meta.min_coverage <= 1.0:
        raise RouterError(f"{meta_path}: temperature must be a number above 0 and min_coverage in [0, 1] (got "
                          f"{meta.temperature}, {meta.min_coverage}); train the router again")
    try:
        meta.settings.checked()
    except ValueError as exc:
        raise RouterError(f"{meta_path}: {exc}") from exc
    weights = np.zeros((dim, classes), dtype=np.float32)
    weights[rows] = w
    return RouterModel(domains=tuple(meta.domains), weights=weights, bias=bias.astype(np.float32),
                       temperature=float(meta.temperature), meta=meta)


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
