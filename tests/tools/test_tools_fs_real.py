"""The real-directory FS: same answers as the virtual FS where semantics agree, its documented differences,
and read-only mode refusing every change."""
import os
import random
import stat

import pytest

from tinygpt.tools.fs_real import RealFileSystem
from tinygpt.tools.fs_virtual import FsFault, VDir, VirtualFileSystem
from tinygpt.tools.jail import SandboxError, SandboxReadOnly
from tools_bfcl_replay import random_call, random_config
from tools_sandbox_world import write_tree

SEQUENCES = 150


def _outcome(fs, name, kwargs):
    try:
        result = getattr(fs, name)(**kwargs)
    except (FsFault, SandboxError) as exc:
        return "raised", str(exc)
    if isinstance(result, dict):
        result = {k: sorted(v) if isinstance(v, list) and name in ("ls", "find") else v for k, v in result.items()}
    return "ok", result


def _is_error(outcome):
    return outcome[0] == "raised" or isinstance(outcome[1], dict) and "error" in outcome[1]


def _differs_by_design(fs: VirtualFileSystem, name: str, kwargs: dict) -> bool:
    """Calls documented to differ: mv/cp of a directory (the virtual FS shares children, BFCL's quirk) and
    names '', '.', '..' as entries (the virtual FS can create them, a real directory can't)."""
    if name in ("mv", "cp") and isinstance(fs.cwd.entries.get(kwargs["source"]), VDir):
        return True
    return name not in ("cd", "find") and any(v in ("", ".", "..") for v in kwargs.values())


def test_real_and_virtual_agree_on_random_sequences(tmp_path, capsys):
    rng = random.Random(5)
    compared = errors = 0
    for seq in range(SEQUENCES):
        config = random_config(rng)
        (root_name, body), = config["root"].items()
        root = tmp_path / f"s{seq}" / root_name
        root.mkdir(parents=True)
        write_tree(root, body["contents"])
        virtual, real = VirtualFileSystem.from_bfcl(config), RealFileSystem(root)
        for step in range(rng.randint(5, 25)):
            name, kwargs = random_call(rng, virtual)
            if _differs_by_design(virtual, name, kwargs):
                continue
            want, got = _outcome(virtual, name, kwargs), _outcome(real, name, kwargs)
            if _is_error(want) or _is_error(got):
                assert _is_error(want) and _is_error(got), f"seq {seq} step {step} {name}{kwargs}: {want} vs {got}"
                errors += 1
                if want[0] == got[0] == "ok":
                    assert want == got, f"seq {seq} step {step} {name}{kwargs}"
            else:
                assert want == got, f"seq {seq} step {step} {name}{kwargs}"
            compared += 1
        real.cd("/")
        virtual.cd("/")
        assert _outcome(real, "find", {"path": "/"}) == _outcome(virtual, "find", {"path": "/"})
        assert real.du() == virtual.du()
        real.close()
    assert compared > 1500 and errors > 300
    with capsys.disabled():
        print(f"\n[real-vs-virtual] {SEQUENCES} sequences, {compared} calls compared ({errors} errors on both)")


@pytest.fixture
def fs(tmp_path):
    root = tmp_path / "workspace"
    root.mkdir()
    write_tree(root, {"d": {"type": "directory", "contents": {"f.txt": {"type": "file", "content": "one\ntwo\n"}}},
                      "a.txt": {"type": "file", "content": "alpha\n"}})
    with RealFileSystem(root) as real:
        yield real


def test_basic_operations_and_messages(fs):
    assert fs.pwd() == {"current_working_directory": "/workspace"}
    assert fs.cd("d") == {"current_working_directory": "d"}
    assert fs.pwd() == {"current_working_directory": "/workspace/d"}
    assert fs.cd("/") == {"current_working_directory": "workspace"}
    assert fs.cd("..") == {"error": "Current directory is already the root. Cannot go back."}
    assert fs.cd("d/f.txt") == {"error": "cd: d/f.txt: Unsupported path. Only one folder level at a time is supported."}
    assert fs.find("/d") == {"matches": ["/d/f.txt"]}
    assert fs.find("nope") == {"error": "find: 'nope': No such file or directory"}
    assert fs.cat("d") == {"error": "cat: 'd': Is a directory"}
    assert fs.wc("d") == {"error": "wc: d: No such file or directory"}
    assert fs.echo("new text", "a.txt") is None and fs.cat("a.txt") == {"file_content": "new text"}
    assert fs.echo("x", "missing.txt") == {"error": "echo: cannot write to 'missing.txt': No such file"}
    assert fs.du(human_readable=True) == {"disk_usage": "16.00 B"}
    assert fs.rmdir("d") == {"error": "rmdir: cannot remove 'd': Directory not empty"}


