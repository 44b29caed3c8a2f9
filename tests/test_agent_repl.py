"""`tinygpt agent` driven through a real pseudo-terminal, as a person would use it."""
import os
import pty
import select
import subprocess
import sys
import time

from tinygpt.traces.reader import list_traces, read_episode


def read_until(fd, needle, timeout=60.0):
    buf = b""
    end = time.time() + timeout
    while needle.encode() not in buf:
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {needle!r}; got:\n{buf.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace")


def test_agent_repl_in_a_pty(tiny_model_dir, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinygpt.cli", "agent", "--model", str(tiny_model_dir), "--tool-choice", "ls",
         "--max-steps", "2", "--max-tokens", "96", "--temperature", "1.0", "--seed", "5",
         "--trajectory-dir", str(tmp_path / "traces")],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True, cwd=tmp_path)
    os.close(slave)
    try:
        read_until(master, ">>> ")
        os.write(master, b"/tools\n")
        assert "mkdir(dir_name)" in read_until(master, ">>> ")
        os.write(master, b"what is here?\n")
        out = read_until(master, ">>> ", timeout=120)
        assert "\u2192 " in out and ("\u2190 " in out or "\u2717 " in out)  # a call and its result were shown
        assert "ls(" in out and "current_directory_content" in out and "[max_steps, 2 steps]" in out
        os.write(master, f"/save {tmp_path}/s\n".encode())
        assert "saved to" in read_until(master, ">>> ")
        os.write(master, b"/reset\n")
        assert "new conversation" in read_until(master, ">>> ")
        os.write(master, f"/load {tmp_path}/s\n".encode())
        assert "loaded 5 messages" in read_until(master, ">>> ")
        os.write(master, b"/quit\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    (episode_path,) = list_traces(tmp_path / "traces")
    episode = read_episode(episode_path)
    assert episode.header.task_id == "repl" and episode.end is not None
