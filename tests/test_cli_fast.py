"""`tinygpt <command> --help` and argument errors stay fast: no command may import MLX, mlx-lm, numpy, web or
grammar libraries, rich, ... before it actually runs. Checked by `sys.modules` in a fresh process (no timing)."""
import json
import subprocess
import sys

import pytest

from tinygpt.cli import COMMANDS

HEAVY = ("mlx", "mlx_lm", "numpy", "fastapi", "uvicorn", "starlette", "llguidance", "outlines_core", "rich",
         "datasketch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "jinja2")

PROBE = """
import json, sys
from tinygpt.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
sys.stdout.write('\\n' + json.dumps({'code': code, 'heavy': heavy}) + '\\n')
"""

def probe(*argv) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], input=json.dumps(HEAVY), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    pytest.param((command, flag), id=f"{command} {flag}")
    for command in COMMANDS for flag in ("--help", "--bad-flag")
])
def test_help_and_argument_errors_import_nothing_heavy(argv):
    result = probe(*argv)
    assert result["code"] == (0 if argv[1] == "--help" else 2)
    assert result["heavy"] == [], f"`tinygpt {' '.join(argv)}` imports {result['heavy']}"


def test_top_level_help_and_unknown_command_are_light():
    assert probe("--help") == {"code": 0, "heavy": []}
    assert probe("nonsense") == {"code": 2, "heavy": []}


def test_a_missing_model_is_reported_before_mlx_loads(tmp_path):
    assert probe("generate", "--model", str(tmp_path / "missing"), "hi") == {"code": 2, "heavy": []}
