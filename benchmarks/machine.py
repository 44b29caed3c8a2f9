"""Machine facts every benchmark JSON carries, so a number is never quoted without where it ran."""
from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    import mlx.core as mx

    from tinygpt import blas

    info = {"platform": f"{platform.system()} {platform.machine()}", "python": platform.python_version(),
            "cpus": os.cpu_count(), "mlx": mx.__version__, "device": str(mx.default_device()),
            "blas": blas.loaded_openblas() or "bundled/Accelerate"}
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if "gpu" in info["device"]:
        try:
            info["gpu"] = mx.device_info().get("device_name", "gpu")
        except (AttributeError, RuntimeError):
            info["gpu"] = "gpu"
    return info


def write_result(path: str, result: dict) -> None:
    """Write a benchmark's JSON (making its folder) and say where."""
    import json
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
