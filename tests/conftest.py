"""Shared fixtures. Importing tinygpt first makes MLX bind to OpenBLAS (see tinygpt/blas.py)."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny test models decode ~3x faster on one BLAS thread

import tinygpt  # noqa: E402,F401  (must precede any mlx import)

import pytest
from hypothesis import settings

# CI runs each property test on the same examples every time (a red CI is then a real, reproducible failure);
# locally hypothesis keeps exploring new inputs.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-init tiny Qwen3 model with the small BPE vocabulary (seed 0)."""
    from tinygpt.runtime.presets import InitSpec, init_model

    return init_model(tmp_path_factory.mktemp("models") / "tiny", InitSpec(preset="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    return Engine(load(str(tiny_model_dir)))
