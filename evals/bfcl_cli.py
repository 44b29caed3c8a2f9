"""The official BFCL command line (`bfcl generate`, `bfcl evaluate`) in a virtual environment of its own, so the
leaderboard's own pipeline can be run against `tinygpt serve` (docs/bfcl.md).

It cannot share tinygpt's environment: BFCL pins numpy 1.26 and tree-sitter 0.21, and its full dependency set
pulls torch with CUDA (through sentence-transformers and faiss, which only its memory and web-search categories
use). `ensure()` builds `cache_dir()/bfcl-cli` once: the pinned wheel with `--no-deps`, then PACKAGES, which are
what its CLI imports when it starts (its model table imports every handler module, hence the vendor SDKs) and
what generate/evaluate use for the other categories, at BFCL's own pins; plus transformers (its local-model
handlers read the model's tokenizer and config with it) and soundfile (qwen-agent imports it without declaring
it). A stamp records what was installed; a changed list rebuilds. `python -m tinygpt.evals.bfcl_cli` builds it
and prints the `bfcl` path. Not here: running BFCL, or anything about the server.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import venv
from pathlib import Path

from tinygpt.evals.errors import EvalError

PIN = "bfcl-eval==2026.3.23"  # the version bootstrap.sh installs for the in-process harness
PACKAGES = (
    # BFCL's own pins
    "numpy==1.26.4", "tree_sitter==0.21.3", "tree-sitter-java==0.21.0", "tree-sitter-javascript==0.21.4",
    "mistralai==1.7.0", "cohere==5.18.0", "datamodel-code-generator==0.25.7", "mpmath==1.3.0", "filelock==3.20.0",
    # BFCL's unpinned requirements, at the versions this was tested with
    "pandas==3.0.6", "requests==2.34.2", "tqdm==4.70.1", "huggingface_hub==2.4.0", "pydantic==2.14.4",
    "python-dotenv==1.2.4", "openai==3.57.0", "anthropic==2.15.0", "typer==0.29.2", "tabulate==0.10.0",
    "google-genai==3.6.1", "qwen-agent==0.0.34", "tenacity==9.1.4", "writer-sdk==3.0.0", "overrides==7.7.0",
    "boto3==1.44.8",
    # not declared by BFCL (its vLLM extra brings the first) or by qwen-agent (the second), imported all the same
    "transformers==5.24.0", "soundfile==0.14.0",
)


def default_dir() -> Path:
    from tinygpt.runtime.vocab import cache_dir

    return cache_dir() / "bfcl-cli"


def ensure(where: Path | None = None) -> Path:
    """The `bfcl` executable of a venv at `where` (default: the cache's) holding PIN and PACKAGES, built first if
    missing or made from another list (a few minutes; needs the package index). EvalError if pip fails."""
    where = Path(where) if where is not None else default_dir()
    bfcl, stamp = where / "bin" / "bfcl", where / ".tinygpt-packages"
    want = "\n".join((PIN, *PACKAGES)) + "\n"
    if bfcl.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == want:
        return bfcl
    if where.is_dir() and any(where.iterdir()) and not (where / "pyvenv.cfg").is_file():
        raise EvalError(f"{where} is not empty and not a virtual environment; name a new or empty directory")
    print(f"tinygpt: building the BFCL CLI environment at {where} (a few minutes, once)", file=sys.stderr)
    venv.create(where, clear=True, with_pip=True)
    log = where / "pip.log"
    for args in (["--no-deps", PIN], list(PACKAGES)):
        with log.open("a", encoding="utf-8") as out:
            done = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                                   *args], stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            last = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()][-1:]
            raise EvalError(f"pip could not install the BFCL CLI's packages into {where} ({last[0] if last else ''}); "
                            f"see {log}; check that the package index can be reached and retry")
    stamp.write_text(want, encoding="utf-8")
    return bfcl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinygpt.evals.bfcl_cli",
                                description="Build (once) a venv with the official BFCL CLI; print its `bfcl` path.")
    p.add_argument("--venv", type=Path, default=None, metavar="DIR", help="where (default: tinygpt's cache)")
    args = p.parse_args(argv)
    try:
        print(ensure(args.venv))
    except EvalError as exc:
        print(f"tinygpt: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
