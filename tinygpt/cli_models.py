"""`tinygpt models`: list, show, register, alias, pull and remove models in the model store (runtime/store.py).

The registry lists base models, adapters and specialists (base + adapter) with a status field that the eval
gate and router fill; every command that takes `--model` reads it. `rm` unregisters; it deletes files only of a
directory tinygpt itself created inside its cache. Output is plain text (readable when piped) or `--json`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  tinygpt models ls                                   every model, adapter, specialist and alias
  tinygpt models ls --json
  tinygpt models add q06 models/q06                   register a model directory under a name
  tinygpt models add my-spec --base q06 --adapter runs/x/adapter
                                                      a specialist: base + an mlx-lm adapter directory
  tinygpt models alias fav my-spec                    `--model fav` now means my-spec
  tinygpt models show my-spec                         paths, identity (base and adapter fingerprints), status
  tinygpt models pull mlx-community/Qwen3-0.6B-4bit   fetch from the Hugging Face hub and register
  tinygpt models rm fav                               unregister (never deletes your files)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt models", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{ls,show,add,alias,pull,rm} (default: ls)")
    ls = sub.add_parser("ls", help="list models, adapters, specialists and aliases")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = sub.add_parser("show", help="what a name resolves to, with its identity")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    add = sub.add_parser("add", aliases=["register"], help="register a model directory, or a specialist")
    add.add_argument("name", help="the new name (letters, digits, . _ -)")
    add.add_argument("path", nargs="?", default=None, help="a model directory (or an adapter directory with --base)")
    add.add_argument("--base", default=None, help="the base model of an adapter (a name, directory or hub id)")
    add.add_argument("--adapter", default=None,
                     help="an adapter directory (adapters.safetensors + adapter_config.json)")
    add.add_argument("--kind", choices=["adapter", "specialist"], default=None,
                     help="for an adapter: register it as an adapter or a specialist (default specialist)")
    alias = sub.add_parser("alias", help="make NAME mean TARGET")
    alias.add_argument("name")
    alias.add_argument("target")
    pull = sub.add_parser("pull", help="fetch a hub model (through huggingface_hub) and register it")
    pull.add_argument("hub_id", help="org/name on the Hugging Face hub")
    pull.add_argument("--name", default=None, help="register under this name (default: the part after '/')")
    rm = sub.add_parser("rm", help="unregister a name (files are deleted only for tinygpt-made dirs in its cache)")
    rm.add_argument("name")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    a, extra = p.parse_known_args(argv or ["ls"])  # `tinygpt models` alone lists, as `ls`
    if a.cmd in ("add", "register") and a.path is None and len(extra) == 1 and not extra[0].startswith("-"):
        a.path = extra[0]  # `add NAME --base B DIR`: the optional positional may follow the options
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if a.cmd in ("add", "register"):
        if (a.path is None) == (a.adapter is None):
            p.error("add takes a directory: `add NAME DIR`, or `add NAME --base BASE --adapter DIR`")
        if a.adapter is not None and a.base is None:
            p.error("--adapter needs --base: the base model the adapter was trained on")
    from tinygpt.runtime.store import ModelStore

    store = ModelStore()
    return {"ls": _ls, "show": _show, "add": _add, "register": _add, "alias": _alias, "pull": _pull,
            "rm": _rm}[a.cmd](store, a)


def _rows(store) -> list[dict]:
    rows = []
    for e in store.entries():
        rows.append({"name": e.name, "kind": e.kind, "status": e.status, "base": e.base, "path": e.path,
                     "exists": Path(e.path).is_dir(), "created": e.created, "source": e.source})
    return rows


def _ls(store, a) -> int:
    rows, aliases = _rows(store), store.read().aliases
    if a.json:
        print(json.dumps({"models": rows, "aliases": aliases}, indent=2))
        return 0
    table = [("NAME", "KIND", "STATUS", "BASE", "PATH")]
    for r in rows:
        where = r["path"] + ("" if r["exists"] else "  (missing)")
        table.append((r["name"], r["kind"], r["status"], r["base"] or "-", where))
    table += [(name, "alias", "-", "-", f"-> {target}") for name, target in sorted(aliases.items())]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def _show(store, a) -> int:
    from tinygpt.runtime.models import Identity, adapter_fingerprint, fingerprint
    from tinygpt.runtime.presets import is_random_init

    r = store.resolve(a.name)
    entry = store.entry(a.name)
    alias = store.read().aliases.get(a.name)
    exists = (r.base / "config.json").is_file()
    ident = Identity(fingerprint(r.base), adapter_fingerprint(r.adapter) if r.adapter else None) if exists else None
    info = {"name": a.name, "kind": entry.kind if entry else ("alias" if alias else
                                                              "specialist" if r.adapter else "base"),
            "alias_of": alias, "status": entry.status if entry else None, "base": str(r.base),
            "adapter": str(r.adapter) if r.adapter else None, "identity": ident.key if ident else None,
            "base_fingerprint": ident.base if ident else None, "adapter_fingerprint": ident.adapter if ident else None,
            "random_init": is_random_init(r.base) if exists else None,
            "created": entry.created if entry else None, "source": entry.source if entry else None}
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if v is not None:
            print(f"{k + ':':<21}{v}")
    if not exists:
        print(f"note: no model at {r.base} (no config.json)")
    return 0


def _add(store, a) -> int:
    if a.adapter is not None:
        e = store.add(a.name, a.adapter, base=a.base, kind=a.kind)
    else:
        e = store.add(a.name, a.path, base=a.base, kind=a.kind)
    print(f"registered {e.kind} {e.name} -> {e.path}" + (f" (base {e.base})" if e.base else ""))
    return 0


def _alias(store, a) -> int:
    store.alias(a.name, a.target)
    print(f"{a.name} -> {a.target}")
    return 0


def _pull(store, a) -> int:
    e = store.pull(a.hub_id, a.name)
    print(f"pulled {a.hub_id} as {e.name} -> {e.path}")
    return 0


def _rm(store, a) -> int:
    kind, deleted = store.remove(a.name)
    if kind == "alias":
        print(f"removed alias {a.name}")
    elif deleted is not None:
        print(f"removed {kind} {a.name} and deleted {deleted} (tinygpt created it)")
    else:
        print(f"unregistered {kind} {a.name}; its files were left in place", file=sys.stdout)
    return 0
