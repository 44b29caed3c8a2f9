"""Data safety: tinygpt never deletes or overwrites a user's file it did not create (init-model, saved KV files),
never writes into the embedded default model, and refuses `""`, `.`, `~`, the current directory and its ancestors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygpt.runtime.presets import MARKER, InitModelError, InitSpec, check_target, init_model

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]


def run(*args, cwd=None, env=None):
    return subprocess.run(TINYGPT + list(args), capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding a user's file, with HOME inside it; cwd is a subdirectory."""
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("target", ["", ".", "..", "~", "~/", "./", "WORK", "HOME"])
@pytest.mark.parametrize("force", [False, True])
def test_init_model_refuses_cwd_home_and_ancestors(user_dir, target, force):
    target = {"WORK": str(user_dir), "HOME": str(user_dir.parent)}.get(target, target)
    with pytest.raises(InitModelError, match="empty|current directory"):
        check_target(target, force=force)


def test_init_model_empty_path_with_force_keeps_the_users_file(user_dir):
    r = run("init-model", "", "--force", cwd=user_dir, env={"HOME": str(user_dir.parent)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("tinygpt init-model: error: the model directory is empty")
    assert (user_dir / "notes.txt").read_text() == "mine" and os.listdir(user_dir) == ["notes.txt"]


def test_force_never_replaces_a_directory_tinygpt_did_not_make(tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "a.txt").write_text("a")
    (victim / "sub" / "b.txt").write_text("b")
    before = snapshot(victim)
    r = run("init-model", str(victim), "--force")
    assert r.returncode == 2 and "not empty" in r.stderr and "never replaces" in r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temp dir left either


def test_force_replaces_only_its_own_model_and_leaves_no_temp_dirs(tmp_path):
    out = init_model(tmp_path / "m", InitSpec(seed=0))
    first = (out / "model.safetensors").read_bytes()
    with pytest.raises(InitModelError, match="already holds a tinygpt model; pass --force"):
        init_model(out, InitSpec(seed=1))
    steps = []
    init_model(out, InitSpec(seed=1), force=True, progress=steps.append)
    assert (out / "model.safetensors").read_bytes() != first
    assert json.loads((out / MARKER).read_text())["seed"] == 1
    assert len(steps) == 4 and steps[-1] == f"writing {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("listed", [True, False])  # markers list their files; older ones did not
def test_force_never_deletes_a_users_file_inside_its_own_model(tmp_path, listed):
    out = init_model(tmp_path / "m", InitSpec(seed=0))
    if not listed:
        meta = json.loads((out / MARKER).read_text())
        (out / MARKER).write_text(json.dumps({k: v for k, v in meta.items() if k != "files"}))
    (out / "my-notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(InitModelError, match=r"holds files tinygpt did not write \(my-notes.txt\)"):
        init_model(out, InitSpec(seed=1), force=True)
    assert snapshot(out) == before
    (out / "my-notes.txt").unlink()
    init_model(out, InitSpec(seed=1), force=True)  # only its own files left: replaced
    assert json.loads((out / MARKER).read_text())["seed"] == 1


@pytest.mark.parametrize("points_to", ["user", "model"])
def test_force_never_follows_a_symlink(tmp_path, tiny_model_dir, points_to):
    real = tiny_model_dir if points_to == "model" else tmp_path / "user"
    if points_to == "user":
        real.mkdir()
        (real / "keep.txt").write_text("mine")
    before = snapshot(real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(InitModelError, match="symbolic link"):
        init_model(link, force=True)
    assert link.is_symlink() and snapshot(real) == before


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(InitModelError, match="exists and is not a directory"):
        check_target(f, force=True)
    with pytest.raises(InitModelError, match="is a file, not a directory"):
        check_target(f / "sub" / "model", force=True)
    assert f.read_text() == "mine"


def test_the_embedded_default_is_only_read(tmp_path):
    """The default model ships in the package: a command on it creates nothing, even with an unwritable cache."""
    from tinygpt.runtime.store import DEFAULT_DIR

    before = snapshot(DEFAULT_DIR)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("generate", "--max-tokens", "4", "hi", env={"TINYGPT_CACHE": str(blocker / "cache"), "TINYGPT_CONFIG": ""})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() and blocker.read_text() == "x" and snapshot(DEFAULT_DIR) == before


def test_kv_save_never_overwrites_a_users_file(tiny_engine, tmp_path):
    from tinygpt.runtime.kv_cache import KVCacheError

    session = tiny_engine.new_session()
    tiny_engine.prefill(tiny_engine.encode("hello"), session)
    user = tmp_path / "notes.safetensors"
    user.write_bytes(b"user data")
    with pytest.raises(KVCacheError, match="not a tinygpt KV cache; tinygpt will not overwrite it"):
        tiny_engine.save_session(session, tmp_path / "notes")
    assert user.read_bytes() == b"user data"
    link = tmp_path / "link.safetensors"
    link.symlink_to(user)
    with pytest.raises(KVCacheError, match="symbolic link"):
        tiny_engine.save_session(session, link)
    path = tiny_engine.save_session(session, tmp_path / "kv")
    path = tiny_engine.save_session(session, tmp_path / "kv")  # its own file may be replaced
    assert tiny_engine.load_session(path).ids == session.ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv.safetensors", "link.safetensors", "notes.safetensors"]


def test_interrupted_replacement_puts_the_old_model_back(tmp_path, monkeypatch):
    """Ctrl-C between moving the old model aside and moving the new one in: the old model is restored."""
    from tinygpt.runtime import presets

    out = init_model(tmp_path / "m", InitSpec(seed=0))
    before = snapshot(out)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) == 2:  # 1: old model aside, 2: new model in
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(presets.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        init_model(out, InitSpec(seed=1), force=True)
    monkeypatch.undo()
    assert len(calls) == 3 and snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_quickstart_default_run_dir_is_continued_only_if_quickstart_made_it(tmp_path, monkeypatch):
    """The default --out runs/quickstart: a user's non-empty directory there is refused untouched (also when its
    quickstart.json is someone else's or a symlink); an earlier quickstart run there is reopened."""
    from tinygpt.cli_quickstart import RunDirError, check_run_dir, run_dir

    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "runs" / "quickstart"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("mine")
    r = run("quickstart", "--model", "default", cwd=tmp_path,
            env={"TINYGPT_CACHE": str(tmp_path / "cache"), "TINYGPT_CONFIG": ""})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "tinygpt quickstart: error: --out runs/quickstart exists and is neither empty nor a quickstart run; "
        "quickstart writes only into a new directory or continues its own. Choose another --out")
    assert snapshot(taken) == {"mine.txt": b"mine"} and sorted(os.listdir(tmp_path)) == ["runs"]
    default = Path("runs/quickstart")
    elsewhere = tmp_path / "theirs.json"
    elsewhere.write_text(json.dumps({"created_by": "tinygpt quickstart", "status": "complete"}))
    for status in ('{"created_by": "tinygpt retrain"}', "not json", None):
        if status is None:
            (taken / "quickstart.json").symlink_to(elsewhere)
        else:
            (taken / "quickstart.json").write_text(status)
        with pytest.raises(RunDirError, match="is neither empty nor a quickstart run"):
            check_run_dir(default)
        (taken / "quickstart.json").unlink()
    (taken / "quickstart.json").write_text(json.dumps({"created_by": "tinygpt quickstart", "status": "interrupted"}))
    check_run_dir(default)  # its own run: continued
    assert run_dir(default) == default
    assert json.loads((taken / "quickstart.json").read_text())["status"] == "running"
    assert (taken / "mine.txt").read_text() == "mine"
    for fresh in (Path("runs/new"), Path("runs/empty")):
        if fresh.name == "empty":
            fresh.mkdir()
        check_run_dir(fresh)  # new or empty: fine


def test_model_creation_progress_on_a_terminal_and_when_piped(tmp_path):
    import pty

    r = run("init-model", str(tmp_path / "piped"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["init-model: [1/4] loading MLX", "init-model: [2/4] building the bpe tokenizer",
                                     "init-model: [3/4] initialising tiny weights (seed 0, float32)",
                                     f"init-model: [4/4] writing {tmp_path / 'piped'}"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(TINYGPT + ["init-model", str(tmp_path / "tty")], stdout=subprocess.DEVNULL,
                            stderr=follower)
    os.close(follower)
    seen = b""
    while True:  # read while it runs (a full pty would block it); EIO once the child closes its end
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    assert b"init-model: done" in seen and b"[1/4]" not in seen  # a rich bar, not the plain lines


@pytest.mark.parametrize("at", ["[1/4]", "[4/4]"])
def test_ctrl_c_during_init_model_leaves_nothing_behind(tmp_path, at):
    """SIGINT once a step is reported (waits for output, not for time): exit 130, no model, no temp dir."""
    import signal

    proc = subprocess.Popen(TINYGPT + ["init-model", str(tmp_path / "m")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if at in line:
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the last step finished before the signal arrived: a complete model is fine
        assert (tmp_path / "m" / MARKER).exists() and sorted(os.listdir(tmp_path)) == ["m"]
        return
    assert proc.returncode == 130 and rest.rstrip().endswith("interrupted") and "Traceback" not in rest
    assert os.listdir(tmp_path) == []


def test_ctrl_c_just_as_the_temp_dir_is_made_leaves_nothing_behind(tmp_path, monkeypatch):
    """The interrupt may land right after the "writing" step is reported, while the temp dir is being made."""
    from pathlib import Path as P

    from tinygpt.runtime import presets

    real_mkdir = P.mkdir

    def mkdir_then_interrupt(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.startswith(".m."):
            raise KeyboardInterrupt

    monkeypatch.setattr(P, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        presets._write_marked(tmp_path / "m", False, "model", lambda d: (d / "x").write_text("x"), {})
    assert os.listdir(tmp_path) == []
