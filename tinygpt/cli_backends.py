"""`tinygpt backends ls`: the backends configured in backends.toml, enabled or not, with host, model and price.

Reading the file sends nothing anywhere: listing never contacts a backend. Configuration: docs/backends.md.
"""
from __future__ import annotations

import argparse
import json
import sys

EPILOG = """examples:
  tinygpt backends ls             the configured backends: name, enabled, kind, host, model, USD per M tokens
  tinygpt backends ls --json      the same as JSON
  TINYGPT_BACKENDS=./b.toml tinygpt backends ls     another file
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt backends", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the configured backends")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    from tinygpt.router.backends import backends_path, load_backends
    from tinygpt.router.prices import price_for
    from tinygpt.runtime.remote_policy import server_address

    config = load_backends()
    rows = []
    for b in config.backends.values():
        price = price_for(config.prices, b.model)
        rows.append({"name": b.name, "enabled": b.enabled, "kind": b.kind, "host": server_address(b.url),
                     "model": b.model, "api_key_env": b.api_key_env or None, "fallback": b.fallback or None,
                     "price_usd_per_m": None if price is None else {"input": price.input, "output": price.output}})
    if a.json:
        print(json.dumps({"file": str(config.path) if config.path else None, "backends": rows}, indent=2))
        return 0
    if config.path is None:
        print(f"no backends configured ({backends_path()} does not exist): nothing leaves this machine. "
              "See docs/backends.md.")
        return 0
    print(f"backends in {config.path} (only enabled ones are ever contacted):")
    for r in rows:
        p = r["price_usd_per_m"]
        price = f"${p['input']:g} in / ${p['output']:g} out per M" if p else "no price"
        state = "enabled " if r["enabled"] else "disabled"
        print(f"  {r['name']:<14} {state} {r['kind']:<18} {r['host']:<34} {r['model']:<24} {price}")
    if not rows:
        print("  (none)")
    sys.stdout.flush()
    return 0
