"""Test helpers: BFCL's own GorillaFileSystem, its ground-truth calls parsed with `ast`, and a runner that
applies one call to both implementations and reports (kind, payload) so outcomes can be compared.

Not a test module. BFCL comes from the installed `bfcl_eval` wheel; tests skip (with the reason) if absent.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
from importlib import resources
from typing import Any

from tinygpt.tools.fs_virtual import FsFault, VDir, VFile, VirtualFileSystem

FS_OPS = ("ls", "cd", "mkdir", "touch", "echo", "cat", "find", "wc", "sort", "grep", "du", "tail",
          "diff", "mv", "cp", "rm", "rmdir", "pwd")
_BFCL_MODULE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code.gorilla_file_system"


def bfcl_fs_class():
    return importlib.import_module(_BFCL_MODULE).GorillaFileSystem


def new_bfcl_fs(config: dict):
    import copy
    fs = bfcl_fs_class()()
    fs._load_scenario(copy.deepcopy(config), long_context=False)
    return fs


def parse_call(source: str) -> tuple[str, dict[str, Any]]:
    """`cd(folder='x')` -> ("cd", {"folder": "x"}); positional args are named from BFCL's signature."""
    node = ast.parse(source, mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {source!r}")
    name = node.func.id
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    if node.args:
        params = list(inspect.signature(getattr(bfcl_fs_class(), name)).parameters)[1:]  # drop self
        for pname, arg in zip(params, node.args):
            kwargs[pname] = ast.literal_eval(arg)
    return name, kwargs


def ground_truth_tasks(category: str) -> list[tuple[str, dict, list[tuple[str, dict]]]]:
    """(task id, GorillaFileSystem config, FS calls in order) for each task of `category` that uses the FS."""
    data = resources.files("bfcl_eval") / "data"
    tasks = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").read_text().splitlines() if line]
    answers = {}
    for line in (data / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines():
        if line:
            row = json.loads(line)
            answers[row["id"]] = row["ground_truth"]
    out = []
    for task in tasks:
        if "GorillaFileSystem" not in task["involved_classes"]:
            continue
        calls = []
        for turn in answers[task["id"]]:
            for source in turn:
                name, kwargs = parse_call(source) if source.split("(")[0] in FS_OPS else (None, None)
                if name is not None:
                    calls.append((name, kwargs))
        out.append((task["id"], task["initial_config"].get("GorillaFileSystem", {}), calls))
    return out


def outcome(obj: Any, name: str, kwargs: dict) -> tuple[str, Any]:
    """Apply one call; ("ok", result) or ("raised", message) - RecursionError reported by type only."""
    try:
        return "ok", getattr(obj, name)(**kwargs)
    except RecursionError:
        return "raised", "RecursionError"
    except (FsFault, AttributeError, ValueError) as exc:
        return "raised", str(exc)


def bfcl_tree(fs) -> str:
    """BFCL's tree from its root as ordered JSON (cycle-safe)."""
    def dump(node, stack):
        if id(node) in stack:
            return {"type": "cycle"}
        if type(node).__name__ == "File":
            return {"type": "file", "name": node.name, "content": node.content}
        stack = stack | {id(node)}
        return {"type": "directory", "name": node.name,
                "contents": {k: dump(v, stack) for k, v in node.contents.items()}}
    return json.dumps(dump(fs.root, frozenset()), ensure_ascii=False)


def our_tree(fs: VirtualFileSystem) -> str:
    """Our tree in the same shape as `bfcl_tree`."""
    def dump(node, stack):
        if id(node) in stack:
            return {"type": "cycle"}
        if isinstance(node, VFile):
            return {"type": "file", "name": node.name, "content": node.text}
        assert isinstance(node, VDir)
        stack = stack | {id(node)}
        return {"type": "directory", "name": node.name,
                "contents": {k: dump(v, stack) for k, v in node.entries.items()}}
    return json.dumps(dump(fs.root, frozenset()), ensure_ascii=False)


# --- randomized call sequences ------------------------------------------------------------------------

NAME_POOL = ("a", "b", "docs", "notes.txt", "x.txt", ".hidden", "report.pdf", "tmp", "sp ace", "ünï.txt",
             "", ".", "..", "a/b", "/", "../x", "bad|name", "q?", "a:b", "new", "new2", "log.txt")
WORDS = ("alpha", "beta", "Error", "budget analysis", "final", "x", "", "  spaced  ", "ünïcode", "1 2 3")
PATHS = (".", "/", "..", "", "//", "./", "a/b", "/a", "nope", "docs/", "tmp/sub", "../..")


def random_text(rng) -> str:
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(0, 6))]
    return rng.choice(("\n", "\n", "\r\n")).join(lines) + rng.choice(("", "\n"))


