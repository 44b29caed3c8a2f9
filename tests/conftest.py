"""Shared fixtures. Importing tinygpt first makes MLX bind to OpenBLAS (see tinygpt/blas.py)."""
import tinygpt  # noqa: F401  (must precede any mlx import)
