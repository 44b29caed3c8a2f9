"""The file-ops suite: enough tasks, splits that never overlap, gold solutions the checker passes and broken ones it
fails (every task), later arguments that come from earlier results, and a checker that judges end state."""
import json
from collections import Counter

import pytest

from tinygpt.evals import fileops
from tinygpt.evals.errors import EvalError
from tinygpt.evals.fileops_tasks import FAMILIES
from tinygpt.evals.suite import Call, drop_last_call, load_suite, select_tasks
from tinygpt.tools.fs_virtual import VirtualFileSystem

ALL = {split: fileops.tasks(split) for split in fileops.SPLITS}


def test_split_sizes_and_every_category_in_every_split():
    assert {s: len(t) for s, t in ALL.items()} == {"train": 1500, "validation": 200, "heldout": 200}
    for tasks in ALL.values():
        counts = Counter(t.category for t in tasks)
        assert set(counts) == set(FAMILIES) and min(counts.values()) >= 8, counts


def test_splits_never_overlap_by_id_or_by_content():
    ids = {s: {t.id for t in tasks} for s, tasks in ALL.items()}
    hashes = {s: {t.data.content_hash for t in tasks} for s, tasks in ALL.items()}
    for a in fileops.SPLITS:
        assert len(ids[a]) == len(ALL[a]) and len(hashes[a]) == len(ALL[a])  # no duplicates inside a split
        for b in fileops.SPLITS:
            if a < b:
                assert not ids[a] & ids[b] and not hashes[a] & hashes[b]
    # the hash is of the content (recomputed here), and it alone decides the split
    for split, tasks in ALL.items():
        for t in tasks:
            plan = fileops.Plan(t.turns, t.gold, t.data.answers)
            digest = fileops.content_hash(t.category, plan, t.data.world)
            assert digest == t.data.content_hash and fileops.split_of(digest) == split == t.split


def test_no_prompt_and_world_pair_is_in_two_splits():
    seen = {}
    for split, tasks in ALL.items():
        for t in tasks:
            key = json.dumps([t.turns, t.data.world], sort_keys=True)
            assert seen.setdefault(key, split) == split


def test_generation_is_deterministic():
    again = fileops.SUITE.generate()
    assert {s: [t.id for t in again[s]] for s in fileops.SPLITS} == {s: [t.id for t in ALL[s]] for s in ALL}


@pytest.mark.parametrize("split", fileops.SPLITS)
def test_every_gold_solution_passes_and_dropping_its_last_call_fails(split):
    for task in ALL[split]:
        assert all(c.passed for c in fileops.replay(task, task.gold, tools=False)), task.id
        broken = tuple(drop_last_call(turn) for turn in task.gold)
        checks = fileops.replay(task, broken, tools=False)
        assert not all(c.passed for c in checks), task.id
        assert any("file system differs" in c.reason for c in checks), task.id


def test_gold_calls_are_valid_tool_calls_through_the_toolset():
    """A few tasks of every category and split go through the same Toolset a model's calls do."""
    for split, tasks in ALL.items():
        for category in FAMILIES:
            for task in [t for t in tasks if t.category == category][:2]:
                episode = fileops.start(task)
                for turn, steps in enumerate(task.gold):
                    for step in steps:
                        for call in () if isinstance(step, str) else step:
                            result = episode.toolset.call(call.name, call.arguments)
                            assert not result.is_error, (task.id, call, result.content)
                assert fileops.replay(task, task.gold)[-1].passed


