"""BFCL's own code and data, from the pinned `bfcl-eval` wheel: importable as it is, or fetched once into the cache.

`require()` makes `bfcl_eval` importable at the pinned version: the installed package if there is one (bootstrap.sh
installs it), else the wheel unpacked under tinygpt's cache, else `pip download --no-deps` of the wheel into that
cache first. Only BFCL's data, backend classes and multi-turn checker are used, and those need nothing beyond the
standard library but `mpmath` (and `filelock`, which tinygpt's dependencies bring). `handler_functions()` gives the
few plain functions of BFCL's `model_handler/utils.py` the harness calls (tool schemas, call strings, the
prompting format's system prompt and parser), taken from the wheel's own source: that module imports the
tree-sitter Java/JavaScript parsers at its top, which a `--no-deps` wheel does not have and these functions never
reach for Python calls. Nothing here re-implements BFCL.
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from tinygpt.evals.errors import EvalError

VERSION = "2026.3.23"
PIN = f"bfcl-eval=={VERSION}"
HANDLER_FUNCTIONS = (
    "_cast_to_openai_type", "convert_to_tool", "convert_to_function_call", "ast_parse", "resolve_ast_call",
    "resolve_ast_by_type", "default_decode_execute_prompting", "parse_nested_value",
    "decoded_output_to_execution_list", "system_prompt_pre_processing_chat_model", "formulate_system_prompt",
    "format_function_doc", "_generate_function_doc_xml", "_generate_function_doc_python",
    "parse_prompt_variation_params",
)


def cache_path() -> Path:
    """Where the unpacked wheel lives when bfcl-eval is not installed."""
    from tinygpt.runtime.vocab import cache_dir

    return cache_dir() / "bfcl" / f"bfcl_eval-{VERSION}"


@lru_cache(maxsize=1)
def require() -> str:
    """Make `bfcl_eval` importable at the pinned version (fetching the wheel on first use); where it was found."""
    try:
        import mpmath  # noqa: F401  (BFCL's MathAPI)
    except ImportError:
        raise EvalError("BFCL's MathAPI needs mpmath: pip install mpmath") from None
    installed = _installed_version()
    if installed is not None and installed != VERSION:
        raise EvalError(f"bfcl-eval {installed} is installed but the harness is pinned to {VERSION} (its data and "
                        f"checker): pip install --no-deps {PIN}")
    if installed is None:
        root = cache_path()
        if not (root / "bfcl_eval" / "__init__.py").is_file():
            _fetch(root)
        sys.path.insert(0, str(root))
        # BFCL makes result/score/lock folders beside its package at import unless told where its project is
        os.environ.setdefault("BFCL_PROJECT_ROOT", str(root.parent / "project"))
    module = importlib.import_module("bfcl_eval")
    return str(Path(module.__file__).parent)


def _installed_version() -> str | None:
    try:
        importlib.import_module("bfcl_eval")
    except ImportError:
        return None
    try:
        return importlib.metadata.version("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:  # importable from the cache already (sys.path)
        return VERSION if str(cache_path()) in sys.path else "unknown"


def _fetch(root: Path) -> None:
    """`pip download --no-deps` the pinned wheel and unpack it at `root` (atomically: a rename)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--quiet", "-d", tmp, PIN], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel came back"])[-1]
            raise EvalError(f"could not fetch {PIN} ({last}); install it with: pip install --no-deps {PIN}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(unpacked)
        try:
            os.replace(unpacked, root)
        except OSError:
            if not (root / "bfcl_eval" / "__init__.py").is_file():  # not another process that won the race
                raise


@lru_cache(maxsize=1)
def handler_functions() -> dict:
    """BFCL's own `model_handler/utils.py` functions named in HANDLER_FUNCTIONS, compiled from the wheel's source
    with that module's imports (those that cannot import, the tree-sitter parsers, are left out)."""
    require()
    handler = importlib.import_module("bfcl_eval.model_handler")  # BFCL's package, not a file of tinygpt's
    handler_dir = Path(handler.__file__).parent
    path = handler_dir / "utils.py"
    tree = ast.parse(path.read_text(), str(path))
    namespace: dict = {"__name__": f"{handler.__name__}.utils"}
    namespace["__file__"] = str(path)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            try:
                exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
            except ImportError:
                continue
    found = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in HANDLER_FUNCTIONS}
    missing = [n for n in HANDLER_FUNCTIONS if n not in found]
    if missing:
        raise EvalError(f"{path} has no function {missing[0]!r}: not the bfcl-eval {VERSION} the harness expects")
    exec(compile(ast.Module(list(found.values()), []), str(path), "exec"), namespace)
    return {name: namespace[name] for name in HANDLER_FUNCTIONS}
