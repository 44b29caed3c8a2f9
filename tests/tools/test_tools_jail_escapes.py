"""The path-escape corpus: every way out is refused with a typed error, and nothing outside is read or changed.

Cases run against the Jail (both resolvers: openat2 and the O_NOFOLLOW walk) and against the real-dir
file system through its Toolset (what the model sees). Includes symlinks swapped in between check and
use (a deterministic hook and a racing thread) and a hypothesis property over arbitrary path strings.
"""
import fcntl
import os
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygpt.tools.fs_real import RealFileSystem
from tinygpt.tools.fs_tools import fs_toolset
from tinygpt.tools.jail import Jail, SandboxEscape, check_name, split_path
from tools_sandbox_world import SECRET, make_escape_world, outside_untouched

with Jail("/") as _probe:
    HAS_OPENAT2 = _probe.uses_openat2
MODES = [pytest.param(True, id="openat2", marks=pytest.mark.skipif(not HAS_OPENAT2, reason="no openat2 here")),
         pytest.param(False, id="walk")]


def _fd_path(fd: int) -> str:
    if os.path.isdir("/proc/self/fd"):
        return os.readlink(f"/proc/self/fd/{fd}")
    return fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0").decode()   # macOS


def _inside(jail: Jail, fd: int) -> bool:
    real = _fd_path(fd)
    return real == str(jail.root) or real.startswith(str(jail.root) + os.sep)


# --- 1. path strings the jail refuses before touching the disk --------------------------------------

PATH_CASES = [
    "..", "../outside/secret.txt", "sub/../../outside", "sub/deeper/../../..", "./../x", "sub/..",
    "/etc/passwd", "/", "{outside}/secret.txt", "../root-evil/secret.txt", "sub/../../root-evil",
    "a\x00b", "\udcff", "ctrl\x01name", "del\x7f", "nel\x85", "new\nline",
]


