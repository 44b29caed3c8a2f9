"""One forward pass of a base model for a batch whose rows use different LoRA/DoRA adapters (punica / S-LoRA style).

`MultiAdapter.attach(model)` turns every Linear that some attached adapter targets into a Linear that adds a
per-row delta: y_r = W x_r + scale_s * (x_r A_s) B_s, s = the row's adapter, with the adapters' A and B
stacked per layer and gathered per row by `mx.gather_mm`; a row without an adapter takes slot 0 with scale 0
(no zero slot is stored, so N adapters cost their own bytes). DoRA rows are also scaled by their magnitude
vector m_s / ||W + scale_s B_s^T A_s^T||, exactly as mlx-lm's DoRALinear does.
The row assignment comes from `multi.rows([...])` around a call, or travels with the KV cache as a trailing
`AdapterRows` entry (so mlx-lm's BatchGenerator filters, extends, merges and extracts it with the rows).
Adapters are mlx-lm's format (adapters.safetensors + adapter_config.json). Not done here: embedding or
MoE (SwitchLinear) adapters and full fine-tunes are refused; training; saving a cache with AdapterRows
(strip it with `split_rows` first). One thread owns the model: the row state is not thread-safe.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import make_prompt_cache

_LEAVES = ("lora_a", "lora_b", "m")


class AdapterError(ValueError):
    """An adapter cannot be attached or a row names an unknown adapter; the message says what to do."""


class AdapterRows:
    """A pseudo cache entry, last in a cache list, naming each batch row's adapter (None = the base alone).

    It implements the cache protocol mlx-lm's batch and generate code calls on every entry (state, merge,
    extend, filter, extract, prepare, finalize, trim, nbytes), so the names stay aligned with the KV rows.
    Duck-typed on purpose: mlx-lm's cache base class is private."""

    def __init__(self, names):
        self.names = list(names)

    @property
    def state(self):
        return []

    @classmethod
    def merge(cls, caches):
        return cls([n for c in caches for n in c.names])

    def extend(self, other):
        self.names.extend(other.names)

    def filter(self, batch_indices):
        self.names = [self.names[int(i)] for i in batch_indices]

    def extract(self, idx):
        return AdapterRows([self.names[idx]])

    def prepare(self, **_kwargs):
        pass

    def finalize(self):
        pass

    def is_trimmable(self):
        return True

    def trim(self, n):
        return n

    def size(self):
        return 0

    def empty(self):
        return True

    @property
    def nbytes(self):
        return 0


def split_rows(cache):
    """(the KV cache list without a trailing AdapterRows, the row names or None)."""
    if cache and isinstance(cache[-1], AdapterRows):
        return list(cache[:-1]), cache[-1].names
    return cache, None


class _Active:
    """The current call's rows, from slots (0: no adapter, i + 1: adapter i): the index into the A/B stacks,
    each row's scale (0 without an adapter), the index into DoRA gains (row 0 of those is all ones); or, when
    every row has the same adapter, just that slot (a plain matmul, as mlx-lm's LoRALinear does)."""

    def __init__(self, slots: list[int], scales: list[float]):
        self.n = len(slots)
        self.uniform = slots[0] if len(set(slots)) == 1 else None
        self.idx = mx.array([max(s - 1, 0) for s in slots], dtype=mx.uint32)
        self.gidx = mx.array(slots, dtype=mx.uint32)
        self.scale = mx.array([scales[s - 1] if s else 0.0 for s in slots], dtype=mx.float32)
        self.uniform_scale = scales[self.uniform - 1] if self.uniform else None


class _Stack:
    """One targeted Linear's adapters: a (S, in, r), b (S, r, out); g (S+1, out) DoRA gains, row 0 ones, or None.

    `views[i]` = (A_i, B_i, g_i) as views into the stacks (range slices share the buffer; `a[i]` would copy),
    so a batch of one adapter runs exactly mlx-lm's LoRALinear ops, with no per-call slicing."""

    def __init__(self, owner, a, b, g):
        self.owner, self.a, self.b, self.g = owner, a, b, g
        self.views: list[tuple] = []
        self.touched: list[bool] = [False] * len(a)  # per adapter: does it adapt this layer at all

    def refresh(self) -> None:
        self.views = [(mx.squeeze(self.a[i:i + 1], 0), mx.squeeze(self.b[i:i + 1], 0),
                       None if self.g is None else mx.squeeze(self.g[i + 1:i + 2], 0)) for i in range(len(self.a))]
        mx.eval(self.views)


