"""Test helpers: write a BFCL tree to disk, and a sandbox root with ways out planted around it.

Not a test module; conftest.py exposes `escape_world` as a fixture.
"""
import os
from pathlib import Path
from types import SimpleNamespace

SECRET = "TOP-SECRET-OUTSIDE"


def write_tree(path: Path, contents: dict) -> None:
    """Materialize the `contents` of a BFCL GorillaFileSystem directory under `path`."""
    for name, body in contents.items():
        if body["type"] == "directory":
            (path / name).mkdir()
            write_tree(path / name, body["contents"])
        else:
            (path / name).write_bytes(body["content"].encode("utf-8"))


def make_escape_world(tmp_path: Path) -> SimpleNamespace:
    """tmp/root (the sandbox) beside tmp/outside and tmp/root-evil (same prefix), with links planted inside."""
    root, outside, evil = tmp_path / "root", tmp_path / "outside", tmp_path / "root-evil"
    for d in (root / "sub" / "deeper", outside, evil):
        d.mkdir(parents=True)
    for d in (outside, evil):
        (d / "secret.txt").write_text(SECRET + "\n")
    (root / "inside.txt").write_text("inside\n")
    (root / "sub" / "deeper" / "f.txt").write_text("deep file\n")
    links = {
        "link_out": "../outside", "abs_link": str(outside), "link_file": str(outside / "secret.txt"),
        "link_evil": "../root-evil", "link_in": "sub", "loop": "loop",
        "dangling": str(outside / "created_through_link.txt"), "proc_root": "/proc/self/root",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.symlink("../../..", root / "sub" / "deeper" / "link_up")
    return SimpleNamespace(root=root, outside=outside, evil=evil, tmp=tmp_path)


def outside_untouched(world) -> bool:
    """The planted secrets are intact and nothing new appeared outside the root."""
    return (sorted(os.listdir(world.outside)) == ["secret.txt"]
            and (world.outside / "secret.txt").read_text() == SECRET + "\n"
            and sorted(os.listdir(world.evil)) == ["secret.txt"]
            and sorted(os.listdir(world.tmp)) == ["outside", "root", "root-evil"])
