"""`--tool-format` on agent and serve, and the config key `tool_format`: an unknown name is one error line that
lists the known formats, before any model is loaded."""
import os
import subprocess
import sys

import pytest

from tinygpt.config import ConfigError, load_config
from tinygpt.runtime.tool_formats import FORMATS


@pytest.mark.parametrize("command", ["agent", "serve"])
def test_an_unknown_tool_format_flag_is_one_line_listing_the_known_ones(command, tmp_path):
    env = {**os.environ, "TINYGPT_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    env.pop("TINYGPT_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "tinygpt.cli", command, "--tool-format", "qwen"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "--tool-format" in line and "'qwen'" in line and all(f"'{name}'" in line for name in FORMATS)
    assert not (tmp_path / "cache").exists()  # nothing was created or loaded


def test_the_config_key_is_checked_and_the_flag_wins(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("TINYGPT_CONFIG", str(path))
    path.write_text('tool_format = "qwen"\n')
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "tool_format" in str(err.value) and "hermes, llama3, mistral, json" in str(err.value)
    path.write_text('tool_format = "mistral"\n')
    assert load_config().tool_format == "mistral"
    assert load_config({"tool_format": "llama3"}).tool_format == "llama3"
    path.write_text("")
    assert load_config().tool_format == ""  # default: the format the model's chat template writes
