"""tinygpt: a local factory for routed specialist LLMs, on MLX.

This package holds only the CLI and config; `tinygpt.runtime`, `tinygpt.tools`, ... are the top-level
folders of the repo mapped in by setuptools. Importing it first activates a fast BLAS for MLX on Linux.
"""
from tinygpt import blas as _blas

_blas.activate()

__version__ = "0.1.0"