def _multi_call(self, x):
    y = type(self).__mro__[1].__call__(self, x)
    stack = self._multi
    active = stack.owner._active
    if active is None:
        return y
    if x.shape[0] != active.n:
        raise ValueError(f"the batch has {x.shape[0]} rows but {active.n} adapter rows were given")
    if active.uniform is not None:
        if not stack.touched[active.uniform - 1]:
            return y  # this adapter leaves this layer alone, as mlx-lm's model of it does
        a, b, g = stack.views[active.uniform - 1]
        z = active.uniform_scale * ((x @ a) @ b)
    else:
        idx, rows = active.idx, x.reshape(x.shape[0], -1, x.shape[-1])  # (B, L, in): gather_mm's batch is B
        z = mx.gather_mm(mx.gather_mm(rows, stack.a, rhs_indices=idx), stack.b, rhs_indices=idx)
        z = (active.scale[:, None, None] * z).reshape(y.shape)
        g = None if stack.g is None else stack.g[active.gidx].reshape(x.shape[0], *([1] * (x.ndim - 2)), -1)
    out = y + z.astype(x.dtype)
    if g is not None:  # DoRA: rescale W x + delta (without the bias) by m / ||adapted W||, then add the bias
        bias = self["bias"] if "bias" in self else None
        out = g.astype(x.dtype) * (out if bias is None else out - bias)
        out = out if bias is None else out + bias
    return out


_CLASSES: dict[type, type] = {}


def _multi_class(cls: type) -> type:
    # A subclass swapped onto the existing object keeps its parameters' names and arrays (no copy, no rename).
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Multi{cls.__name__}", (cls,), {"__call__": _multi_call})
    return _CLASSES[cls]


def _dims(linear) -> tuple[int, int]:
    out_dims, in_dims = linear.weight.shape
    if isinstance(linear, nn.QuantizedLinear):
        in_dims = in_dims * 32 // linear.bits
    return in_dims, out_dims


def _dense_weight(linear):
    if isinstance(linear, nn.QuantizedLinear):
        return mx.dequantize(linear.weight, linear.scales, linear.biases, group_size=linear.group_size,
                             bits=linear.bits, mode=linear.mode)
    return linear.weight


