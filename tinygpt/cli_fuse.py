"""`tinygpt fuse`: fuse an adapter into its base model, writing a standalone model directory.

The adapter is a run's adapter/ (LoRA, DoRA or full, mlx-lm's format) or a registered specialist's. The output
directory must be new or empty; --force replaces only a model directory tinygpt made, never anything else.
The fused model keeps the base's tokenizer files byte for byte (same tokenizer hash). Work: trainer/fuse.py.
"""
from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  tinygpt fuse --model models/tiny --adapter runs/spec/adapter --out models/tiny-spec
  tinygpt fuse --model my-spec --out models/my-spec      a registered specialist (base + adapter)
  tinygpt fuse --model q4 --adapter runs/x/adapter --out models/q4-x --dequantize --register q4-x
  mlx_lm.generate --model models/tiny-spec --prompt hi   the result is a plain mlx-lm model directory
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt fuse", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True,
                   help="the base model (name, directory or hub id), or a registered specialist")
    p.add_argument("--adapter", default=None, help="adapter directory (default: the specialist's own)")
    p.add_argument("--out", required=True, help="the new model directory")
    p.add_argument("--dequantize", action="store_true", help="write a quantized base's fused weights unquantized")
    p.add_argument("--force", action="store_true", help="replace --out if it is a model directory tinygpt made")
    p.add_argument("--register", default=None, metavar="NAME", help="register the fused model under NAME")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    from tinygpt.runtime.store import ModelStore
    from tinygpt.trainer.errors import TrainError
    from tinygpt.trainer.fuse import fuse

    store = ModelStore()
    resolved = store.resolve(a.model)
    adapter = a.adapter or resolved.adapter
    if adapter is None:
        raise TrainError(f"{a.model} is a base model; name the adapter with --adapter (e.g. RUN/adapter)")
    if a.register and a.register in store.names():
        raise TrainError(f"--register {a.register!r}: the name is taken in the model store; choose another")
    out = fuse(resolved.base, adapter, a.out, force=a.force, dequantize=a.dequantize)
    registered = store.add(a.register, out).name if a.register else None
    result = {"path": str(out), "base": str(resolved.base), "adapter": str(adapter), "registered": registered}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"fused {adapter} into {resolved.base}: {out}" + (f" (registered as {registered})" if registered else ""))
    return 0
