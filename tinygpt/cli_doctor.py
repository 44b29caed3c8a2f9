"""`tinygpt doctor`: what MLX runs on here, which BLAS it uses, and how fast a matmul really is.

Reports only; it changes nothing. A table on a terminal, plain `key: value` lines when piped, JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from tinygpt import blas


def measure_matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n float32 matmul on MLX's default device."""
    import mlx.core as mx

    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a, b, a @ b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mx.eval(a @ b)
        times.append(time.perf_counter() - t)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e9


def report() -> dict:
    import mlx.core as mx

    status = blas.activate()
    device = mx.default_device()
    info = {
        "tinygpt": __import__("tinygpt").__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "mlx": mx.__version__,
        "device": str(device),
        "blas": blas.loaded_openblas() or ("Accelerate" if platform.system() == "Darwin" else "bundled reference"),
        "blas_note": status.reason,
        "matmul_1024_gflops": round(measure_matmul_gflops(), 1),
    }
    try:
        import mlx_lm

        info["mlx_lm"] = mlx_lm.__version__
    except ImportError:
        info["mlx_lm"] = "not installed"
    return info


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt doctor", description=__doc__,
                                epilog="A fast CPU path shows ~100+ GFLOP/s; ~5-10 means the slow bundled BLAS: "
                                       "install libopenblas0-pthread (apt) or run ./bootstrap.sh setup.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = p.parse_args(argv)
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    slow = "bundled" in info["blas"] and info["device"].startswith("Device(cpu")
    advice = "MLX is using its slow bundled BLAS. Install OpenBLAS: apt-get install libopenblas0-pthread"
    if not sys.stdout.isatty():  # piped: plain `key: value` lines, never wrapped mid-path
        print("\n".join(f"{k}: {v}" for k, v in info.items()) + (f"\n{advice}" if slow else ""))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tinygpt doctor", show_header=False)
    for k, v in info.items():
        table.add_row(k, str(v))
    Console().print(table)
    if slow:
        Console().print(f"[yellow]{advice}[/yellow]")
    return 0
