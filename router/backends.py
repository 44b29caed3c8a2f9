"""Named remote and cloud backends from backends.toml, and the guarded policy each one builds.

The file is $TINYGPT_BACKENDS or ~/.config/tinygpt/backends.toml (docs/backends.md has a full example). Each
`[backends.NAME]` table is one backend: `kind` openai-compatible | openai | anthropic, `model`, `base_url` (openai
and anthropic default to the providers' own), `api_key_env` (the NAME of the environment variable with the key;
required for openai and anthropic), `timeout`, `retries`, `backoff_s`, `max_backoff_s`, `enabled`, `fallback`
(another backend's name, or "local": the model loaded here), `redact` and `stream_usage`. `[prices]` overrides the shipped price
table, `[redact]` configures the built-in redactor. **Off by default**: a backend is used only when it is configured
and `enabled = true`; no file means no backends. Every problem is a `BackendError` with one line. Not here: the wire
(anthropic_policy.py, runtime/remote_policy.py), retries and fallback (guard.py).
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from tinygpt.router.guard import Backoff, GuardedPolicy
from tinygpt.router.local_policy import LOCAL
from tinygpt.router.prices import Price, parse_prices, shipped_prices
from tinygpt.router.redact import DEFAULT_RULES, RegexRedactor, Redactor

KINDS = ("openai-compatible", "openai", "anthropic")
DEFAULT_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class BackendError(ValueError):
    """backends.toml is unreadable or wrong, or a backend cannot be used as asked. The message is one line."""


@dataclass(frozen=True)
class Backend:
    """One configured backend (see the module docstring for the keys)."""

    name: str
    kind: str
    model: str
    base_url: str = ""
    api_key_env: str = ""
    timeout: float = 120.0
    retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    enabled: bool = False
    fallback: str = ""
    redact: bool = True
    stream_usage: bool = True  # openai kinds: ask for token counts (stream_options); false for a server refusing it

    @property
    def url(self) -> str:
        return self.base_url or DEFAULT_URLS.get(self.kind, "")


@dataclass
class Backends:
    """What backends.toml holds: the backends by name, the price table (shipped + the user's), the redactor."""

    path: Path | None
    backends: dict[str, Backend] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=shipped_prices)
    redactor: Redactor = field(default_factory=RegexRedactor)

    def get(self, name: str) -> Backend:
        """The backend `name`, which must be enabled."""
        if name not in self.backends:
            known = (f"configured: {', '.join(self.backends)}" if self.backends
                     else f"none is configured: {self.path or backends_path()} has none or does not exist")
            raise BackendError(f"no backend named {name!r} ({known}); see docs/backends.md")
        backend = self.backends[name]
        if not backend.enabled:
            raise BackendError(f"backend {name!r} is disabled: nothing is sent to {backend.url} until you set "
                               f"enabled = true in [backends.{name}] of {self.path}")
        return backend

    def policy(self, name: str, *, env=None, local=None, sleep=None, rng=None,
               _seen: tuple[str, ...] = ()) -> GuardedPolicy:
        """The guarded message policy of the enabled backend `name`, its fallback built the same way; `local`
        makes the local model's policy (LocalMessagePolicy) for a backend whose fallback is "local"."""
        backend = self.get(name)
        if name in _seen:
            raise BackendError(f"backend fallbacks loop: {' -> '.join(_seen + (name,))}")
        if backend.fallback == LOCAL:
            if local is None:
                raise BackendError(f"backend {name!r} falls back to the local model, and none can be loaded here")
            fallback = local()
        else:
            fallback = (self.policy(backend.fallback, env=env, local=local, sleep=sleep, rng=rng,
                                    _seen=_seen + (name,)) if backend.fallback else None)
        return guarded(backend, env=os.environ if env is None else env, prices=self.prices,
                       redactor=self.redactor if backend.redact else None, fallback=fallback, sleep=sleep, rng=rng)


def backends_path() -> Path:
    return Path(os.environ.get("TINYGPT_BACKENDS") or Path.home() / ".config" / "tinygpt" / "backends.toml")


