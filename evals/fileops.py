"""The file-ops suite: this project's own multi-step file tasks on the virtual file system, checked by end state.

Tasks are generated from a fixed seed (fileops_tasks.py families on fileops_world.py worlds) by the machinery all
generated suites share (generated.py: content-hash splits that never overlap, filled to 1500 / 200 / 200 tasks).
An episode runs on a fresh VirtualFileSystem of the task's world (tools/fs_virtual.py, the `fs:virtual` tools,
with brief descriptions: `fs_toolset(brief=True)`, as `tinygpt agent --tools fs:...` offers them);
after each user turn the checker compares the whole tree with the state the gold calls leave (file text compared
without trailing spaces and blank lines at either end) and looks in the final answer for what the turn must say.
It does not run the agent (runner.py).
"""
from __future__ import annotations


from tinygpt.evals import generated
from tinygpt.evals.fileops_tasks import FAMILIES
from tinygpt.evals.fileops_world import make_world
from tinygpt.evals.generated import Plan, content_hash, says, split_of  # noqa: F401  (the suite's surface)
from tinygpt.evals.suite import Check, Task
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.tools.fs_virtual import VirtualFileSystem

NAME = "fileops"
SPLITS = generated.SPLITS
SYSTEM = ("You operate a file system through the tools. You start at the top of the workspace (/workspace); paths "
          "in requests are relative to it. cd moves one folder at a time. When the job is done, answer briefly.")
SEED = 12
QUOTAS = {"train": 1500, "validation": 200, "heldout": 200}


def normalized(tree: dict) -> dict:
    """A GorillaFileSystem tree as {name: text or {...}}, file text without trailing spaces or blank end lines."""
    def walk(contents: dict) -> dict:
        return {name: ("\n".join(r.rstrip() for r in body["content"].strip("\n").splitlines())
                       if body["type"] == "file" else walk(body["contents"])) for name, body in contents.items()}

    return walk(tree["root"])


def tree_difference(want: dict, got: dict, where: str = "") -> str:
    """The first difference between two normalized trees, in words ("" when equal)."""
    for name in sorted(set(want) | set(got)):
        path = f"{where}/{name}" if where else name
        if name not in got:
            return f"{path} is missing"
        if name not in want:
            return f"{path} should not exist"
        a, b = want[name], got[name]
        if isinstance(a, dict) != isinstance(b, dict):
            return f"{path} should be a {'folder' if isinstance(a, dict) else 'file'}"
        if isinstance(a, dict):
            inner = tree_difference(a, b, path)
            if inner:
                return inner
        elif a != b:
            return f"{path} has other content"
    return ""


DOMAIN = generated.Domain(
    name=NAME, families=FAMILIES, make_world=make_world, backend=VirtualFileSystem.from_bfcl,
    state=lambda fs: normalized(fs.to_bfcl()), difference=tree_difference,
    toolset=lambda fs: fs_toolset(fs, timeout_s=None, brief=True), noun="file system")


SUITE = generated.Suite(DOMAIN, seed=SEED, quotas=QUOTAS)
tasks, start, replay = SUITE.tasks, SUITE.start, SUITE.replay


def judge(task: Task, turn: int, tree: dict, answer: str) -> Check:
    """Turn `turn` passes when the tree (GorillaFileSystem shape) equals the gold state and the answer says what
    it must."""
    return generated.judge(DOMAIN, task, turn, normalized(tree), answer)

