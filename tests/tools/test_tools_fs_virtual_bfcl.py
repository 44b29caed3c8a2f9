"""Differential tests: our VirtualFileSystem against BFCL's own GorillaFileSystem, call by call.

Every ground-truth FS call of the multi-turn tasks, then seeded random sequences (valid and invalid
arguments, present and absent names): each outcome and the final tree (order included) must be equal.
"""
import json
import random
import uuid

import pytest

pytest.importorskip("bfcl_eval", reason="the bfcl-eval wheel provides the reference GorillaFileSystem")

from tinygpt.tools.fs_tools import fs_toolset  # noqa: E402
from tinygpt.tools.fs_virtual import VirtualFileSystem  # noqa: E402
from tools_bfcl_replay import (bfcl_tree, ground_truth_tasks, new_bfcl_fs, our_tree, outcome,  # noqa: E402
                               random_call, random_config)

RANDOM_SEQUENCES = 1000


def _replay(config: dict, calls, label: str) -> int:
    theirs, ours = new_bfcl_fs(config), VirtualFileSystem.from_bfcl(config)
    assert our_tree(ours) == bfcl_tree(theirs), f"{label}: initial trees differ"
    for i, (name, kwargs) in enumerate(calls):
        expected, got = outcome(theirs, name, kwargs), outcome(ours, name, kwargs)
        assert got == expected, f"{label} call {i} {name}({kwargs}): BFCL {expected!r}, ours {got!r}"
    assert our_tree(ours) == bfcl_tree(theirs), f"{label}: final trees differ"
    assert outcome(ours, "pwd", {}) == outcome(theirs, "pwd", {}), f"{label}: final cwd differs"
    return len(calls)


@pytest.mark.parametrize("category", ["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param"])
def test_every_ground_truth_call_matches_bfcl(category, capsys):
    tasks = ground_truth_tasks(category)
    assert len(tasks) >= 40  # the wheel's data: about a quarter of each category uses the FS
    calls = sum(_replay(config, seq, task_id) for task_id, config, seq in tasks)
    assert calls >= 200
    with capsys.disabled():
        print(f"\n[bfcl-diff] {category}: {len(tasks)} tasks, {calls} ground-truth FS calls, all equal")


def _random_diff(sequences: int, seed: int, capsys) -> None:
    rng = random.Random(seed)
    base_configs = [config for _, config, _ in ground_truth_tasks("multi_turn_base")]
    calls, errors, raised = 0, 0, 0
    for seq in range(sequences):
        config = rng.choice(base_configs) if seq % 3 == 0 else random_config(rng)
        theirs, ours = new_bfcl_fs(config), VirtualFileSystem.from_bfcl(config)
        for step in range(rng.randint(5, 30)):
            name, kwargs = random_call(rng, ours)
            expected, got = outcome(theirs, name, kwargs), outcome(ours, name, kwargs)
            assert got == expected, f"seq {seq} step {step} {name}({kwargs}): BFCL {expected!r}, ours {got!r}"
            calls += 1
            raised += expected[0] == "raised"
            errors += isinstance(expected[1], dict) and "error" in expected[1]
        assert our_tree(ours) == bfcl_tree(theirs), f"seq {seq}: final trees differ"
        assert outcome(ours, "pwd", {}) == outcome(theirs, "pwd", {})
    # the generator must exercise failures as well as successes
    assert errors > calls // 10 and raised > 0
    with capsys.disabled():
        print(f"\n[bfcl-diff] random (seed {seed}): {sequences} sequences, {calls} calls "
              f"({errors} error results, {raised} raised), all equal")


def test_random_sequences_match_bfcl(capsys):
    _random_diff(RANDOM_SEQUENCES, 20260323, capsys)


@pytest.mark.slow
def test_many_more_random_sequences_match_bfcl(capsys):
    _random_diff(30 * RANDOM_SEQUENCES, 1, capsys)


