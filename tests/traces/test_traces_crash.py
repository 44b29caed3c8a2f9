"""Crash safety, in real subprocesses: kill -9 mid-episode, a full disk / file size limit, torn UTF-8 tails,
and restarting to append after each. What was written before the failure must stay readable."""
import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tinygpt.traces.atraj import Reward
from tinygpt.traces.errors import TraceError, TraceWriteError
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder

WRITER = textwrap.dedent("""
    import resource, sys, time
    from tinygpt.traces.atraj import Header, Sampling
    from tinygpt.traces.errors import TraceWriteError
    from tinygpt.traces.recorder import Recorder

    directory, fsync, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    header = Header(episode_id="victim", task_id="t", split="train", created_at=0.0, model="m",
                    model_fingerprint="f", tokenizer_hash="h", chat_template_hash="c",
                    sampling=Sampling(temperature=1.0))
    rec = Recorder(directory, header, fsync=fsync)
    i = 0
    while True:
        try:
            rec.message("user", f"event {i} " + "é✓" * (i % 50), list(range(i % 200)))
        except TraceWriteError as err:
            print("ERROR", err, flush=True)
            sys.exit(3)
        print(i, flush=True)  # printed only after the append returned
        i += 1
""")


def _script(tmp_path):
    path = tmp_path / "writer.py"
    path.write_text(WRITER)
    return path


def _expected(i):
    return f"event {i} " + "é✓" * (i % 50)


def _resume_and_finish(part, extra=3):
    rec = Recorder.resume(part)
    for j in range(extra):
        rec.message("user", f"after restart {j}", [j])
    return read_episode(rec.end(Reward(value=1.0, source="test")))


@pytest.mark.parametrize("fsync", ["event", "episode"])
def test_kill_9_mid_episode_loses_at_most_the_last_record(tmp_path, fsync):
    proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), str(tmp_path), fsync, "0"],
                            stdout=subprocess.PIPE, text=True)
    confirmed = -1
    while confirmed < 150:
        confirmed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    part = tmp_path / "victim.atraj.part"
    episode = read_episode(part)
    contents = [e.content for e in episode.events]
    assert len(contents) >= confirmed + 1  # every confirmed append survived
    assert contents == [_expected(i) for i in range(len(contents))]  # in order, none garbled
    print(f"kill -9 after {confirmed + 1} confirmed appends: {len(contents)} readable, "
          f"torn tail {episode.torn_bytes} bytes")
    finished = _resume_and_finish(part)
    assert finished.complete and finished.torn_bytes == 0
    assert [e.content for e in finished.events][: len(contents)] == contents
    assert len(finished.events) == len(contents) + 3


