"""The router's registry: a read-only view of the model store's specialists, the local generalist, and the
remote/cloud targets the user configured.

A specialist is routable only when the eval gate shipped it (store status `shipped`, or `routed-ship`: then only
inside its domain, which the policy enforces), it records a domain (`tinygpt route describe`), and its files
still resolve; the domain `general` is never a specialist's (its requests are the generalist's). Every specialist is listed with `why` it is or is not routable. Remote and cloud targets are
plain typed entries, off by default (`enabled=False`); the backends give them life. This module decides nothing
about a request (policy.py) and never writes the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from tinygpt.runtime.models import ModelLoadError
from tinygpt.runtime.store import DEFAULT, ModelStore

TargetKind = Literal["local", "remote", "cloud"]
GENERAL = "general"  # the labelled data's domain of requests for the generalist: never a specialist's
VERDICTS = {"shipped": "ship", "routed-ship": "routed-ship"}  # store status -> the gate verdict that makes it routable


class Target(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A configured route target other than the store's models: a remote OpenAI-compatible server or a cloud
    model, by the name of its backend. Off unless `enabled`; `low_confidence` lets it take the requests the
    router is unsure of (instead of the local generalist)."""

    name: str
    kind: TargetKind = "remote"
    enabled: bool = False
    low_confidence: bool = False


class Specialist(msgspec.Struct, frozen=True, kw_only=True):
    """A store specialist as the router sees it."""

    name: str
    base: str
    domain: str | None
    tools: list[str]
    provenance: dict[str, str]
    status: str           # the store's status: unrated | shipped | routed-ship | rejected | inconclusive | ...
    verdict: str | None   # ship | routed-ship when routable by verdict, else None
    routable: bool
    why: str              # why it is (or is not) routable
    created: str = ""


@dataclass(frozen=True)
class Registry:
    """What the router may route to. Build it with `load_registry` (it reads files); lookups are in memory."""

    specialists: tuple[Specialist, ...] = ()
    generalist: str = DEFAULT
    targets: tuple[Target, ...] = ()

    def __post_init__(self):
        by_domain: dict[str, list[Specialist]] = {}
        for s in self.specialists:
            if s.routable and s.domain:
                by_domain.setdefault(s.domain, []).append(s)
        for found in by_domain.values():  # ship before routed-ship, then the newest
            found.sort(key=lambda s: s.created, reverse=True)
            found.sort(key=lambda s: s.verdict != "ship")
        object.__setattr__(self, "_by_domain", {d: tuple(v) for d, v in by_domain.items()})

    def routable(self, domain: str) -> tuple[Specialist, ...]:
        """The specialists a request of `domain` may go to, best first (ship, then routed-ship; newest first)."""
        return self._by_domain.get(domain, ())

    def domains(self) -> list[str]:
        return sorted(self._by_domain)

    def low_confidence_target(self) -> Target | None:
        """The enabled target that takes low-confidence requests, if any (the first configured)."""
        return next((t for t in self.targets if t.enabled and t.low_confidence), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


def load_registry(store: ModelStore, *, generalist: str = DEFAULT, targets: tuple[Target, ...] | list = ()
                  ) -> Registry:
    """The registry view of `store` now (reads the registry file and checks each specialist's files)."""
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"route targets must have distinct names, got {', '.join(names)}")
    out = []
    for e in store.read().models:
        if e.kind != "specialist":
            continue
        verdict = VERDICTS.get(e.status)
        if verdict is None:
            problem = f"status {e.status!r}: only specialists the eval gate shipped (ship, routed-ship) are routed"
        elif not e.domain:
            problem = f"no domain recorded: `tinygpt route describe {e.name} --domain D` says what it is for"
        elif e.domain == GENERAL:
            problem = f"domain {GENERAL!r} is the generalist's (requests no specialist should take); describe a " \
                      "specialist by its own domain"
        else:
            problem = _files_problem(store, e.name)
        routable = problem is None
        why = problem or f"{verdict}: routed for domain {e.domain}" + (" only" if verdict == "routed-ship" else "")
        out.append(Specialist(name=e.name, base=e.base or "", domain=e.domain, tools=list(e.tools),
                              provenance=_provenance(e.provenance, e.path), status=e.status,
                              verdict=verdict if routable else None, routable=routable, why=why, created=e.created))
    return Registry(specialists=tuple(out), generalist=generalist, targets=tuple(targets))


def _files_problem(store: ModelStore, name: str) -> str | None:
    try:
        store.resolve(name)
    except (ModelLoadError, OSError) as exc:  # StoreError is a ModelLoadError
        return f"files missing: {exc}"
    return None


def _provenance(recorded: dict[str, str], path: str) -> dict[str, str]:
    """The store's provenance, plus what the adapter's tinygpt marker says made it (run, trainer), if any."""
    from tinygpt.runtime.presets import adapter_marker  # light: reads one JSON file

    marker = adapter_marker(path) or {}
    found = {k: str(marker[k]) for k in ("trained_by", "run", "fine_tune_type", "created") if marker.get(k)}
    return {**found, **recorded}