def random_config(rng, depth: int = 0) -> dict:
    """A random BFCL GorillaFileSystem scenario (or its contents, when depth > 0)."""
    contents = {}
    for _ in range(rng.randint(0, 4 if depth < 2 else 2)):
        name = rng.choice(NAME_POOL[:10] + ("sub", "data.csv", "img.png"))
        if depth < 2 and rng.random() < 0.35:
            contents[name] = {"type": "directory", "contents": random_config(rng, depth + 1)}
        else:
            contents[name] = {"type": "file", "content": random_text(rng)}
    if depth:
        return contents
    return {"root": {rng.choice(("workspace", "alex", "root")): {"type": "directory", "contents": contents}}}


def _name(rng, fs: VirtualFileSystem) -> str:
    existing = list(fs.cwd.entries)
    if existing and rng.random() < 0.6:
        return rng.choice(existing)
    return rng.choice(NAME_POOL)


def random_call(rng, fs: VirtualFileSystem) -> tuple[str, dict]:
    """One well-typed call; names are drawn from the cwd's entries and a pool of odd/absent names."""
    op = rng.choice(FS_OPS + ("cd", "cd", "cd", "mkdir", "mv", "cp", "echo"))
    dirs = [n for n, v in fs.cwd.entries.items() if isinstance(v, VDir)]
    if op in ("pwd",):
        return op, {}
    if op == "ls":
        return op, {} if rng.random() < 0.3 else {"a": rng.random() < 0.5}
    if op == "du":
        return op, {} if rng.random() < 0.3 else {"human_readable": rng.random() < 0.5}
    if op == "cd":
        choices = dirs * 4 + ["..", "..", "/", ".", "nope", "a/b", "x/", "../", "//"]
        return op, {"folder": rng.choice(choices)}
    if op in ("mkdir", "rmdir"):
        return op, {"dir_name": _name(rng, fs)}
    if op in ("touch", "cat", "sort", "rm"):
        return op, {"file_name": _name(rng, fs)}
    if op == "echo":
        args = {"content": random_text(rng)}
        if rng.random() < 0.8:
            args["file_name"] = _name(rng, fs)
        return op, args
    if op == "find":
        args = {}
        if rng.random() < 0.8:
            args["path"] = rng.choice(list(PATHS) + dirs + ["/" + d for d in dirs])
        if rng.random() < 0.6:
            args["name"] = rng.choice(("a", "txt", ".", "", "zzz", "sub", "o"))
        return op, args
    if op == "wc":
        args = {"file_name": _name(rng, fs)}
        if rng.random() < 0.7:
            args["mode"] = rng.choice(("l", "w", "c", "x", ""))
        return op, args
    if op == "grep":
        return op, {"file_name": _name(rng, fs), "pattern": rng.choice(WORDS + ("a", "e"))}
    if op == "tail":
        args = {"file_name": _name(rng, fs)}
        if rng.random() < 0.7:
            args["lines"] = rng.randint(-3, 12)
        return op, args
    if op == "diff":
        return op, {"file_name1": _name(rng, fs), "file_name2": _name(rng, fs)}
    source = _name(rng, fs)
    destination = source if rng.random() < 0.1 else _name(rng, fs)
    return op, {"source": source, "destination": destination}