def test_file_size_limit_gives_a_clear_error_and_keeps_earlier_records(tmp_path):
    limit = 20_000
    proc = subprocess.run([sys.executable, str(_script(tmp_path)), str(tmp_path), "event", str(limit)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    error = lines[-1]
    confirmed = int(lines[-2]) + 1
    assert "File too large (EFBIG)" in error and f"the {confirmed + 1} records before it are intact" in error
    assert "Recorder.resume" in error and "Traceback" not in proc.stderr
    part = tmp_path / "victim.atraj.part"
    assert part.stat().st_size <= limit
    episode = read_episode(part)
    assert episode.torn_bytes == 0  # the half-written line was truncated away
    assert [e.content for e in episode.events] == [_expected(i) for i in range(confirmed)]
    finished = _resume_and_finish(part)  # restart without the limit and append
    assert finished.complete and len(finished.events) == confirmed + 3


def test_disk_full_midway_through_a_line_truncates_it_and_says_so(tmp_path, header_factory, monkeypatch):
    rec = Recorder(tmp_path, header_factory("full"), fsync="none")
    rec.message("user", "before", [1])
    real_write = os.write

    def full_disk(fd, data):  # the kernel's behaviour on a full disk: a short write, then ENOSPC
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(TraceWriteError, match=r"No space left on device \(ENOSPC\); the 2 records before it"):
        rec.message("user", "lost " * 50, [2])
    monkeypatch.setattr(os, "write", real_write)
    episode = read_episode(rec.path)
    assert episode.torn_bytes == 0 and [e.content for e in episode.events] == ["before"]
    rec.message("user", "space again", [3])  # the same writer goes on once space is back
    final = read_episode(rec.end(Reward(value=0.0, source="test")))
    assert [e.content for e in final.events] == ["before", "space again"]


def test_tail_cut_inside_utf8_then_restart_appends_on_a_fresh_line(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory("utf"), fsync="none")
    for word in ("naïve", "日本語のテキスト", "emoji 🎉🎉🎉"):
        rec.message("user", word, [len(word)])
    rec.close()
    part = tmp_path / "utf.atraj.part"
    data = part.read_bytes()
    cut = data.rindex("🎉".encode()) + 2  # inside the 4-byte emoji of the last line
    part.write_bytes(data[:cut])
    torn = read_episode(part)
    assert [e.content for e in torn.events] == ["naïve", "日本語のテキスト"] and torn.torn_bytes > 0
    finished = _resume_and_finish(part, extra=1)
    assert [e.content for e in finished.events] == ["naïve", "日本語のテキスト", "after restart 0"]
    assert finished.torn_bytes == 0 and finished.complete


HEADER_TOO_BIG = textwrap.dedent("""
    import os, resource, sys
    from tinygpt.traces.atraj import Header, Sampling
    from tinygpt.traces.errors import TraceWriteError
    from tinygpt.traces.recorder import Recorder

    header = Header(episode_id="nospace", task_id="t", split="train", created_at=0.0, model="m",
                    model_fingerprint="f", tokenizer_hash="h", chat_template_hash="c",
                    sampling=Sampling(temperature=1.0))
    before = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # the header line is longer: a real short write, EFBIG
    try:
        Recorder(sys.argv[1], header, fsync=sys.argv[2])
    except TraceWriteError as err:
        print("ERROR", err)
    print("FDS", before, len(os.listdir("/proc/self/fd")))
""")


@pytest.mark.parametrize("fsync", ["event", "none"])
def test_failed_header_write_closes_the_file_and_leaves_nothing(tmp_path, header_factory, fsync):
    script = tmp_path / "header.py"
    script.write_text(HEADER_TOO_BIG)
    traces = tmp_path / "traces"
    proc = subprocess.run([sys.executable, str(script), str(traces), fsync], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    error, fds = proc.stdout.splitlines()
    assert error.startswith("ERROR") and "could not write the header of episode 'nospace'" in error
    assert "File too large (EFBIG); nothing was kept" in error and "record the episode again" in error
    _, before, after = fds.split()
    assert before == after  # the descriptor was closed: nothing keeps the file system busy
    assert list(traces.iterdir()) == []  # no 0-byte .part blocking a new recording under that id
    rec = Recorder(traces, header_factory("nospace"), fsync="none")  # the same id records fine afterwards
    rec.message("user", "hi", [1])
    assert read_episode(rec.end(Reward(value=1.0, source="test"))).complete


def test_an_empty_part_left_by_an_old_failed_header_write_is_taken_over(tmp_path, header_factory):
    (tmp_path / "old.atraj.part").write_bytes(b"")
    rec = Recorder(tmp_path, header_factory("old"), fsync="none")
    rec.message("user", "hi", [1])
    assert read_episode(rec.end(Reward(value=1.0, source="test"))).events[0].content == "hi"
    (tmp_path / "busy.atraj.part").write_bytes(b"x")  # anything in it is not ours to overwrite
    with pytest.raises(TraceError, match="already exists; resume it"):
        Recorder(tmp_path, header_factory("busy"), fsync="none")
    assert (tmp_path / "busy.atraj.part").read_bytes() == b"x"


KILLED_BEFORE_RENAME = textwrap.dedent("""
    import os, signal, sys
    from tinygpt.traces.atraj import Header, Reward, Sampling
    from tinygpt.traces.recorder import Recorder

    header = Header(episode_id="late", task_id="t", split="train", created_at=0.0, model="m",
                    model_fingerprint="f", tokenizer_hash="h", chat_template_hash="c",
                    sampling=Sampling(temperature=1.0))
    rec = Recorder(sys.argv[1], header, fsync="event")
    rec.message("user", "hello", [1, 2])
    rec.model_call(prompt_token_ids=[1, 2, 3], output_token_ids=[4, 5], text="hi", finish_reason="stop",
                   latency_s=0.1)
    os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # die after the end line, before the rename
    rec.end(Reward(value=1.0, source="test"))
""")


def test_killed_between_end_line_and_rename_is_complete_and_resume_renames(tmp_path):
    from tinygpt.traces.to_data import traces_to_data
    script = tmp_path / "late.py"
    script.write_text(KILLED_BEFORE_RENAME)
    traces = tmp_path / "traces"
    proc = subprocess.run([sys.executable, str(script), str(traces)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    part = traces / "late.atraj.part"
    assert read_episode(part).complete and not (traces / "late.atraj").exists()
    report = traces_to_data([traces], tmp_path / "out")  # complete, so read: not "incomplete"
    assert (report.written, report.incomplete, report.rows) == (1, 0, 1)
    rec = Recorder.resume(part)
    assert rec.finished and rec.path == traces / "late.atraj" and not part.exists()
    episode = read_episode(rec.path)
    assert episode.complete and [e.content for e in episode.events[:1]] == ["hello"]
    with pytest.raises(TraceError, match="closed or ended"):
        rec.message("user", "late")
    report = traces_to_data([traces], tmp_path / "out2")
    assert (report.written, report.incomplete) == (1, 0)