def load_backends(path: Path | str | None = None) -> Backends:
    """backends.toml (default: backends_path()); a missing default file means no backends."""
    named = path is not None or bool(os.environ.get("TINYGPT_BACKENDS"))
    path = Path(path) if path is not None else backends_path()
    if not path.exists():
        if named:
            raise BackendError(f"{path} does not exist; create it (docs/backends.md) or unset TINYGPT_BACKENDS")
        return Backends(path=None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: not valid TOML ({exc})") from None
    return parse_backends(data, path)


def parse_backends(data: dict, path: Path) -> Backends:
    """Backends from the parsed TOML of `path` (named in every error)."""
    unknown = sorted(set(data) - {"backends", "prices", "redact"})
    if unknown:
        raise BackendError(f"{path}: unknown tables {unknown}; known: backends, prices, redact")
    table = data.get("backends", {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise BackendError(f"{path}: each backend is a table [backends.NAME]")
    out = Backends(path=path, backends={name: _backend(name, keys, path) for name, keys in table.items()})
    for backend in out.backends.values():
        if backend.fallback and backend.fallback not in out.backends and backend.fallback != LOCAL:
            raise BackendError(f"{path}: [backends.{backend.name}] fallback {backend.fallback!r} is not a "
                               "configured backend (nor \"local\", the model loaded here)")
        chain, at = [backend.name], backend
        while at.fallback and at.fallback != LOCAL:  # a loop would never answer: refuse it when the file is read
            if at.fallback in chain:
                raise BackendError(f"{path}: backend fallbacks loop: {' -> '.join(chain + [at.fallback])}; end the "
                                   "chain at a backend without a fallback")
            chain.append(at.fallback)
            at = out.backends[at.fallback]
    try:
        out.prices.update(parse_prices(data.get("prices", {}), f"{path} [prices]"))
        out.redactor = _redactor(data.get("redact", {}), path)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    return out


def _backend(name: str, keys: dict, path: Path) -> Backend:
    where = f"{path}: [backends.{name}]"
    if not _NAME.fullmatch(name) or name == LOCAL:
        raise BackendError(f"{where}: a backend name is letters, digits, '_', '.', '-' (and not {LOCAL!r}: a "
                           "fallback of that name is the model loaded here)")
    types = {f.name: type(f.default) for f in fields(Backend) if f.name != "name"}
    types.update(kind=str, model=str)
    unknown = sorted(set(keys) - set(types))
    if unknown:
        raise BackendError(f"{where}: unknown keys {unknown}; known: {sorted(types)}")
    missing = [k for k in ("kind", "model") if not keys.get(k)]
    if missing:
        raise BackendError(f"{where}: set {' and '.join(missing)} (kind is one of {', '.join(KINDS)})")
    values = {}
    for key, value in keys.items():
        want = types[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise BackendError(f"{where}: {key} must be {_TYPE_NAMES[want]}, got {value!r}")
        values[key] = value
    backend = Backend(name=name, **values)
    if backend.kind not in KINDS:
        raise BackendError(f"{where}: kind must be one of {', '.join(KINDS)}, got {backend.kind!r}")
    if backend.kind == "openai-compatible" and not backend.base_url:
        raise BackendError(f"{where}: an openai-compatible backend needs base_url, e.g. http://127.0.0.1:8000/v1")
    if backend.kind != "openai-compatible" and not backend.api_key_env:
        raise BackendError(f"{where}: a {backend.kind} backend needs api_key_env, the NAME of the environment "
                           "variable that holds the key")
    if not backend.timeout > 0 or backend.retries < 0 or backend.backoff_s < 0 or backend.max_backoff_s < 0:
        raise BackendError(f"{where}: timeout must be > 0 and retries, backoff_s, max_backoff_s >= 0")
    if not backend.url.startswith(("http://", "https://")):
        raise BackendError(f"{where}: base_url {backend.url!r} is not an http(s) URL")
    return backend


_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _redactor(table, path: Path) -> RegexRedactor:
    if not isinstance(table, dict) or set(table) - {"rules", "patterns"}:
        raise BackendError(f"{path}: [redact] takes rules = [built-in rule names] and patterns = [regexes]")
    rules, patterns = table.get("rules", list(DEFAULT_RULES)), table.get("patterns", [])
    if not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in (rules, patterns)):
        raise BackendError(f"{path}: [redact] rules and patterns are lists of strings")
    try:
        return RegexRedactor(rules, patterns)
    except ValueError as exc:
        raise BackendError(f"{path}: [redact] {exc}") from None


def guarded(backend: Backend, *, env, prices: dict[str, Price] | None = None, redactor: Redactor | None = None,
            fallback=None, sleep=None, rng=None) -> GuardedPolicy:
    """The policy that talks to `backend` (its key read from `env` now), behind the guard rails."""
    key = None
    if backend.api_key_env:
        key = env.get(backend.api_key_env)
        if not key:
            raise BackendError(f"backend {backend.name!r}: environment variable {backend.api_key_env} is not set "
                               "(or empty); export the key in it")
    try:
        if backend.kind == "anthropic":
            from tinygpt.router.anthropic_policy import AnthropicPolicy

            primary = AnthropicPolicy(backend.model, key, base_url=backend.url, timeout=backend.timeout)
        else:
            from tinygpt.runtime.remote_policy import OpenAIPolicy

            primary = OpenAIPolicy(backend.url, backend.model, api_key=key, timeout=backend.timeout,
                                   max_retries=0, include_usage=backend.stream_usage)
    except ValueError as exc:
        raise BackendError(f"backend {backend.name!r}: {exc}") from None
    extra = {k: v for k, v in (("sleep", sleep), ("rng", rng)) if v is not None}
    return GuardedPolicy(backend.name, primary, retries=backend.retries, fallback=fallback, redactor=redactor,
                         backoff=Backoff(backend.backoff_s, backend.max_backoff_s), prices=prices, **extra)
