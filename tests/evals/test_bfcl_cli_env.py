"""evals/bfcl_cli.py without the package index: a built venv (its stamp lists what was installed) is reused as
it is, and a directory that is not a venv is never cleared. Building one is tested by tests/web/test_bfcl_cli.py
(slow)."""
import pytest

from tinygpt.evals.bfcl_cli import PACKAGES, PIN, ensure, main
from tinygpt.evals.errors import EvalError


def test_a_built_environment_whose_stamp_matches_is_reused(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "bfcl").write_text("#!/bin/sh\n")
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / ".tinygpt-packages").write_text("\n".join((PIN, *PACKAGES)) + "\n")
    assert ensure(tmp_path) == tmp_path / "bin" / "bfcl"  # no pip run: this directory has no python to run it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tinygpt-packages", "bin", "pyvenv.cfg"]


def test_a_directory_that_is_not_a_venv_is_never_cleared(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EvalError, match="not empty and not a virtual environment"):
        ensure(tmp_path)
    assert main(["--venv", str(tmp_path)]) == 2
    assert "not a virtual environment" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"


def test_the_cli_runs_the_bfcl_version_the_harness_uses():
    from pathlib import Path

    bootstrap = (Path(__file__).resolve().parents[2] / "bootstrap.sh").read_text()
    assert f'BFCL_PIN="{PIN}"' in bootstrap
