"""The FS Toolset: its schemas say what BFCL's function docs say, and calls reach the backend unchanged."""
import json
import re
from importlib import resources

import pytest

from tinygpt.tools.fs_tools import FS_OPERATIONS, FS_PREAMBLE, fs_toolset
from tinygpt.tools.fs_virtual import VirtualFileSystem
from tinygpt.tools.worlds import default_world

_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_schemas_match_bfcl_function_docs():
    pytest.importorskip("bfcl_eval", reason="BFCL's function docs come from the bfcl-eval wheel")
    doc_file = resources.files("bfcl_eval") / "data" / "multi_turn_func_doc" / "gorilla_file_system.json"
    theirs = {d["name"]: d for d in map(json.loads, doc_file.read_text().splitlines())}
    ours = {s["function"]["name"]: s["function"] for s in fs_toolset(VirtualFileSystem.from_bfcl({})).schemas()}
    assert list(ours) == sorted(theirs) == list(FS_OPERATIONS)
    for name, doc in theirs.items():
        mine = ours[name]
        assert _norm(mine["description"]) == _norm(doc["description"]), name
        props, their_props = mine["parameters"]["properties"], doc["parameters"]["properties"]
        assert list(props) == list(their_props), name
        assert mine["parameters"]["required"] == doc["parameters"]["required"], name
        assert mine["parameters"]["additionalProperties"] is False
        for pname, spec in their_props.items():
            assert props[pname]["type"] == _TYPES[spec["type"]], (name, pname)
            assert _norm(props[pname]["description"]) == _norm(spec["description"]), (name, pname)
            if spec.get("default") not in (None, "None"):   # BFCL writes a None default as the string "None"
                assert props[pname]["default"] == spec["default"], (name, pname)
            else:
                assert "default" not in props[pname], (name, pname)


def test_calls_go_to_the_backend_and_render_like_bfcl():
    fs = VirtualFileSystem.from_bfcl(default_world())
    tools = fs_toolset(fs, timeout_s=None)
    assert all(s["function"]["description"].startswith(FS_PREAMBLE) for s in tools.schemas())
    assert tools.call("cd", {"folder": "notes"}).content == '{"current_working_directory": "notes"}'
    assert tools.call("mkdir", {"dir_name": "drafts"}).content == "None"      # BFCL shows str(None)
    assert tools.call("cd", {"folder": ".."}).content == "{}"
    made = tools.call("mkdir", {"dir_name": "notes"})
    assert made.is_error and made.content == '{"error": "mkdir: cannot create directory \'notes\': File exists"}'
    assert tools.call("echo", {"content": "hé"}).content == '{"terminal_output": "hé"}'
    raised = tools.call("echo", {"content": "x", "file_name": "notes"})
    assert raised.is_error and raised.content == "Error during execution: 'Directory' object has no attribute '_write'"
    bad = tools.call("tail", {"file_name": "README.md", "lines": "5"})
    assert bad.is_error and "Expected `int`, got `str`" in bad.content
    assert fs.pwd() == {"current_working_directory": "/workspace"}
    assert "drafts" in fs.to_bfcl()["root"]["workspace"]["contents"]["notes"]["contents"]


def test_default_world_is_fresh_each_time():
    world = default_world()
    world["root"]["workspace"]["contents"].clear()
    assert "notes" in default_world()["root"]["workspace"]["contents"]
