"""Make MLX's CPU backend use a fast BLAS without the user doing anything.

The Linux `mlx-cpu` wheel links a bundled reference BLAS (~7 GFLOP/s on a 1024^2 matmul on a 2-core box).
Loading a system OpenBLAS with RTLD_GLOBAL *before* `mlx` is first imported makes libmlx's cblas/lapack
symbols bind to OpenBLAS instead (~200 GFLOP/s, measured). This module only finds and loads the library and
reports what is in use; it never installs anything (`bootstrap.sh` does that with apt).
Set TINYGPT_BLAS=off to skip, or TINYGPT_BLAS=/path/to/libopenblas.so.0 to pick one.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from dataclasses import dataclass

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/*-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas*.so.0",
    "/usr/lib/libopenblas.so.0",
)


@dataclass(frozen=True)
class BlasStatus:
    """What `activate` did: the library loaded (or None) and why."""

    path: str | None
    reason: str


_status: BlasStatus | None = None


def find_openblas() -> str | None:
    """Return the path of a system OpenBLAS shared library, or None."""
    for pattern in _CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            if os.path.exists(path):
                return path
    name = ctypes.util.find_library("openblas")
    return name


def activate() -> BlasStatus:
    """Load OpenBLAS globally if on Linux, not disabled, and `mlx` is not imported yet. Idempotent."""
    global _status
    if _status is not None:
        return _status
    choice = os.environ.get("TINYGPT_BLAS", "auto")
    if not sys.platform.startswith("linux"):
        _status = BlasStatus(None, "not Linux: MLX uses Accelerate/Metal")
    elif choice == "off":
        _status = BlasStatus(None, "disabled by TINYGPT_BLAS=off")
    elif "mlx.core" in sys.modules and not loaded_openblas():
        _status = BlasStatus(None, "mlx was imported before tinygpt; import tinygpt first for fast BLAS")
    else:
        path = choice if choice != "auto" else find_openblas()
        if path is None:
            _status = BlasStatus(None, "no OpenBLAS found (apt-get install libopenblas0-pthread)")
        else:
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                _status = BlasStatus(path, "loaded")
            except OSError as exc:
                _status = BlasStatus(None, f"could not load {path}: {exc}")
    return _status


def loaded_openblas() -> str | None:
    """The OpenBLAS that serves MLX: the one `activate` loaded, else one mapped into this process (Linux).

    numpy's wheel maps its own `scipy_openblas64_` with renamed symbols; MLX cannot bind to it, so it is skipped.
    """
    if _status is not None and _status.path:
        return _status.path
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split()[-1]
                if "openblas" in path.lower() and "scipy_openblas" not in path:
                    return path
    except OSError:
        return None
    return None
