"""The Recorder: what the agent loop drives. Files, finalization, checks on what it is handed, resume."""
import pytest

from tinygpt.traces.atraj import End, Message, ModelCall, Reward, ToolCall, ToolResult, Verdict
from tinygpt.traces.errors import TraceError
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder


def _call(rec, prompt, out, **kw):
    return rec.model_call(prompt_token_ids=prompt, output_token_ids=out, text="t", finish_reason="stop",
                          latency_s=0.1, **kw)


def test_episode_is_part_while_recording_and_atraj_after_end(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory("e1"), fsync="event")
    assert rec.path == tmp_path / "e1.atraj.part" and rec.path.exists()
    rec.message("user", "hi", [1, 2])
    _call(rec, [1, 2, 3], [4, 5], tool_calls=[{"id": "a", "name": "ls", "arguments": {"p": 1}}])
    rec.tool_result(call_id="a", name="ls", content="x", token_ids=[6])
    _call(rec, [6, 7], [8])
    final = rec.end(Reward(value=1.0, source="checker", reason="ok"), Verdict(passed=True, checker="c"))
    assert final == tmp_path / "e1.atraj" and not (tmp_path / "e1.atraj.part").exists()
    episode = read_episode(final)
    assert episode.complete and episode.torn_bytes == 0
    assert [type(e) for e in episode.events] == [Message, ModelCall, ToolResult, ModelCall]
    assert episode.events[1].tool_calls == [ToolCall(id="a", name="ls", arguments={"p": 1})]
    assert episode.end == End(reward=Reward(value=1.0, source="checker", reason="ok"),
                              verdict=Verdict(passed=True, checker="c"))


@pytest.mark.parametrize("fsync", ["event", "episode", "none"])
def test_every_fsync_policy_writes_the_same_file(tmp_path, episode_factory, fsync):
    path, _ = episode_factory(tmp_path / fsync, "same", fsync=fsync)
    reference, _ = episode_factory(tmp_path / "ref", "same", fsync="none")
    a, b = read_episode(path), read_episode(reference)
    assert a.events == b.events and a.end == b.end


def test_bad_fsync_policy_is_refused(tmp_path, header_factory):
    with pytest.raises(TraceError, match="fsync must be one of event, episode, none"):
        Recorder(tmp_path, header_factory(), fsync="sometimes")
    assert list(tmp_path.iterdir()) == []  # refused before any file was created
    with pytest.raises(TraceError, match="leave Header.version at its default"):
        Recorder(tmp_path, header_factory(version=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 129, "sp ace"])
def test_episode_ids_that_cannot_name_a_file_are_refused(tmp_path, header_factory, bad):
    with pytest.raises(TraceError, match="cannot name a file"):
        Recorder(tmp_path, header_factory(bad))


def test_an_episode_is_never_recorded_twice(tmp_path, episode_factory, header_factory):
    episode_factory(tmp_path, "dup")
    with pytest.raises(TraceError, match="already recorded"):
        Recorder(tmp_path, header_factory("dup"))
    Recorder(tmp_path, header_factory("other")).close()
    with pytest.raises(TraceError, match="already exists; resume it"):
        Recorder(tmp_path, header_factory("other"))


def test_exception_in_the_loop_leaves_a_readable_part_file(tmp_path, header_factory):
    with pytest.raises(RuntimeError, match="loop bug"):
        with Recorder(tmp_path, header_factory("crash")) as rec:
            rec.message("user", "hi", [1])
            raise RuntimeError("loop bug")
    episode = read_episode(tmp_path / "crash.atraj.part")
    assert not episode.complete and [e.content for e in episode.events] == ["hi"]


def test_leaving_the_block_without_end_is_an_error_and_keeps_the_part(tmp_path, header_factory):
    with pytest.raises(TraceError, match="without Recorder.end"):
        with Recorder(tmp_path, header_factory("noend")):
            pass
    assert (tmp_path / "noend.atraj.part").exists()


def test_nothing_can_be_recorded_after_end(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory())
    _call(rec, [1], [2])
    rec.end(Reward(value=0.0, source="s"))
    with pytest.raises(TraceError, match="closed or ended"):
        rec.message("user", "late")
    with pytest.raises(TraceError, match="closed or ended"):
        rec.end(Reward(value=0.0, source="s"))


