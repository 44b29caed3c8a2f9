"""The bulk-export view: same records and checks as the reader, rows byte-identical to the Struct path."""
import os
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.traces.atraj import Message, ModelCall, Reward, ToolResult
from tinygpt.traces.errors import CorruptTraceError, TraceError
from tinygpt.traces.export import calls_with_errors, chat_record, dedupe_text, training_row
from tinygpt.traces.raw_episode import RawMessage, RawModelCall, RawToolResult, id_count, read_raw_episode, row_json
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder


@pytest.mark.parametrize("raw, full", [(RawMessage, Message), (RawModelCall, ModelCall), (RawToolResult, ToolResult)])
def test_raw_records_mirror_the_format_records(raw, full):
    assert raw.__struct_fields__ == full.__struct_fields__
    assert raw.__struct_config__.tag == full.__struct_config__.tag
    assert raw.__struct_config__.forbid_unknown_fields and raw.__struct_config__.frozen


def test_row_json_is_byte_identical_to_encoding_the_training_row(tmp_path, episode_factory):
    path, _ = episode_factory(tmp_path, steps=3)
    full, raw = read_episode(path), read_raw_episode(path)
    row = training_row(full)
    line, tokens, trained = row_json(raw)
    assert line == msgspec.json.encode(row) + b"\n"
    assert (tokens, trained) == (len(row.input_ids), sum(row.loss_mask))
    assert chat_record(raw) == chat_record(full) and dedupe_text(raw) == dedupe_text(full)


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.lists(st.integers(0, 2**32 - 1), max_size=12),
                                st.lists(st.integers(0, 2**32 - 1), max_size=12), st.booleans()),
                      min_size=1, max_size=5))
def test_raw_rows_equal_struct_rows_for_any_ids(tmp_path_factory, header_factory, calls):
    directory = tmp_path_factory.mktemp("raw")
    with Recorder(directory, header_factory("r"), fsync="none") as rec:
        for number, (prompt, out, fails) in enumerate(calls):
            rec.model_call(prompt_token_ids=prompt, output_token_ids=out, text="", finish_reason="stop",
                           latency_s=0.0, tool_calls=[{"id": f"c{number}", "name": "ls", "arguments": {}}])
            rec.tool_result(call_id=f"c{number}", name="ls", content="", is_error=fails)
        path = rec.end(Reward(value=0.0, source="prop"))
    full, raw = read_episode(path), read_raw_episode(path)
    for masked in (False, True):
        expected = msgspec.json.encode(training_row(full, mask_error_turns=masked)) + b"\n"
        assert row_json(raw, calls_with_errors(raw) if masked else set())[0] == expected


def _line(obj) -> bytes:
    payload = msgspec.json.encode(obj)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


@pytest.mark.parametrize("ids", [[1.5, 2], [-1, 2], ["7"]])
def test_ids_that_are_not_non_negative_integers_are_refused(tmp_path, header_factory, ids):
    call = {"kind": "model_call", "prompt_token_ids": [1], "output_token_ids": ids, "text": "",
            "finish_reason": "stop", "latency_s": 0.0}
    path = tmp_path / "bad.atraj"
    path.write_bytes(_line(header_factory()) + _line(call))
    with pytest.raises(CorruptTraceError):
        row_json(read_raw_episode(path))
    with pytest.raises(CorruptTraceError):
        read_episode(path)


def test_id_count():
    counts = [id_count(msgspec.Raw(r)) for r in (b"null", b"[]", b"[7]", b"[1,22,333]", b"[ 1 , 2 ]")]
    assert counts == [0, 0, 1, 3, 2]
    with pytest.raises(CorruptTraceError, match="non-negative integer"):
        id_count(msgspec.Raw(b"[1.5]"))


def test_raw_reader_reports_the_same_errors(tmp_path, episode_factory):
    path, _ = episode_factory(tmp_path, "dmg")
    data = bytearray(path.read_bytes())
    data[150] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptTraceError, match="line 1 .* fails its CRC"):
        read_raw_episode(path)
    with pytest.raises(TraceError, match="does not exist"):
        read_raw_episode(tmp_path / "nope.atraj")


def test_summaries_agree_between_readers(tmp_path, episode_factory):
    from tinygpt.traces.summary import summarize
    path, calls = episode_factory(tmp_path, steps=2)
    summary = summarize(read_raw_episode(path))
    assert summary == summarize(read_episode(path))
    assert summary.prompt_tokens == sum(len(p) for p, _ in calls) and summary.output_tokens == sum(len(o) for _, o in calls)


def test_unreadable_files_are_trace_errors(tmp_path):
    with pytest.raises(TraceError, match="is a directory"):
        read_raw_episode(tmp_path)
    locked = tmp_path / "locked.atraj"
    locked.write_bytes(b"x")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything
        pytest.skip("running as root: file permissions are not enforced")
    with pytest.raises(TraceError, match="cannot read"):
        read_raw_episode(locked)


def test_read_trace_files_reads_many_and_reports_each_failure(tmp_path, episode_factory):
    from tinygpt.traces.reader import read_trace_files
    a, _ = episode_factory(tmp_path, "a")
    b, _ = episode_factory(tmp_path, "b")
    got = read_trace_files([str(a), str(tmp_path / "gone.atraj"), str(b), str(tmp_path)])
    assert got[0] == a.read_bytes() and got[2] == b.read_bytes()
    assert isinstance(got[1], TraceError) and "does not exist" in str(got[1])
    assert isinstance(got[3], TraceError) and "is a directory" in str(got[3])