def read_adapter(adapter_dir: str | Path) -> tuple[dict, dict[str, dict[str, mx.array]]]:
    """(adapter_config.json, {module path: {"lora_a", "lora_b"[, "m"]}}) of an mlx-lm adapter directory."""
    path = Path(adapter_dir)
    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        weights = mx.load(str(path / "adapters.safetensors"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{path} is not an mlx-lm adapter directory (adapter_config.json + "
                           f"adapters.safetensors): {exc}") from exc
    kind = config.get("fine_tune_type", "lora")
    if kind not in ("lora", "dora"):
        raise AdapterError(f"{path} is a {kind!r} fine-tune, not a LoRA/DoRA adapter; load it as a model of its own")
    parts: dict[str, dict] = {}
    for name, w in weights.items():
        module, _, leaf = name.rpartition(".")
        if leaf not in _LEAVES or (leaf == "m" and kind != "dora"):
            raise AdapterError(f"{path}: {name} is not a {kind} adapter tensor (expected *.lora_a, *.lora_b"
                               f"{', *.m' if kind == 'dora' else ''})")
        parts.setdefault(module, {})[leaf] = w
    need = {"lora_a", "lora_b"} | ({"m"} if kind == "dora" else set())
    for module, p in parts.items():
        if set(p) != need:
            raise AdapterError(f"{path}: {module} has {sorted(p)}, a {kind} layer needs {sorted(need)}")
    return config, parts


class MultiAdapter:
    """Adapters of one base, stacked per layer, applied per batch row. Build with `MultiAdapter.attach`."""

    def __init__(self, model):
        self.base = model
        self.names: list[str] = []
        self._scales: list[float] = []  # per adapter, from its adapter_config.json
        self._active: _Active | None = None
        self._stacks: dict[str, _Stack] = {}  # module path -> stack
        self._modules = dict(model.named_modules())
        self.model = RoutedModel(self)

    @classmethod
    def attach(cls, model, adapters: dict[str, str | Path] | None = None) -> "MultiAdapter":
        """Make `model` (an mlx-lm model, changed in place) serve `adapters` ({name: adapter dir}) per row."""
        multi = cls(model)
        for name, path in (adapters or {}).items():
            multi.add(name, path)
        return multi

    def add(self, name: str, adapter_dir: str | Path) -> None:
        """Load one adapter directory under `name` (a new slot in every stack; other slots unchanged)."""
        if name in self.names:
            raise AdapterError(f"an adapter named {name!r} is already attached; remove it first or pick another name")
        config, parts = read_adapter(adapter_dir)
        scale = float(config.get("lora_parameters", {}).get("scale", 20.0))
        new = {path: self._part(adapter_dir, path, p, scale) for path, p in parts.items()}
        for path in set(self._stacks) | set(new):
            self._grow(path, new.get(path))
        self.names.append(name)
        self._scales.append(scale)
        mx.eval([[s.a, s.b] + ([s.g] if s.g is not None else []) for s in self._stacks.values()])
        for stack in self._stacks.values():
            stack.refresh()

    def _part(self, adapter_dir, path: str, p: dict, scale: float) -> tuple:
        """(A, B, DoRA gain or None) for the Linear at `path`, checked against the base's shapes."""
        module = self._modules.get(path)
        if not isinstance(module, (nn.Linear, nn.QuantizedLinear)):
            what = "absent from this base" if module is None else f"a {type(module).__name__}"
            raise AdapterError(f"{adapter_dir}: {path} is {what}; only Linear layers of the same base can "
                               "be served per row (embedding and MoE adapters are not supported)")
        in_dims, out_dims = _dims(module)
        a, b = p["lora_a"], p["lora_b"]
        if a.ndim != 2 or b.ndim != 2 or a.shape != (in_dims, b.shape[0]) or b.shape[1] != out_dims:
            raise AdapterError(f"{adapter_dir}: {path} has lora_a {tuple(a.shape)} and lora_b {tuple(b.shape)}, "
                               f"which do not fit a {in_dims}->{out_dims} Linear: is it an adapter of another base?")
        if "m" not in p:
            return a, b, None
        w = _dense_weight(module).astype(mx.float32)
        adapted = w + (scale * b.T.astype(mx.float32)) @ a.T.astype(mx.float32)
        return a, b, p["m"].astype(mx.float32) / mx.linalg.norm(adapted, axis=1)

    def _grow(self, path: str, part) -> None:
        """Append one adapter's slot to `path`'s stack (zeros where the adapter leaves the layer alone)."""
        module, count = self._modules[path], len(self.names)
        in_dims, out_dims = _dims(module)
        stack = self._stacks.get(path)
        if stack is None:
            dtype = part[0].dtype
            stack = _Stack(self, mx.zeros((count, in_dims, 0), dtype), mx.zeros((count, 0, out_dims), dtype), None)
            self._stacks[path] = stack
            module.__class__ = _multi_class(type(module))
            module._multi = stack
        a, b, g = part if part is not None else (None, None, None)
        stack.touched.append(part is not None)
        rank = max(stack.a.shape[2], 0 if a is None else a.shape[1])
        pad_a = lambda t: mx.pad(t, [(0, 0)] * (t.ndim - 1) + [(0, rank - t.shape[-1])])  # noqa: E731
        pad_b = lambda t: mx.pad(t, [(0, 0)] * (t.ndim - 2) + [(0, rank - t.shape[-2]), (0, 0)])  # noqa: E731
        a_new = mx.zeros((1, in_dims, rank), stack.a.dtype) if a is None else pad_a(a.astype(stack.a.dtype))[None]
        b_new = mx.zeros((1, rank, out_dims), stack.b.dtype) if b is None else pad_b(b.astype(stack.b.dtype))[None]
        stack.a = mx.concatenate([pad_a(stack.a), a_new])
        stack.b = mx.concatenate([pad_b(stack.b), b_new])
        if g is not None or stack.g is not None:
            old = stack.g if stack.g is not None else mx.ones((count + 1, out_dims), mx.float32)
            stack.g = mx.concatenate([old, (g if g is not None else mx.ones((out_dims,), mx.float32))[None]])

    def remove(self, name: str) -> None:
        """Drop one adapter's slot from every stack (its memory is freed once no call holds it)."""
        if name not in self.names:
            raise AdapterError(f"no adapter named {name!r} is attached; attached: {', '.join(self.names) or 'none'}")
        gone = self.names.index(name)
        for stack in self._stacks.values():
            del stack.touched[gone]
        keep = mx.array([i for i in range(len(self.names)) if i != gone])
        gkeep = mx.array([i for i in range(len(self.names) + 1) if i != gone + 1])
        for stack in self._stacks.values():
            stack.a, stack.b = (stack.a[keep], stack.b[keep]) if len(self.names) > 1 else (stack.a[:0], stack.b[:0])
            stack.g = None if stack.g is None else stack.g[gkeep]
            stack.refresh()
        del self.names[gone], self._scales[gone]

    def detach(self) -> None:
        """Give the model back its plain Linears and drop every adapter."""
        for path in self._stacks:
            module = self._modules[path]
            module.__class__ = type(module).__mro__[1]
            del module._multi
        self._stacks.clear()
        self.names.clear()
        self._scales.clear()

    def slot(self, name: str | None) -> int:
        if name is None:
            return 0
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise AdapterError(f"unknown adapter {name!r}; attached: {', '.join(self.names) or 'none'}") from None

    @contextmanager
    def rows(self, names):
        """Within the block, a call of the model applies names[r]'s adapter (None: none) to batch row r."""
        slots = [self.slot(n) for n in names]
        before = self._active
        self._active = _Active(slots, self._scales) if any(slots) else None
        try:
            yield
        finally:
            self._active = before

    def make_cache(self, name: str | None = None, max_kv_size: int | None = None) -> list:
        """A one-row prompt cache for `name`'s requests: the base's KV caches plus a trailing AdapterRows."""
        self.slot(name)
        return make_prompt_cache(self.base, max_kv_size) + [AdapterRows([name])]

    def specialist(self, name: str) -> "RoutedModel":
        """A model that applies `name`'s adapter to every row (a cache's AdapterRows still win); shares the base."""
        self.slot(name)
        return RoutedModel(self, name)

    @property
    def nbytes(self) -> int:
        """Bytes the stacks hold: the adapters' A and B (zero-padded to a common rank and layer set), DoRA gains."""
        return sum(s.a.nbytes + s.b.nbytes + (s.g.nbytes if s.g is not None else 0)
                   for s in self._stacks.values())


class RoutedModel:
    """The base model as mlx-lm calls it (`model(tokens, cache=...)`); a cache list ending in AdapterRows picks
    each row's adapter, so it can be handed to mlx-lm's BatchGenerator or generate_step unchanged. Rows of a
    cache without AdapterRows use `name` (None: the base), so `multi.specialist(name)` is a one-adapter model."""

    def __init__(self, multi: MultiAdapter, name: str | None = None):
        self._multi, self._name = multi, name

    def __call__(self, inputs, cache=None, **kwargs):
        kv, names = split_rows(cache)
        names = [self._name] * inputs.shape[0] if names is None else names
        if len(names) != inputs.shape[0]:
            raise ValueError(f"the batch has {inputs.shape[0]} rows but its AdapterRows names {len(names)}")
        with self._multi.rows(names):
            return self._multi.base(inputs, cache=kv, **kwargs)

    def make_cache(self) -> list:
        return self._multi.make_cache(self._name)

    @property
    def layers(self):
        return self._multi.base.layers

    def __getattr__(self, name):
        if name == "_multi":  # not set yet (copy / pickle): no delegation loop
            raise AttributeError(name)
        return getattr(self._multi.base, name)
