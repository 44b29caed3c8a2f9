"""Record a gate verdict on the candidate in the model store, only if the store's model is the one evaluated.

The candidate's name is followed through aliases to its registered entry; its identity (base fingerprint, plus
adapter fingerprint) is recomputed from its files now and must equal the identity in the result rows — a model
retrained or re-pointed since its eval gets no verdict. The status written is STATUS[verdict]. Returns what
happened, in words; it never raises for a model it cannot record on (the verdict stands either way).
"""
from __future__ import annotations

from tinygpt.runtime.models import Identity, ModelLoadError, adapter_fingerprint, fingerprint
from tinygpt.runtime.store import ModelStore

STATUS = {"ship": "shipped", "routed-ship": "routed-ship", "reject": "rejected", "inconclusive": "inconclusive"}


def record_verdict(store: ModelStore, model: str, evaluated: str, verdict: str) -> str:
    """Set `model`'s status from `verdict` if its identity now is `evaluated`; a sentence saying what was done."""
    try:
        registry = store.read()
        name, seen = model, {model}
        while name in registry.aliases:
            name = registry.aliases[name]
            if name in seen:
                return f"not recorded: the alias {model!r} is part of a cycle"
            seen.add(name)
        if not any(e.name == name for e in registry.models):
            return (f"not recorded: {model!r} is not a registered model (register it with `tinygpt models add` to "
                    "keep verdicts)")
        resolved = store.resolve(name)
        now = Identity(fingerprint(resolved.base),
                       adapter_fingerprint(resolved.adapter) if resolved.adapter is not None else None).key
        if now != evaluated:
            return (f"not recorded: {name!r} is now {now}, but the results are of {evaluated} (its files changed "
                    "since the eval); evaluate it again")
        store.set_status(name, STATUS[verdict])
    except (ModelLoadError, OSError) as exc:  # StoreError is a ModelLoadError
        return f"not recorded: {exc}"
    return f"recorded: {name} status = {STATUS[verdict]}"