def test_documented_differences_from_the_virtual_fs(fs):
    assert fs.echo("x", "d") == {"error": "echo: cannot write to 'd': Is a directory"}      # virtual raises
    assert fs.cp("d", "d") == {"error": "cp: cannot copy a directory, 'd', into itself, 'd/d'"}
    assert fs.mv("d", "d") == {"error": "mv: cannot move a directory, 'd', into itself, 'd/d'"}
    assert fs.mkdir("") == {"error": "mkdir: cannot create directory '': No such file or directory"}
    assert fs.touch(".") == {"error": "touch: cannot touch '.': File exists"}
    fs.cp("d", "e")                                                   # a deep copy: the original stays as it was
    fs.cd("e")
    fs.echo("changed", "f.txt")
    fs.cd("..")
    fs.cd("d")
    assert fs.cat("f.txt") == {"file_content": "one\ntwo\n"}
    fs.cd("..")
    fs.cp("a.txt", "d")
    assert fs.cp("a.txt", "d") == {"error": "cp: cannot copy 'a.txt' to 'd/a.txt': File exists"}   # virtual raises


def test_read_only_refuses_every_change(fs):
    ro = RealFileSystem(fs.jail.root, read_only=True)
    before = sorted(p.relative_to(fs.jail.root) for p in fs.jail.root.rglob("*"))
    changes = [("mkdir", ("x",)), ("touch", ("x",)), ("echo", ("x", "a.txt")), ("mv", ("a.txt", "b.txt")),
               ("cp", ("a.txt", "b.txt")), ("rm", ("a.txt",)), ("rmdir", ("d",)), ("rm", ("d",))]
    for op, args in changes:
        with pytest.raises(SandboxReadOnly, match="read-only"):
            getattr(ro, op)(*args)
    assert ro.echo("shown only") == {"terminal_output": "shown only"}
    assert ro.cat("a.txt") == {"file_content": "alpha\n"} and ro.cd("d") == {"current_working_directory": "d"}
    assert ro.tail("f.txt", 1) == {"last_lines": "two"} and ro.grep("f.txt", "o") == {"matching_lines": ["one", "two"]}
    assert sorted(p.relative_to(fs.jail.root) for p in fs.jail.root.rglob("*")) == before
    ro.close()


def test_limits_special_files_and_odd_names(fs, tmp_path):
    root = fs.jail.root
    small = RealFileSystem(root, max_file_bytes=4, max_walk_entries=2)
    assert small.cat("a.txt") == {"error": "cat: 'a.txt': File too large (6 bytes; this sandbox reads at most 4). "
                                           "Use tail, grep or wc on it instead."}
    assert "more than 2 entries" in small.find()["error"]
    os.mkfifo(root / "pipe")                                          # reading must not block on a FIFO
    assert fs.cat("pipe") == {"error": "cat: 'pipe': No such file or directory"}
    assert fs.echo("x", "pipe")["error"].startswith("echo: cannot write to 'pipe'")
    assert fs.cp("pipe", "p2") == {"error": "cp: cannot copy 'pipe': Not a file or directory"}
    open(os.path.join(os.fsencode(root), b"bad\xff name"), "wb").close()   # not UTF-8 on disk
    assert "bad\\xff name" in fs.ls()["current_directory_content"]   # shown escaped, never as raw bytes
    small.close()


def test_cwd_removed_from_outside_is_reported(fs):
    fs.cd("d")
    os.rename(fs.jail.root / "d", fs.jail.root / "gone")
    with pytest.raises(FileNotFoundError, match="no longer exists; cd\\('/'\\) to return to the root"):
        fs.ls()
    assert fs.cd("/") == {"current_working_directory": "workspace"}


def test_copy_keeps_file_modes_and_moves_do_not_replace(fs):
    os.chmod(fs.jail.root / "a.txt", 0o600)
    fs.cp("a.txt", "b.txt")
    assert stat.S_IMODE(os.stat(fs.jail.root / "b.txt").st_mode) == 0o600
    assert fs.mv("a.txt", "b.txt") == {"error": "mv: cannot move 'a.txt' to 'b.txt': Not a directory"}
    assert fs.mv("a.txt", "d") == {"result": "'a.txt' moved to 'd/a.txt'"}
    assert (fs.jail.root / "d" / "a.txt").read_text() == "alpha\n"
