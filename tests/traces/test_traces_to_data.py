"""traces_to_data end to end: every episode lands in exactly one count, outputs are exact and atomic."""
import json
import os

import msgspec
import pytest

from tinygpt.traces.atraj import Reward, Verdict
from tinygpt.traces.errors import TraceError
from tinygpt.traces.export import TrainingRow
from tinygpt.traces.recorder import Recorder
from tinygpt.traces.to_data import ExportConfig, traces_to_data


def _rows(out):
    return [msgspec.json.decode(line, type=TrainingRow) for line in (out / "rows.jsonl").read_bytes().splitlines()]


def _chat(out):
    return [json.loads(line) for line in (out / "chat.jsonl").read_text().splitlines()]


@pytest.fixture
def mixed(tmp_path, episode_factory, header_factory):
    """A directory with one episode of every kind traces-to-data must tell apart."""
    src = tmp_path / "src"
    recorded = {}
    for name, kw in {
        "a-good": dict(user="alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"),
        "b-failed": dict(user="a task the checker failed on entirely", passed=False, reward=0.0),
        "c-eval-split": dict(user="an episode recorded on the eval split only", split="eval"),
        "d-other-model": dict(user="an episode from another model family", model="big"),
        "e-exact-copy": dict(user="alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"),
        "f-contaminated": dict(user="please solve: the quick brown fox jumps over the lazy dog near the river bank"),
        "g-low-reward": dict(user="a passed episode with a small reward value", reward=0.2),
    }.items():
        recorded[name] = episode_factory(src, name, seed=len(name), **kw)
    with Recorder(src, header_factory("h-cloud"), fsync="none") as rec:
        rec.message("user", "hello from a cloud turn with no ids at all")
        rec.model_call(prompt_token_ids=None, output_token_ids=None, text="cloud answer", finish_reason="stop",
                       latency_s=1.0, token_exact=False, model="cloud")
        rec.end(Reward(value=1.0, source="t"), Verdict(passed=True, checker="t"))
    Recorder(src, header_factory("i-unfinished"), fsync="none").close()
    torn, _ = episode_factory(src, "j-torn-end", user="an episode whose end line was torn off")
    torn.with_name("j-torn-end.atraj.part").write_bytes(torn.read_bytes()[:-20])  # killed mid end line
    torn.unlink()
    corrupt, _ = episode_factory(src, "k-corrupt", user="an episode damaged in the middle")
    data = bytearray(corrupt.read_bytes())
    data[300] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    damaged_end, _ = episode_factory(src, "l-damaged-end", user="a finished episode whose end line was damaged")
    data = bytearray(damaged_end.read_bytes())
    data[-10] ^= 0xFF
    damaged_end.write_bytes(bytes(data))
    recorded["m-not-renamed"] = episode_factory(src, "m-not-renamed", user="killed after its end line was written "
                                                "but before the rename to .atraj, so it is complete")
    recorded["m-not-renamed"][0].rename(src / "m-not-renamed.atraj.part")
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"id": "e-1", "prompt": "The quick brown fox jumps over the lazy dog near the "
                                                        "river bank today"}) + "\n")
    return src, evals, recorded


def test_every_episode_is_counted_once_and_the_right_ones_written(tmp_path, mixed):
    src, evals, recorded = mixed
    out = tmp_path / "out"
    report = traces_to_data([src], out, ExportConfig(require_pass=True, min_reward=0.5, split=("train",),
                                                     model=("tiny",), decontaminate=(str(evals),)))
    assert (report.files, report.read, report.corrupt, report.incomplete, report.torn) == (13, 11, 2, 2, 1)
    assert report.filtered == {"not_passed": 1, "split": 1, "model": 1, "reward": 1}
    assert (report.contaminated, report.exact_dup, report.near_dup) == (1, 1, 0)
    assert (report.written, report.rows, report.chat_only) == (3, 2, 1)
    assert "k-corrupt.atraj: line" in report.errors[0]
    assert "l-damaged-end.atraj: the last line" in report.errors[1] and "finished" in report.errors[1]
    assert [c["episode_id"] for c in _chat(out)] == ["a-good", "h-cloud", "m-not-renamed"]
    row, late = _rows(out)
    _, calls = recorded["a-good"]
    assert row.episode_id == "a-good" and row.input_ids == [i for p, o in calls for i in p + o]
    _, calls = recorded["m-not-renamed"]
    assert late.episode_id == "m-not-renamed" and late.input_ids == [i for p, o in calls for i in p + o]
    assert report.tokens == len(row.input_ids) + len(late.input_ids)
    assert report.trained_tokens == sum(row.loss_mask) + sum(late.loss_mask)
    assert json.loads((out / "report.json").read_text())["written"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["chat.jsonl", "report.json", "rows.jsonl"]


def test_without_filters_everything_finished_and_readable_is_kept(tmp_path, mixed):
    src, _, _ = mixed
    report = traces_to_data([src], tmp_path / "out", ExportConfig(exact_dedupe=False, near_dedupe=False))
    assert report.written == 9  # 13 files - 1 unfinished - 1 torn end - 2 corrupt
    assert report.filtered == {} and report.exact_dup == report.near_dup == 0


def test_worker_processes_give_byte_identical_output(tmp_path, mixed):
    src, evals, _ = mixed
    one = traces_to_data([src], tmp_path / "one", ExportConfig(workers=1, decontaminate=(str(evals),)))
    two = traces_to_data([src], tmp_path / "two", ExportConfig(workers=2, decontaminate=(str(evals),)))
    for name in ("rows.jsonl", "chat.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert msgspec.structs.replace(one, seconds=0, config={}) == msgspec.structs.replace(two, seconds=0, config={})


def test_bad_input_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="neither a trace file nor a directory"):
        traces_to_data([tmp_path / "missing"], tmp_path / "out")
    with pytest.raises(TraceError, match="--threshold must be in"):
        traces_to_data([tmp_path], tmp_path / "out", ExportConfig(threshold=1.5))
    with pytest.raises(TraceError, match="--num-perm"):
        traces_to_data([tmp_path], tmp_path / "out", ExportConfig(num_perm=4))


def test_a_failed_run_leaves_no_partial_outputs(tmp_path, episode_factory):
    src = tmp_path / "src"
    episode_factory(src, "x")
    out = tmp_path / "out"

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        traces_to_data([src], out, progress=boom)
    assert list(out.iterdir()) == []


def test_a_fifo_named_like_a_trace_is_counted_corrupt_never_waited_on(tmp_path, episode_factory):
    from tinygpt.traces.reader import read_episode
    src = tmp_path / "src"
    episode_factory(src, "ok")
    os.mkfifo(src / "pipe.atraj")  # opening it for reading would block until someone writes
    report = traces_to_data([src], tmp_path / "out")
    assert (report.written, report.corrupt) == (1, 1) and "pipe.atraj is not a regular file" in report.errors[0]
    with pytest.raises(TraceError, match="pipe.atraj is not a regular file"):
        read_episode(src / "pipe.atraj")