def test_later_arguments_come_from_earlier_results():
    """Where a task starts with `find`, the folders the gold solution enters are the ones find reports."""
    found = 0
    for task in ALL["validation"]:
        first = task.gold[0][0]
        if isinstance(first, str) or first[0].name != "find":
            continue
        found += 1
        fs = VirtualFileSystem.from_bfcl(task.data.world)
        (match,) = fs.find(**first[0].arguments)["matches"]
        folders = match.split("/")[1:-1]  # "./a/b/name" -> [a, b]
        steps = [s for turn in task.gold for s in turn if not isinstance(s, str)]
        cds = []
        for step in steps[1:]:
            if step[0].name != "cd":
                break
            cds.append(step[0].arguments["folder"])
        assert cds == folders, task.id
        named = [c.arguments for s in steps for c in s if c.name in ("cp", "mv", "tail")]
        assert any(match.endswith("/" + a.get("source", a.get("file_name", ""))) for a in named), task.id
    assert found >= 50


def test_two_turn_tasks_are_judged_per_turn():
    task = next(t for t in ALL["validation"] if t.category == "locate-then-copy")
    assert len(task.turns) == 2
    first_only = (task.gold[0], ("I did nothing.",))
    checks = fileops.replay(task, first_only)
    assert checks[0].passed and not checks[1].passed
    wrong_answer = ((task.gold[0][0], "It is somewhere."), task.gold[1])
    checks = fileops.replay(task, wrong_answer)
    assert not checks[0].passed and "does not say" in checks[0].reason and checks[1].passed


def test_the_checker_reads_state_and_answer():
    task = next(t for t in ALL["validation"] if t.category == "count-record")
    (number,) = task.data.answers[0]
    assert fileops.says(f"It has {number} lines.", number)
    assert not fileops.says(f"It has 1{number}0 lines.", number)
    tree = VirtualFileSystem.from_bfcl(task.data.world)
    for step in task.gold[0]:
        for call in () if isinstance(step, str) else step:
            getattr(tree, call.name)(**call.arguments)
    state = tree.to_bfcl()
    assert fileops.judge(task, 0, state, f"{number}").passed
    assert not fileops.judge(task, 0, state, "no idea").passed
    before = VirtualFileSystem.from_bfcl(task.data.world).to_bfcl()
    check = fileops.judge(task, 0, before, f"{number}")
    assert not check.passed and "is missing" in check.reason


def test_file_text_is_compared_without_trailing_blank_lines_and_spaces():
    assert fileops.normalized({"root": {"w": {"type": "directory", "contents": {
        "a": {"type": "file", "content": "x  \ny\n\n"}}}}}) == {"w": {"a": "x\ny"}}
    assert fileops.tree_difference({"w": {"a": "x"}}, {"w": {"a": "y"}}) == "w/a has other content"
    assert fileops.tree_difference({"w": {}}, {"w": {"b": "1"}}) == "w/b should not exist"


def test_drop_last_call_removes_one_call():
    steps = ((Call("cd", {"folder": "a"}),), (Call("ls", {}), Call("rm", {"file_name": "x"})), "done")
    assert drop_last_call(steps) == ((Call("cd", {"folder": "a"}),), (Call("ls", {}),), "done")
    assert drop_last_call(((Call("ls", {}),), "done")) == ("done",)
    assert drop_last_call(("done",)) == ("done",)


def test_choosing_tasks():
    suite = load_suite("fileops")
    assert [t.id for t in select_tasks(suite, "heldout", limit=3)] == [t.id for t in ALL["heldout"][:3]]
    picked = select_tasks(suite, "validation", categories=["sort-save"])
    assert picked and {t.category for t in picked} == {"sort-save"}
    one = ALL["train"][5].id
    assert [t.id for t in select_tasks(suite, "train", ids=[one])] == [one]
    with pytest.raises(EvalError, match="no split 'test'; splits: train, validation, heldout"):
        select_tasks(suite, "test")
    with pytest.raises(EvalError, match="no category 'nope'"):
        select_tasks(suite, "train", categories=["nope"])
    with pytest.raises(EvalError, match="no task 'x'"):
        select_tasks(suite, "train", ids=["x"])
    with pytest.raises(EvalError, match="unknown suite 'bfcl'; suites: fileops"):
        load_suite("bfcl")
