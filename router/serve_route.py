"""A saved router ready to route live requests: the server's `model: "auto"` and `tinygpt agent --router`.

`load_request_router(directory, store, generalist=..., backends=...)` loads the router (model.py), views the
model store (registry.py) and makes each remote/cloud target live only when it is enabled twice: in the router's
settings (`targets`) and as a backend in backends.toml (`enabled = true`). A target whose backend is missing or
disabled is routed as disabled, so nothing leaves the machine unless the user turned the backend on. The guarded
policy of each live target is built once, here (a missing key is an error now, not at the first request).
`RequestRouter.decide(messages, tools)` is the Decision (policy.py) for one request; `policy_for(decision)` is the
message policy of a remote/cloud decision (None for a store model). Not here: HTTP (web/), the agent REPL.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from tinygpt.router.backends import Backends, BackendError, load_backends
from tinygpt.router.features import request_from
from tinygpt.router.model import RouterModel, load
from tinygpt.router.policy import Decision, decide
from tinygpt.router.registry import Registry, Target, load_registry
from tinygpt.router.settings import Settings
from tinygpt.runtime.store import ModelStore

STORE_KINDS = ("specialist", "generalist")  # decisions served by a model of the store; the rest by a backend


@dataclass
class RequestRouter:
    """A loaded router, the registry it routes over, and the live policies of its enabled targets."""

    directory: Path
    model: RouterModel
    registry: Registry
    settings: Settings
    policies: dict = field(default_factory=dict)  # target name -> GuardedPolicy (enabled targets only)

    @property
    def id(self) -> str:
        return self.model.id

    def decide(self, messages: list[dict] | None = None, tools: list | None = None, text: str | None = None
               ) -> Decision:
        """Where a request (OpenAI chat messages and tools, or plain text) goes; ValueError (one line) for a
        request whose shape cannot be read. Only user and system text and tool names are read (features.py):
        tool results never decide a route."""
        return decide(request_from(messages, tools, text), self.model, self.registry, self.settings)

    def policy_for(self, decision: Decision):
        """The guarded message policy serving a remote/cloud decision; None when a store model serves it."""
        if decision.kind in STORE_KINDS:
            return None
        policy = self.policies.get(decision.route)
        if policy is None:  # decide() only picks enabled targets, and every enabled one has a policy
            raise BackendError(f"route target {decision.route!r} has no enabled backend")
        return policy


def why_off(target: Target, backends: Backends) -> str | None:
    """Why `target` is off (None: it is live): it must be enabled in the router's settings and its backend of the
    same name configured and enabled in backends.toml."""
    where = backends.path or "backends.toml"
    backend = backends.backends.get(target.name)
    if not target.enabled:
        return "disabled in router.json (settings.targets: enabled = false)"
    if backend is None:
        return f"no backend named {target.name!r} in {where}"
    if not backend.enabled:
        return f"backend {target.name!r} is disabled in {where}"
    return None


def live_targets(targets: list[Target], backends: Backends) -> tuple[Target, ...]:
    """The router's targets, each enabled only if its backend is configured and enabled in backends.toml too."""
    return tuple(msgspec.structs.replace(t, enabled=why_off(t, backends) is None) for t in targets)


def load_request_router(directory: str | Path, store: ModelStore, *, generalist: str | None = None,
                        backends: Backends | None = None, local=None, env=None, model: RouterModel | None = None
                        ) -> RequestRouter:
    """The router saved in `directory` (`model`: it, loaded already) over `store`; `generalist` overrides the
    router's own (settings). A RouterError or BackendError (one line) when the router, the settings or an enabled
    backend cannot be used."""
    model = model or load(directory)
    settings = model.meta.settings
    if generalist:
        settings = msgspec.structs.replace(settings, generalist=generalist)
    backends = backends if backends is not None else load_backends()
    targets = live_targets(list(settings.targets), backends)
    settings = msgspec.structs.replace(settings, targets=list(targets))
    policies = {t.name: backends.policy(t.name, local=local, env=env) for t in targets if t.enabled}
    registry = load_registry(store, generalist=settings.generalist, targets=targets)
    return RequestRouter(directory=Path(directory), model=model, registry=registry, settings=settings,
                         policies=policies)


def describe(decision: Decision) -> str:
    """One line for a person or a response header: `route (kind); score=..; threshold=..; reason=..`."""
    threshold = "" if decision.threshold is None else f"; threshold={decision.threshold:g}"
    return (f"{decision.route} ({decision.kind}); domain={decision.domain}; score={decision.score:.3f}{threshold}; "
            f"reason={decision.reason}")