def test_bfcl_quirks_are_kept():
    """Behaviours a 'cleaner' rewrite would lose; each is what BFCL does."""
    config = {"root": {"ws": {"type": "directory", "contents": {
        "d": {"type": "directory", "contents": {"f.txt": {"type": "file", "content": "v1"}}}}}}}
    fs = VirtualFileSystem.from_bfcl(config)
    assert fs.pwd() == {"current_working_directory": "/ws"}          # the root's own name is shown
    assert fs.cp("d", "e") == {"result": "'d' copied to 'e'"}
    fs.cd("e")
    fs.echo("v2", "f.txt")                                           # shallow copy: the original changes too
    fs.cd("..")
    fs.cd("d")
    assert fs.cat("f.txt") == {"file_content": "v2"}
    assert fs.cd("/ws") == {"error": "cd: /ws: Unsupported path. Only one folder level at a time is supported."}
    assert fs.cd("/") == {"current_working_directory": "ws"}
    with pytest.raises(Exception, match="'Directory' object has no attribute '_write'"):
        fs.echo("x", "d")
    assert VirtualFileSystem.from_bfcl({}).pwd() == {"current_working_directory": "//"}


def test_moved_directory_children_still_point_at_the_old_node():
    config = {"root": {"ws": {"type": "directory", "contents": {
        "a": {"type": "directory", "contents": {"sub": {"type": "directory", "contents": {}}}}}}}}
    fs = VirtualFileSystem.from_bfcl(config)
    assert fs.mv("a", "b") == {"result": "'a' moved to 'b'"}
    fs.cd("b")
    fs.cd("sub")
    fs.cd("..")                                                      # lands in the detached old 'a'
    assert fs.pwd() == {"current_working_directory": "/ws/a"}
    fs.mkdir("made_in_old_a")                                       # ... which shares its entries with 'b'
    assert list(fs.to_bfcl()["root"]["ws"]["contents"]["b"]["contents"]) == ["sub", "made_in_old_a"]


def test_tree_round_trips_through_bfcl_shape():
    rng = random.Random(7)
    for _ in range(50):
        config = random_config(rng)
        assert VirtualFileSystem.from_bfcl(config).to_bfcl() == config


@pytest.mark.parametrize("bad, message", [
    ([], "must be a JSON object"),
    ({"root": {}}, "must map the root"),
    ({"root": {"w": {"type": "directory"}}}, "must be {\"type\": \"directory\""),
    ({"root": {"w": {"type": "directory", "contents": {"x": {"type": "link"}}}}}, "\"type\": \"file\" or"),
    ({"root": {"w": {"type": "directory", "contents": {"x": {"type": "file", "content": 3}}}}}, "must be a string"),
])
def test_bad_config_is_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace('"', '"')):
        VirtualFileSystem.from_bfcl(bad)


def _bfcl_visible(config: dict, calls) -> list[str]:
    """What BFCL's own multi-turn executor shows the model for each call (unique instance name per run)."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call
    sources = [f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" for name, kwargs in calls]
    shown, _ = execute_multi_turn_func_call(sources, {"GorillaFileSystem": config}, ["GorillaFileSystem"],
                                            f"tinygpt_{uuid.uuid4().hex}", "t")
    return shown


def _same_text(ours: str, theirs: str) -> bool:
    """Equal, or equal JSON (BFCL escapes non-ASCII, we keep it: ensure_ascii=False)."""
    if ours == theirs:
        return True
    try:
        return json.loads(ours) == json.loads(theirs)
    except ValueError:
        return False


def test_model_visible_results_equal_bfcls_executor(capsys):
    rng = random.Random(11)
    runs = [(config, calls) for _, config, calls in ground_truth_tasks("multi_turn_base")]
    for _ in range(100):
        config = random_config(rng)
        probe = VirtualFileSystem.from_bfcl(config)          # only to pick names that exist as it goes
        calls = []
        for _ in range(rng.randint(5, 20)):
            call = random_call(rng, probe)
            outcome(probe, *call)
            calls.append(call)
        runs.append((config, calls))
    compared = 0
    for config, calls in runs:
        tools = fs_toolset(VirtualFileSystem.from_bfcl(config), timeout_s=None)
        for (name, kwargs), theirs in zip(calls, _bfcl_visible(config, calls), strict=True):
            ours = tools.call(name, kwargs).content
            if "recursion depth" in ours and "recursion depth" in theirs:
                continue                                     # both hit a cycle BFCL's cp makes; texts differ
            assert _same_text(ours, theirs), f"{name}({kwargs}): ours {ours!r}, BFCL {theirs!r}"
            compared += 1
    assert compared > 1000
    with capsys.disabled():
        print(f"\n[bfcl-diff] model-visible text: {compared} results equal to BFCL's executor output")
