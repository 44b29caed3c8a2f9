"""The eval gate's config: margins and statistical settings, fixed in a TOML file before the runs.

Keys (all optional; these are the defaults):
    confidence = 0.95            family-wise confidence across the suites (Holm), and of every interval shown
    margin = 0.05                how much pass rate a guard suite may lose (0.05 = 5 points) and still hold
    min_tasks = 10               a suite with fewer tasks cannot decide anything
    power = 0.8                  for "how many more tasks would resolve it"
    bootstrap_resamples = 10000  paired-bootstrap resamples (K > 1 passes)
    seed = 0                     bootstrap seed
    [margins]                    per-suite margins, e.g. fileops = 0.03 (a name that is no suite is an error)
The gate records the file's SHA-256 (or, without a file, that of the defaults) in gate-result.json, and whether
the file was last changed before the first run it judges started. It does not compute anything.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

from tinygpt.evals.errors import EvalError

Margin = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class GateConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The gate's settings (see the module docstring)."""

    confidence: Annotated[float, msgspec.Meta(ge=0.5, lt=1.0)] = 0.95
    margin: Margin = 0.05
    margins: dict[str, Margin] = {}
    min_tasks: Annotated[int, msgspec.Meta(ge=1)] = 10
    power: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.8
    bootstrap_resamples: Annotated[int, msgspec.Meta(ge=100, le=1_000_000)] = 10_000
    seed: Annotated[int, msgspec.Meta(ge=0)] = 0

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    def margin_for(self, suite: str) -> float:
        return self.margins.get(suite, self.margin)


@dataclass(frozen=True)
class ConfigSource:
    """Where the config came from: the file (None: the defaults), its SHA-256 and its modification time."""

    path: str | None
    sha256: str
    mtime: float | None


def load_gate_config(path: str | Path | None) -> tuple[GateConfig, ConfigSource]:
    """The config in `path` (None: the defaults) and its source; EvalError naming the file for a bad one."""
    if path is None:
        config = GateConfig()
        return config, ConfigSource(None, hashlib.sha256(msgspec.json.encode(config)).hexdigest(), None)
    path = Path(path)
    try:
        data = path.read_bytes()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        raise EvalError(f"gate config {path} does not exist; write one (see `tinygpt eval-gate --help`) or leave "
                        "out --config for the defaults") from None
    except IsADirectoryError:
        raise EvalError(f"gate config {path} is a directory; give the TOML file") from None
    try:
        config = msgspec.toml.decode(data, type=GateConfig)
    except msgspec.DecodeError as exc:
        raise EvalError(f"gate config {path}: {exc}") from None
    from tinygpt.evals.suite import SUITES

    unknown = sorted(set(config.margins) - set(SUITES))
    if unknown:
        raise EvalError(f"gate config {path}: [margins] names {unknown[0]!r}, which is no suite; suites: "
                        f"{', '.join(SUITES)}")
    return config, ConfigSource(str(path), hashlib.sha256(data).hexdigest(), mtime)
