"""The model provider: loads models by name (through the store) and holds each until every name that asked for
it has let go.

`ModelProvider(store)`; `get(name)` returns a `LoadedModel`, loading it on first use; `unload(name)` lets go of
it. A base is loaded once and shared: every specialist on it reuses the base's weight arrays
(models.attach_adapter), so a specialist costs only its adapter's bytes. A model is held while some name that
asked for it is not unloaded (an alias and its target are two names of one model); a base is also held while
any specialist on it is. `footprint(base, adapter)` says what a model will occupy before it is loaded (the
safetensors headers under the load dtype policy), so a caller can make room first.
Not here: deciding which models stay loaded. The memory budget, least-recently-used order and keep-alive are
the scheduler's (scheduler.py), the one place that knows which models have work in flight; a second policy here
would fight it. Thread-safe (one lock; a load holds it). It does not generate or schedule.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tinygpt.runtime.models import LoadedModel, ModelLoadError, attach_adapter, load_base, upcasts_to_float32
from tinygpt.runtime.store import ModelStore, Resolved

Key = tuple[Path, "Path | None"]  # (base directory, adapter directory or None), both resolved
_HALF_WIDTH = ("BF16", "F16")  # safetensors dtypes the dtype policy may widen to float32


@dataclass
class _Slot:
    loaded: LoadedModel
    nbytes: int  # bytes this slot adds: all weights for a base, the adapter's own arrays for a specialist
    holders: set[str] = field(default_factory=set)  # names that asked for it and have not unloaded it


@dataclass(frozen=True)
class Held:
    """One model the provider holds (for `loaded()`)."""

    name: str
    names: tuple[str, ...]  # the names holding it; empty for a base held only for its specialists
    key: str  # identity key
    base: Path
    adapter: Path | None
    nbytes: int


def unique_nbytes(models, exclude: set[int] | None = None) -> int:
    """Bytes of the distinct weight arrays of `models` (an array shared by several is counted once)."""
    from mlx.utils import tree_flatten

    seen = set(exclude or ())
    total = 0
    for model in models:
        for _, a in tree_flatten(model.parameters()):
            if id(a) not in seen:
                seen.add(id(a))
                total += a.nbytes
    return total


def _array_ids(model) -> set[int]:
    return set(weight_arrays(model))


def weight_arrays(model) -> dict[int, int]:
    """{id: bytes} of a model's weight arrays, to count arrays shared between models once by merging these.
    The ids stay valid while the model holds its arrays."""
    from mlx.utils import tree_flatten

    return {id(a): a.nbytes for _, a in tree_flatten(model.parameters())}


def footprint(base: Path, adapter: Path | None = None) -> dict[str, int]:
    """What a model will occupy in memory once loaded, before loading it: {resolved directory: bytes} for its
    base's weights and (a specialist) its adapter's, base first. Read from the safetensors headers under the dtype
    policy (models.upcasts_to_float32); equal to the loaded arrays' bytes for the models tinygpt makes."""
    base = Path(base).resolve()
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {base / 'config.json'}: {exc}") from exc
    widen = upcasts_to_float32(config)
    out = {str(base): sum(_tensor_bytes(f, widen) for f in sorted(base.glob("model*.safetensors")))}
    if adapter is not None:
        adapter = Path(adapter).resolve()
        out[str(adapter)] = _tensor_bytes(adapter / "adapters.safetensors", widen)
    return out


def _tensor_bytes(path: Path, widen: bool) -> int:
    """The bytes of the tensors in one safetensors file, half-width ones doubled when `widen`."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        total = 0
        for name, t in header.items():
            if name != "__metadata__":
                begin, end = t["data_offsets"]
                total += (end - begin) * (2 if widen and t["dtype"] in _HALF_WIDTH else 1)
        return total
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                             "re-create or re-download the model") from exc


class ModelProvider:
    """Loads by name and holds what was asked for until `unload`."""

    def __init__(self, store: ModelStore | None = None):
        self.store = store or ModelStore()
        self._slots: dict[Key, _Slot] = {}
        self._lock = threading.RLock()

    def get(self, name: str) -> LoadedModel:
        """The model `name` means, loaded (once) and held for `name` until `unload(name)`."""
        with self._lock:
            r = self.store.resolve(name)
            base_key: Key = (r.base.resolve(), None)
            key: Key = (base_key[0], r.adapter.resolve() if r.adapter is not None else None)
            if key not in self._slots:
                self._load(key, base_key, r)
            slot = self._slots[key]
            slot.holders.add(name)
            return slot.loaded if slot.loaded.name == r.name else dataclasses.replace(slot.loaded, name=r.name)

    def _load(self, key: Key, base_key: Key, r: Resolved) -> None:
        if base_key not in self._slots:
            base = load_base(r.base, name=r.base_name)
            self._slots[base_key] = _Slot(base, unique_nbytes([base.model]))
        if r.adapter is None:
            return
        base = self._slots[base_key].loaded
        try:
            spec = attach_adapter(base, r.adapter, name=r.name)
        except BaseException:
            self._collect()  # a base loaded only for this specialist is not kept
            raise
        self._slots[key] = _Slot(spec, unique_nbytes([spec.model], exclude=_array_ids(base.model)))

    def base(self, loaded: LoadedModel) -> LoadedModel:
        """The held base that `loaded` (a specialist this provider gave out) runs on: the one copy of its weights."""
        with self._lock:
            slot = self._slots.get((Path(loaded.path).resolve(), None))
            if slot is None:
                raise RuntimeError(f"{loaded.name}'s base {loaded.path} is not held by this provider; get the "
                                   "specialist from it first")
            return slot.loaded

    def unload(self, name: str) -> bool:
        """Let go of what `name` holds; a model nothing holds any more is dropped (a base once its last specialist
        is). Memory returns once callers (lanes, sessions) drop their references too. False if `name` held nothing."""
        with self._lock:
            held = [s for s in self._slots.values() if name in s.holders]
            for slot in held:
                slot.holders.discard(name)
            self._collect()
            return bool(held)

    def _collect(self) -> None:
        specialists = {k for k, s in self._slots.items() if k[1] is not None and s.holders}
        bases_in_use = {(k[0], None) for k in specialists}
        self._slots = {k: s for k, s in self._slots.items() if k in specialists or k in bases_in_use
                       or (k[1] is None and s.holders)}

    def held_bytes(self) -> int:
        """Bytes of weights held (each shared array once)."""
        with self._lock:
            return sum(s.nbytes for s in self._slots.values())

    def loaded(self) -> list[Held]:
        """What is held, in load order."""
        with self._lock:
            return [Held(name=s.loaded.name, names=tuple(sorted(s.holders)), key=s.loaded.fingerprint, base=k[0],
                         adapter=k[1], nbytes=s.nbytes) for k, s in self._slots.items()]
