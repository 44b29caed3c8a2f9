"""How a router is trained: feature width, optimizer, held-out shares, seed. A light module (no numpy), so
`tinygpt route train --help` shows the defaults without loading anything."""
from __future__ import annotations

from dataclasses import dataclass

from tinygpt.router.errors import RouterError


@dataclass(frozen=True)
class TrainOptions:
    dim: int = 2**15          # hashed feature buckets (a power of 2)
    l2: float = 1e-4
    steps: int = 300
    lr: float = 0.1
    calibration: float = 0.15  # share of each domain's groups held out to fit the temperature
    test: float = 0.15         # share held out to measure accuracy and ECE
    seed: int = 0
    text_only: bool = True     # also learn (and calibrate on) each request with tools as if it came without them
    balanced: bool = True      # each domain weighs alike in the loss, whatever its number of rows

    def checked(self) -> "TrainOptions":
        if self.dim < 16 or self.dim & (self.dim - 1):
            raise RouterError(f"dim must be a power of 2 >= 16, got {self.dim}")
        if self.steps < 1 or not self.lr > 0 or self.l2 < 0:
            raise RouterError("steps must be >= 1, lr > 0 and l2 >= 0")
        if not (0 <= self.calibration < 1 and 0 <= self.test < 1 and self.calibration + self.test < 1):
            raise RouterError("calibration and test are shares: each in [0, 1), together below 1")
        return self
