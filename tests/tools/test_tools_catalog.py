"""load_toolset: every spec form works, and every bad spec says what is wrong."""
import json

import pytest

from tinygpt.tools.catalog import ToolsetSpecError, load_toolset, open_filesystem
from tinygpt.tools.fs_real import RealFileSystem
from tinygpt.tools.fs_virtual import VirtualFileSystem

TREE = {"root": {"home": {"type": "directory", "contents": {"a.txt": {"type": "file", "content": "hi"}}}}}


def test_virtual_default_world():
    tools = load_toolset("fs:virtual", timeout_s=None)
    assert len(tools) == 18
    assert tools.call("pwd").content == '{"current_working_directory": "/workspace"}'
    assert "notes" in tools.call("ls").content


@pytest.mark.parametrize("wrap", [
    lambda t: t,                                                      # the GorillaFileSystem part
    lambda t: {"GorillaFileSystem": t, "TwitterAPI": {}},            # a task's initial_config
    lambda t: {"id": "x", "initial_config": {"GorillaFileSystem": t}},  # a whole task line
])
def test_virtual_from_config_file(tmp_path, wrap):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(wrap(TREE)))
    fs = open_filesystem(f"fs:virtual:{path}")
    assert isinstance(fs, VirtualFileSystem) and fs.cat("a.txt") == {"file_content": "hi"}


def test_real_directory_rw_and_ro(tmp_path):
    (tmp_path / "f.txt").write_text("data\n")
    rw = load_toolset(f"fs:{tmp_path}", timeout_s=None)
    assert rw.call("mkdir", {"dir_name": "new"}).content == "None"
    assert (tmp_path / "new").is_dir()
    ro = load_toolset(f"fs:{tmp_path}:ro", timeout_s=None)
    assert ro.call("cat", {"file_name": "f.txt"}).content == '{"file_content": "data\\n"}'
    refused = ro.call("rm", {"file_name": "f.txt"})
    assert refused.is_error and "rm refused: this sandbox is read-only" in refused.content
    assert (tmp_path / "f.txt").exists()
    fs = open_filesystem(f"fs:{tmp_path}:rw")
    assert isinstance(fs, RealFileSystem) and not fs.read_only


def test_bad_specs_are_clear_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"TwitterAPI": {}}')
    (tmp_path / "broken.json").write_text('{"root": {"w": {"type": "directory"}}}')
    cases = {
        "": "unknown toolset spec ''",
        "web:search": "unknown toolset spec 'web:search'; expected one of: fs:virtual",
        "fs:": "unknown toolset spec",
        f"fs:{tmp_path}/missing": "is not an existing directory",
        f"fs:{tmp_path}/missing:ro": "is not an existing directory",
        f"fs:virtual:{tmp_path}/none.json": "no such file",
        f"fs:virtual:{tmp_path}/bad.json": "cannot read it as JSON",
        f"fs:virtual:{tmp_path}/other.json": "expected a BFCL initial_config",
        f"fs:virtual:{tmp_path}/broken.json": "must be {\"type\": \"directory\"",
    }
    for spec, message in cases.items():
        with pytest.raises(ToolsetSpecError) as info:
            load_toolset(spec)
        assert message in str(info.value), spec
