"""Named toolsets: `load_toolset(spec)` turns a spec string from the CLI or a config into a Toolset.

Specs: `fs:virtual` (the embedded default world), `fs:virtual:<file.json>` (a BFCL initial_config, or just
its GorillaFileSystem part), `fs:<dir>` (a real directory, read-write) and `fs:<dir>:ro` (read-only); the tool
world's other domains: `calendar` and `shop` (a small demo calendar or shop, in memory), or `calendar:<file.json>`
and `shop:<file.json>` (its initial state, as the domain's `to_config()` writes it).
A bad spec is a `ToolsetSpecError` saying what was wrong and listing the valid forms. It does NOT build
grammars or run tools.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from tinygpt.tools.fs_real import RealFileSystem
from tinygpt.tools.fs_tools import FileSystem, fs_toolset
from tinygpt.tools.fs_virtual import VirtualFileSystem
from tinygpt.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, Toolset
from tinygpt.tools.worlds import default_world

SPEC_FORMS = ("fs:virtual, fs:virtual:<initial_config.json>, fs:<dir>, fs:<dir>:ro, calendar, calendar:<state.json>, "
              "shop, shop:<state.json>")


class ToolsetSpecError(ValueError):
    """A toolset spec that names nothing usable."""


def load_toolset(spec: str, *, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> Toolset:
    """The Toolset named by `spec` (see the module docstring for the forms)."""
    domain = spec.split(":", 1)[0] if isinstance(spec, str) else ""
    if domain in ("calendar", "shop"):
        return _domain_toolset(spec, domain, timeout_s=timeout_s, max_output_chars=max_output_chars)
    return fs_toolset(open_filesystem(spec), timeout_s=timeout_s, max_output_chars=max_output_chars, brief=True)


def open_filesystem(spec: str) -> FileSystem:
    """The file-system backend named by `spec`, for callers that also need its state (evals, demos)."""
    if not isinstance(spec, str) or not spec.startswith("fs:") or spec == "fs:":
        raise ToolsetSpecError(f"unknown toolset spec {spec!r}; expected one of: {SPEC_FORMS}")
    rest = spec[len("fs:"):]
    if rest == "virtual":
        return VirtualFileSystem.from_bfcl(default_world())
    if rest.startswith("virtual:"):
        return VirtualFileSystem.from_bfcl(_read_config(rest[len("virtual:"):]))
    read_only = rest.endswith(":ro")
    directory = rest[: -len(":ro")] if read_only else rest.removesuffix(":rw")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ToolsetSpecError(f"toolset spec {spec!r}: '{directory}' is not an existing directory; "
                               f"create it or fix the path (forms: {SPEC_FORMS})")
    return RealFileSystem(path, read_only=read_only)


def _domain_toolset(spec: str, domain: str, **limits) -> Toolset:
    """The calendar or shop toolset on its demo state, or on the state in `<domain>:<file.json>`."""
    if domain == "calendar":
        from tinygpt.tools.calendar_api import Calendar as Backend, calendar_toolset as toolset, demo_config
    else:
        from tinygpt.tools.shop_api import Shop as Backend, demo_config, shop_toolset as toolset
    file = spec[len(domain) + 1:] if spec.startswith(domain + ":") else ""
    if spec not in (domain, f"{domain}:") and not file:
        raise ToolsetSpecError(f"unknown toolset spec {spec!r}; expected one of: {SPEC_FORMS}")
    if not file:
        return toolset(Backend.from_config(demo_config()), **limits)
    path = Path(file).expanduser()
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return toolset(Backend.from_config(config), **limits)
    except FileNotFoundError:
        raise ToolsetSpecError(f"{spec}: no such file; give a JSON {domain} state") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise ToolsetSpecError(f"{spec}: not a {domain} state ({exc})") from None


def _read_config(file: str) -> dict:
    path = Path(file).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolsetSpecError(f"fs:virtual:{file}: no such file; give a JSON initial_config") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToolsetSpecError(f"fs:virtual:{file}: cannot read it as JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("initial_config"), dict):
        data = data["initial_config"]  # a whole BFCL task line
    if isinstance(data, dict) and "GorillaFileSystem" in data:
        data = data["GorillaFileSystem"]
    if not isinstance(data, dict) or "root" not in data:
        raise ToolsetSpecError(f"fs:virtual:{file}: expected a BFCL initial_config (with a "
                               "\"GorillaFileSystem\" key) or its file-system part (with a \"root\" key)")
    try:
        VirtualFileSystem.from_bfcl(data)
    except ValueError as exc:
        raise ToolsetSpecError(f"fs:virtual:{file}: {exc}") from None
    return data