def test_segment_ids_must_be_a_run_of_the_next_prompt(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory())
    rec.message("system", "s", [1, 2])
    rec.message("user", "u", [3, 4])
    with pytest.raises(TraceError, match="Message recorded since the last call are not a run"):
        _call(rec, [1, 2, 4, 3, 9], [5])
    with pytest.raises(TraceError, match="not a run"):
        _call(rec, [3, 4, 1, 2, 9], [5])  # right ids, wrong order
    _call(rec, [1, 2, 3, 4, 9], [5])
    rec.tool_result(call_id="x", name="ls", content="r", token_ids=[7, 8])
    with pytest.raises(TraceError, match="ToolResult"):
        _call(rec, [7, 0, 8], [5])
    _call(rec, [6, 7, 8, 9], [5])
    rec.close()


def test_token_id_checks(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory())
    with pytest.raises(TraceError, match="non-negative"):
        _call(rec, [1, -2], [3])
    with pytest.raises(TraceError, match="one logprob per sampled token"):
        _call(rec, [1], [2, 3], logprobs=[-0.1])
    with pytest.raises(TraceError, match="token_exact=False"):
        rec.model_call(prompt_token_ids=None, output_token_ids=None, text="x", finish_reason="stop", latency_s=1)
    call = rec.model_call(prompt_token_ids=None, output_token_ids=None, text="from the cloud", finish_reason="stop",
                          latency_s=1, token_exact=False, model="cloud-model")
    assert call.token_exact is False
    rec.close()
    assert read_episode(tmp_path / "ep1.atraj.part").events == [call]


def test_resume_continues_after_a_torn_tail(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory("r"))
    rec.message("user", "u", [1, 2])
    rec.close()
    part = tmp_path / "r.atraj.part"
    with open(part, "ab") as f:
        f.write(b'0badc0de {"kind":"message","role":"us')  # a torn half line
    rec = Recorder.resume(part)
    assert rec.torn_bytes == 37
    with pytest.raises(TraceError, match="not a run"):  # resume remembers the pending user ids
        _call(rec, [2, 1], [3])
    _call(rec, [1, 2], [3])
    final = rec.end(Reward(value=1.0, source="s"))
    episode = read_episode(final)
    assert episode.complete and episode.torn_bytes == 0 and len(episode.events) == 2


def test_resume_refuses_finished_or_headerless_files(tmp_path, header_factory, episode_factory):
    final, _ = episode_factory(tmp_path, "done")
    with pytest.raises(TraceError, match="not an unfinished episode"):
        Recorder.resume(final)
    empty = tmp_path / "empty.atraj.part"
    empty.write_bytes(b"")
    with pytest.raises(TraceError, match="no intact header"):
        Recorder.resume(empty)


def test_rollback_cuts_the_episode_back_to_a_mark_torn_tail_included(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory("rb"), fsync="event")
    rec.message("user", "kept", [1, 2])
    mark, before = rec.mark(), rec.path.read_bytes()
    rec.message("user", "dropped", [3])
    with open(rec.path, "ab") as f:  # an interrupted write: half a line
        f.write(b"0123abcd {\"seq\":3,")
    rec.rollback(mark)
    assert rec.path.read_bytes() == before
    _call(rec, [1, 2, 9], [5])  # the checks expect the kept message's ids in the prompt, no longer the dropped one's
    episode = read_episode(rec.end(Reward(value=0.0, source="t")))
    assert [e.content for e in episode.events if isinstance(e, Message)] == ["kept"]


def test_discard_removes_only_an_episode_this_recorder_created(tmp_path, header_factory):
    rec = Recorder(tmp_path, header_factory("gone"))
    rec.message("user", "x", [1])
    rec.discard()
    assert list(tmp_path.iterdir()) == []
    rec = Recorder(tmp_path, header_factory("kept"))
    rec.message("user", "x", [1])
    rec.close()
    resumed = Recorder.resume(tmp_path / "kept.atraj.part")
    with pytest.raises(TraceError, match="was resumed, not created by this recorder; it is kept"):
        resumed.discard()
    assert (tmp_path / "kept.atraj.part").exists()