@pytest.mark.parametrize("path", PATH_CASES)
def test_path_strings_are_refused(escape_world, path):
    path = path.format(outside=escape_world.outside)
    with pytest.raises(SandboxEscape):
        split_path(path)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\x00", "\udcff", "\x1b[31m"])
def test_bad_single_names_are_refused(name):
    with pytest.raises(SandboxEscape):
        check_name(name)


# --- 2. directories reached through links -----------------------------------------------------------

DIR_CASES = [("link_out",), ("abs_link",), ("link_evil",), ("link_in",), ("loop",), ("proc_root",),
             ("sub", "deeper", "link_up"), ("link_out", "secret.txt"), ("sub", "deeper", "link_up", "outside")]


@pytest.mark.parametrize("openat2", MODES)
@pytest.mark.parametrize("names", DIR_CASES, ids="/".join)
def test_directories_through_links_are_refused(escape_world, openat2, names):
    with Jail(escape_world.root, use_openat2=openat2) as jail:
        with pytest.raises(SandboxEscape, match="symbolic link"):
            jail.open_dir(names)
        with jail.directory(("sub", "deeper")) as fd:       # and the honest path still works
            assert _inside(jail, fd)


@pytest.mark.parametrize("name, flags", [
    ("link_file", os.O_RDONLY), ("link_file", os.O_WRONLY | os.O_TRUNC), ("dangling", os.O_WRONLY | os.O_CREAT),
    ("link_out", os.O_RDONLY | os.O_DIRECTORY), ("proc_root", os.O_RDONLY),
])
def test_final_names_that_are_links_are_refused(escape_world, name, flags):
    with Jail(escape_world.root) as jail, jail.directory(()) as root_fd:
        with pytest.raises(SandboxEscape, match="symbolic link"):
            jail.open_in(root_fd, name, flags)
    assert outside_untouched(escape_world)


# --- 3. the same, as the model sees it: error results, never outside data ---------------------------

TOOL_CASES = [
    ("cat", {"file_name": "link_file"}, "is a symbolic link"),
    ("tail", {"file_name": "link_file"}, "is a symbolic link"),
    ("grep", {"file_name": "link_file", "pattern": "SECRET"}, "is a symbolic link"),
    ("wc", {"file_name": "link_file"}, "is a symbolic link"),
    ("sort", {"file_name": "link_file"}, "is a symbolic link"),
    ("diff", {"file_name1": "inside.txt", "file_name2": "link_file"}, "is a symbolic link"),
    ("echo", {"content": "pwned", "file_name": "link_file"}, "is a symbolic link"),
    ("echo", {"content": "pwned", "file_name": "dangling"}, "is a symbolic link"),
    ("touch", {"file_name": "dangling"}, "File exists"),
    ("mkdir", {"dir_name": "dangling"}, "File exists"),
    ("cd", {"folder": "link_out"}, "symbolic link"),
    ("cd", {"folder": "link_in"}, "symbolic link"),
    ("cd", {"folder": "proc_root"}, "symbolic link"),
    ("find", {"path": "link_out"}, "symbolic link"),
    ("find", {"path": "sub/deeper/link_up"}, "symbolic link"),
    ("find", {"path": "../outside"}, "'..' is not allowed"),
    ("find", {"path": "sub/../.."}, "'..' is not allowed"),
    ("find", {"path": "{outside}"}, "No such file or directory"),   # '/' is the sandbox root here
    ("tail", {"file_name": "../outside/secret.txt"}, "'..' is not allowed"),
    ("rm", {"file_name": ".."}, "'..' is not allowed"),
    ("cat", {"file_name": "../outside/secret.txt"}, "Invalid character"),
    ("mv", {"source": "link_file", "destination": "grabbed.txt"}, "Not a file or directory"),
    ("cp", {"source": "link_file", "destination": "grabbed.txt"}, "Not a file or directory"),
    ("cp", {"source": "inside.txt", "destination": ".."}, "'..' is not allowed"),
    ("mv", {"source": "inside.txt", "destination": "../outside"}, "path not allowed"),
    ("touch", {"file_name": "bell\x07"}, "control character"),
    ("mkdir", {"dir_name": "nul\x00"}, "NUL character"),
    ("cat", {"file_name": "\udcff"}, "not valid Unicode"),
]


@pytest.mark.parametrize("openat2", MODES)
@pytest.mark.parametrize("tool, args, expected", TOOL_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_tool_calls_that_try_to_escape_get_error_results(escape_world, openat2, tool, args, expected):
    args = {k: v.format(outside=escape_world.outside) if isinstance(v, str) else v for k, v in args.items()}
    fs = RealFileSystem(escape_world.root, use_openat2=openat2)
    result = fs_toolset(fs, timeout_s=None).call(tool, args)
    assert result.is_error, result
    assert expected in result.content
    assert SECRET not in result.content
    assert outside_untouched(escape_world)
    assert fs.cwd == ()


def test_listing_walks_and_copies_never_follow_links(escape_world):
    fs = RealFileSystem(escape_world.root)
    found = fs.find("/")["matches"]
    assert "/link_out" in found and not any("secret" in m for m in found)
    inside_bytes = sum(p.stat().st_size for p in escape_world.root.rglob("*") if p.is_file() and not p.is_symlink())
    assert fs.du() == {"disk_usage": f"{inside_bytes} bytes"}
    assert fs.cp("sub", "sub_copy") == {"result": "'sub' copied to 'sub_copy' "
                                                  "(1 symbolic links or special files inside were not copied)"}
    assert sorted(os.listdir(escape_world.root / "sub_copy" / "deeper")) == ["f.txt"]
    assert fs.rm("link_out") == {"result": "'link_out' removed"}          # removes the link, not its target
    assert fs.rm("sub") == {"result": "'sub' removed"}                    # rm -r never descends into link_up
    assert outside_untouched(escape_world)


# --- 4. links swapped in between check and use ------------------------------------------------------

def test_directory_swapped_for_a_link_mid_walk(escape_world):
    with Jail(escape_world.root, use_openat2=False) as jail:
        def swap(stage, names):
            if stage == "walk" and names == ("sub", "deeper"):        # 'sub' is open, 'deeper' not yet
                os.rename(escape_world.root / "sub" / "deeper", escape_world.root / "sub" / "moved")
                os.symlink(escape_world.outside, escape_world.root / "sub" / "deeper")
        jail.race_hook = swap
        with pytest.raises(SandboxEscape, match="symbolic link"):
            jail.open_dir(("sub", "deeper"))


@pytest.mark.parametrize("openat2", MODES)
def test_file_swapped_for_a_link_after_the_directory_was_resolved(escape_world, openat2):
    fs = RealFileSystem(escape_world.root, use_openat2=openat2)
    fs.cd("sub")
    fs.cd("deeper")

    def swap(stage, names):
        if stage == "open" and names == ("f.txt",):
            os.replace(escape_world.root / "sub" / "deeper" / "f.txt", escape_world.root / "sub" / "g.txt")
            os.symlink(escape_world.outside / "secret.txt", escape_world.root / "sub" / "deeper" / "f.txt")
    fs.jail.race_hook = swap
    result = fs_toolset(fs, timeout_s=None).call("cat", {"file_name": "f.txt"})
    assert result.is_error and "symbolic link" in result.content and SECRET not in result.content


@pytest.mark.parametrize("openat2", MODES)
def test_cwd_replaced_by_a_link_before_resolution(escape_world, openat2):
    fs = RealFileSystem(escape_world.root, use_openat2=openat2)
    fs.cd("sub")

    def swap(stage, names):
        if names and names[0] == "sub" and (escape_world.root / "sub").is_dir() \
                and not (escape_world.root / "sub").is_symlink():
            os.rename(escape_world.root / "sub", escape_world.root / "sub_moved")
            os.symlink(escape_world.outside, escape_world.root / "sub")
    fs.jail.race_hook = swap
    with pytest.raises(SandboxEscape):
        fs.cat("secret.txt")


@pytest.mark.parametrize("openat2", MODES)
def test_racing_thread_never_lets_a_read_escape(escape_world, openat2):
    root = escape_world.root
    (root / "racy").mkdir()
    (root / "racy" / "secret.txt").write_text("harmless inside copy\n")
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            os.rename(root / "racy", root / "racy_parked")
            os.symlink(escape_world.outside, root / "racy")
            os.unlink(root / "racy")
            os.rename(root / "racy_parked", root / "racy")

    outcomes = {"read": 0, "refused": 0, "missing": 0}
    fs = RealFileSystem(root, use_openat2=openat2)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                # interleave the two threads as finely as Python allows
    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline and (outcomes["read"] < 50 or outcomes["refused"] + outcomes["missing"] < 50):
            fs.cwd = ("racy",)
            try:
                text = fs.cat("secret.txt")
            except SandboxEscape:
                outcomes["refused"] += 1
                continue
            except FileNotFoundError:
                outcomes["missing"] += 1
                continue
            assert SECRET not in str(text)
            outcomes["read"] += 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    assert outcomes["read"] > 0 and outcomes["refused"] + outcomes["missing"] > 0, outcomes
    assert outside_untouched(escape_world)


# --- 5. property: no path string gets out -----------------------------------------------------------

PIECES = ["..", ".", "", "sub", "deeper", "link_up", "link_out", "link_in", "abs_link", "loop", "outside",
          "root-evil", "root", "secret.txt", "/", "//", "\x00", "\udcff", "proc_root", "f.txt", "%2e%2e", "…"]
paths = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(PIECES), max_size=8).map("/".join),
                  st.lists(st.sampled_from(PIECES), max_size=8).map(lambda p: "/" + "/".join(p)))


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory):
    return make_escape_world(tmp_path_factory.mktemp("prop"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, openat2=st.booleans())
def test_no_path_string_resolves_outside(shared_world, path, openat2):
    jail = Jail(shared_world.root, use_openat2=openat2 and HAS_OPENAT2)
    try:
        fd = jail.open_dir(split_path(path))
    except (SandboxEscape, OSError):
        return
    finally:
        jail.close()
    try:
        real = _fd_path(fd)
    finally:
        os.close(fd)
    assert real == str(shared_world.root) or real.startswith(str(shared_world.root) + os.sep)


@pytest.fixture(scope="module")
def shared_tools(shared_world):
    fs = RealFileSystem(shared_world.root)
    yield fs, fs_toolset(fs, timeout_s=None)
    fs.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, op=st.sampled_from(["cd", "find", "tail", "cat", "ls-after-cd"]))
def test_no_tool_argument_reaches_outside(shared_world, shared_tools, path, op):
    fs, tools = shared_tools
    fs.cwd = ()
    if op == "find":
        result = tools.call("find", {"path": path})
    elif op in ("tail", "cat"):
        result = tools.call(op, {"file_name": path})
    else:
        result = tools.call("cd", {"folder": path})
        if op == "ls-after-cd":
            result = tools.call("ls", {"a": True})
    assert SECRET not in result.content
    with fs.jail.directory(fs.cwd) as fd:
        assert _inside(fs.jail, fd)
    assert outside_untouched(shared_world)
