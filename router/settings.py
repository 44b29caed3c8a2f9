"""The routing policy's settings: thresholds, the generalist's name and the configured remote/cloud targets.

Saved in a router directory's router.json (train writes the defaults or what it was given; edit the file or
override per call). `ship`: the calibrated confidence a request must reach to go to a `ship` specialist of its
domain; `routed_ship`: the (stricter) one for a `routed-ship` specialist; `escalate_below`: under this
confidence a request goes to the enabled low-confidence target instead of the generalist (0: never).
This module only holds values and checks them.
"""
from __future__ import annotations

import msgspec

from tinygpt.router.registry import Target
from tinygpt.runtime.store import DEFAULT


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ship: float = 0.5
    routed_ship: float = 0.8
    escalate_below: float = 0.0
    generalist: str = DEFAULT
    targets: list[Target] = []

    def checked(self) -> "Settings":
        """Self, or ValueError with one line when a threshold is outside [0, 1] or a target name repeats."""
        for name in ("ship", "routed_ship", "escalate_below"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold {name.replace('_', '-')} must be between 0 and 1, got {value}")
        if self.routed_ship < self.ship:  # a routed-ship specialist is the less trusted: its bar is never lower
            raise ValueError(f"routed-ship ({self.routed_ship}) must be at least ship ({self.ship}): a routed-ship "
                             "specialist is trusted less than a ship one; raise --routed-ship or lower --ship")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"route targets must have distinct names, got {', '.join(names)}")
        if not self.generalist:
            raise ValueError("the generalist's name is empty; name the local model that takes general requests")
        return self
