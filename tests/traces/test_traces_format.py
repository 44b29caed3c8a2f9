"""The .atraj records and line framing: strict Structs, CRC lines, torn tails dropped, damage refused."""
import json
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.traces.atraj import FORMAT_VERSION, End, Message, ModelCall, Reward, check_model_call
from tinygpt.traces.errors import CorruptTraceError, TraceError
from tinygpt.traces.line import decode_payload, encode_line, split_lines
from tinygpt.traces.reader import parse_records, read_episode


def _file(header, n_messages=3, text="héllo wörld ✓"):
    lines = [encode_line(header, 0)]
    lines += [encode_line(Message(role="user", content=f"{text} {i}", token_ids=[i, i + 1]), i + 1)
              for i in range(n_messages)]
    return lines


def test_line_is_crc_space_json_newline(header_factory):
    header = header_factory()
    line = encode_line(header, 0)
    crc, payload = line[:8], line[9:-1]
    assert line.endswith(b"\n") and line[8:9] == b" " and b"\n" not in payload
    assert int(crc, 16) == zlib.crc32(payload)
    assert payload.startswith(b'{"seq":0,"kind":"header","version":%d,' % FORMAT_VERSION)
    assert decode_payload(b"{" + payload[payload.index(b",") + 1:]) == header


def test_records_roundtrip_exactly(header_factory):
    records = [header_factory(), Message(role="user", content="x", token_ids=[5, 6]),
               ModelCall(prompt_token_ids=[1], output_token_ids=[2, 3], logprobs=[-0.5, -1.0], text="ab",
                         finish_reason="stop", latency_s=0.5),
               End(reward=Reward(value=0.5, source="checker", reason="half"))]
    data = b"".join(encode_line(r, seq) for seq, r in enumerate(records))
    parsed, torn = parse_records(data)
    assert parsed == records and torn == 0


def test_unknown_fields_are_rejected(header_factory):
    payload = msgspec.json.encode({"kind": "message", "role": "user", "content": "x", "surprise": 1})
    with pytest.raises(CorruptTraceError, match="not a valid .atraj record"):
        decode_payload(payload)


def test_newer_version_is_refused_with_upgrade_hint(header_factory):
    raw = msgspec.to_builtins(header_factory())
    raw["version"] = FORMAT_VERSION + 1
    raw["field_from_the_future"] = True
    payload = msgspec.json.encode(raw)
    line = b"%08x %s\n" % (zlib.crc32(payload), payload)
    with pytest.raises(TraceError, match="newer than this reader.*upgrade"):
        parse_records(line, "f.atraj")


def test_clean_file_has_no_torn_bytes(header_factory):
    payloads, torn, sequenced = split_lines(b"".join(_file(header_factory())))
    assert len(payloads) == 4 and torn == 0 and sequenced


def test_tail_without_newline_is_dropped_and_counted(header_factory):
    lines = _file(header_factory())
    data = b"".join(lines)[:-5]
    payloads, torn, _ = split_lines(data)
    assert len(payloads) == 3 and torn == len(lines[-1]) - 5


def test_final_line_with_bad_crc_is_torn_not_corrupt(header_factory):
    lines = _file(header_factory())
    bad = lines[-1][:20] + b"X" + lines[-1][21:]
    payloads, torn, _ = split_lines(b"".join(lines[:-1]) + bad)
    assert len(payloads) == 3 and torn == len(bad)


def test_damage_before_the_last_line_is_an_error(header_factory):
    lines = _file(header_factory())
    lines[1] = lines[1][:15] + b"Z" + lines[1][16:]
    with pytest.raises(CorruptTraceError, match="line 2 .* fails its CRC"):
        split_lines(b"".join(lines), "x.atraj")


def test_zero_filled_tail_after_crash_is_torn(header_factory):
    data = b"".join(_file(header_factory())) + b"\0" * 4096
    payloads, torn, _ = split_lines(data)
    assert len(payloads) == 4 and torn == 4096


def test_cut_inside_a_multibyte_character_drops_only_that_line(tmp_path, header_factory):
    lines = _file(header_factory(), text="✓✓✓")
    data = b"".join(lines)
    cut = data.rindex("✓".encode()) + 1  # inside the 3-byte character of the last line
    path = tmp_path / "cut.atraj.part"  # unfinished: only a .part may have a torn tail
    path.write_bytes(data[:cut])
    episode = read_episode(path)
    assert [e.content for e in episode.events] == ["✓✓✓ 0", "✓✓✓ 1"]
    assert episode.torn_bytes == cut - len(b"".join(lines[:-1])) and not episode.complete


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=6), data=st.data())
def test_any_prefix_reads_as_the_whole_lines_inside_it(texts, data):
    from tinygpt.traces.atraj import Header, Sampling
    header = Header(episode_id="p", task_id="t", split="train", created_at=0.0, model="m", model_fingerprint="f",
                    tokenizer_hash="h", chat_template_hash="c", sampling=Sampling(temperature=0.0))
    lines = [encode_line(header, 0)] + [encode_line(Message(role="user", content=t), n) for n, t in enumerate(texts, 1)]
    blob = b"".join(lines)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    payloads, torn, _ = split_lines(blob[:cut])
    whole, offset = 0, 0
    for line in lines:
        if offset + len(line) > cut:
            break
        whole, offset = whole + 1, offset + len(line)
    assert len(payloads) == whole and torn == cut - offset


def test_model_call_consistency_rules():
    with pytest.raises(ValueError, match="one logprob per sampled token"):
        check_model_call(ModelCall(prompt_token_ids=[1], output_token_ids=[2, 3], logprobs=[-1.0], text="",
                                   finish_reason="stop", latency_s=0))
    with pytest.raises(ValueError, match="token_exact=False"):
        check_model_call(ModelCall(prompt_token_ids=None, output_token_ids=None, text="", finish_reason="stop",
                                   latency_s=0))
    with pytest.raises(ValueError, match="must not carry token ids"):
        check_model_call(ModelCall(prompt_token_ids=[1], output_token_ids=None, text="", finish_reason="stop",
                                   latency_s=0, token_exact=False))


def _v1_line(record) -> bytes:
    """A version-1 line, as tinygpt wrote them before lines carried `seq`."""
    payload = msgspec.json.encode(record)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


@pytest.mark.parametrize("change, line, seq, expected", [
    ("duplicate", 4, 2, 3),  # line 3 written twice: both copies pass their CRC
    ("swap", 2, 2, 1),  # lines 2 and 3 exchanged
    ("remove", 3, 3, 2),  # line 3 dropped
    ("duplicate last", 5, 3, 4),  # the last line repeated: a good CRC, so not a torn tail
])
def test_duplicated_reordered_or_removed_lines_are_corrupt(header_factory, change, line, seq, expected):
    lines = _file(header_factory())
    if change == "duplicate":
        lines.insert(3, lines[2])
    elif change == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif change == "remove":
        del lines[2]
    else:
        lines.append(lines[-1])
    with pytest.raises(CorruptTraceError, match=rf"x.atraj.part: line {line} \(byte \d+\) has sequence number {seq}, "
                                                rf"expected {expected}: a line was duplicated, reordered or removed"):
        parse_records(b"".join(lines), "x.atraj.part")


def test_damaged_end_line_of_a_finished_episode_is_corrupt_not_torn(tmp_path, episode_factory):
    from tinygpt.traces.raw_episode import read_raw_episode
    path, _ = episode_factory(tmp_path, "fin")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside the end line
    path.write_bytes(bytes(data))
    for read in (read_episode, read_raw_episode):
        with pytest.raises(CorruptTraceError, match=r"fin.atraj: the last line \(\d+ bytes\) is damaged, but the "
                                                    "episode was finished"):
            read(path)
    part = path.rename(tmp_path / "fin.atraj.part")  # the same bytes unfinished: a torn tail, dropped
    episode = read_episode(part)
    assert not episode.complete and episode.torn_bytes > 0 and len(episode.events) == 7


def test_finished_episode_cut_at_a_line_boundary_is_corrupt(tmp_path, episode_factory):
    path, _ = episode_factory(tmp_path, "cut")
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # the whole end line gone
    with pytest.raises(CorruptTraceError, match="must end with an end record but its last line is a ModelCall"):
        read_episode(path)


def test_version_1_files_are_still_read_resumed_and_exported(tmp_path, header_factory):
    from tinygpt.traces.recorder import Recorder
    from tinygpt.traces.to_data import traces_to_data
    header = msgspec.structs.replace(header_factory("old"), version=1)
    call = ModelCall(prompt_token_ids=[1, 2], output_token_ids=[3], text="x", finish_reason="stop", latency_s=0.1)
    records = [header, Message(role="user", content="hi", token_ids=[1]), call]
    part = tmp_path / "src" / "old.atraj.part"
    part.parent.mkdir()
    part.write_bytes(b"".join(_v1_line(r) for r in records))
    assert read_episode(part).events == records[1:]
    rec = Recorder.resume(part)  # a version-1 file goes on in version 1
    rec.message("user", "more", [4])
    final = rec.end(Reward(value=1.0, source="t"))
    assert b'"seq"' not in final.read_bytes()
    episode = read_episode(final)
    assert episode.header.version == 1 and len(episode.events) == 3 and episode.complete
    report = traces_to_data([tmp_path / "src"], tmp_path / "out")
    assert report.written == 1 and report.corrupt == 0
    row = json.loads((tmp_path / "out" / "rows.jsonl").read_text())
    assert row["input_ids"] == [1, 2, 3] and row["loss_mask"] == [0, 0, 1]


def _v2_line(seq: int, fields: dict) -> bytes:
    """A version-2 line, written out by hand (version 2 had no cached_tokens, sampling, truncated, tool_calls)."""
    payload = json.dumps({"seq": seq, **fields}, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def test_version_2_files_are_read_and_resumed_in_version_2(tmp_path, header_factory):
    from tinygpt.traces.atraj import Sampling, ToolCall, ToolResult
    from tinygpt.traces.recorder import Recorder
    header = msgspec.to_builtins(msgspec.structs.replace(header_factory("two"), version=2))
    lines = [header, {"kind": "message", "role": "user", "content": "hi", "token_ids": [1]},
             {"kind": "model_call", "prompt_token_ids": [1, 2], "output_token_ids": [3], "logprobs": None,
              "text": "x", "content": None, "tool_calls": [{"id": "c1", "name": "ls", "arguments": {}}],
              "finish_reason": "tool_calls", "latency_s": 0.1, "token_exact": True, "model": None}]
    part = tmp_path / "two.atraj.part"
    part.write_bytes(b"".join(_v2_line(n, f) for n, f in enumerate(lines)))
    episode = read_episode(part)
    assert episode.events[1].cached_tokens == 0 and episode.events[1].sampling is None  # the defaults
    rec = Recorder.resume(part)
    rec.record(ToolResult(call_id="c1", name="ls", content="a" * 3, token_ids=[4], truncated=True))
    rec.record(Message(role="user", content="more", token_ids=[5], tool_calls=[ToolCall(id="c", name="ls")]))
    rec.record(ModelCall(prompt_token_ids=[4, 5], output_token_ids=[6], text="y", finish_reason="stop",
                         latency_s=0.1, cached_tokens=3, sampling=Sampling(temperature=0.5)))
    final = rec.end(Reward(value=1.0, source="t"))
    written = final.read_bytes().split(b"\n", 1)[1]  # the events (the header has a sampling of its own)
    for added in (b'"truncated"', b'"tool_calls":[{"id":"c"', b'"cached_tokens"', b'"sampling"'):
        assert added not in written  # the file stays version 2 throughout
    episode = read_episode(final)
    assert episode.header.version == 2 and len(episode.events) == 5 and episode.complete
    assert episode.events[-1].cached_tokens == 0 and not episode.events[2].truncated


def test_framing_must_match_the_header_version(header_factory):
    header_v1_lines = b"".join(_v1_line(r) for r in [header_factory(), Message(role="user", content="x")])
    with pytest.raises(CorruptTraceError, match=f"says version {FORMAT_VERSION} but the lines lack sequence numbers"):
        parse_records(header_v1_lines, "a.atraj.part")
    v1_header_v2_lines = b"".join(encode_line(r, n) for n, r in enumerate(
        [msgspec.structs.replace(header_factory(), version=1), Message(role="user", content="x")]))
    with pytest.raises(CorruptTraceError, match="says version 1 but the lines carry sequence numbers"):
        parse_records(v1_header_v2_lines, "a.atraj.part")


def test_a_newer_version_is_refused_even_when_its_records_decode(tmp_path, header_factory):
    from tinygpt.traces.raw_episode import read_raw_episode
    path = tmp_path / "new.atraj.part"
    path.write_bytes(encode_line(msgspec.structs.replace(header_factory(), version=FORMAT_VERSION + 1), 0))
    for read in (read_episode, read_raw_episode):
        with pytest.raises(TraceError, match=f"version {FORMAT_VERSION + 1}, newer than this reader"):
            read(path)


def test_a_route_decision_round_trips_and_version_3_routes_read_and_are_written_without_the_new_fields(
        header_factory):
    from tinygpt.traces.atraj import RouteDecision
    route = RouteDecision(target="files-spec", policy="router:ab12", reason="domain fileops at 0.93 >= 0.7",
                          scores={"files-spec": 0.93, "default": 0.07}, kind="specialist", domain="fileops",
                          score=0.93, threshold=0.7)
    header = msgspec.structs.replace(header_factory("routed"), route=route)
    parsed, _ = parse_records(encode_line(header, 0))
    assert parsed == [header] and parsed[0].route.threshold == 0.7
    v3 = msgspec.structs.replace(header, version=3)
    payload = encode_line(v3, 0, version=3)
    assert b'"score"' not in payload and b'"threshold"' not in payload and b'"domain"' not in payload
    assert b'"scores":{"files-spec":0.93' in payload  # what version 3 had stays
    old = parse_records(payload)[0][0].route
    assert (old.target, old.scores, old.kind, old.domain, old.score, old.threshold) == (
        "files-spec", route.scores, "", "", None, None)


def test_a_calls_usage_round_trips_and_version_4_files_are_written_without_it(header_factory):
    from tinygpt.traces.atraj import Usage
    call = ModelCall(prompt_token_ids=None, output_token_ids=None, text="hi", finish_reason="stop", latency_s=0.4,
                     token_exact=False, model="claude-sonnet-4-5",
                     usage=Usage(backend="claude", input_tokens=25, output_tokens=7, cost_usd=0.00018, attempts=2,
                                 note="retried"))
    parsed, _ = parse_records(encode_line(header_factory(), 0) + encode_line(call, 1))
    assert parsed[1] == call and parsed[1].usage.attempts == 2
    payload = encode_line(call, 1, version=4)
    assert b'"usage"' not in payload and b'"cached_tokens"' in payload  # what version 4 had stays
    v4 = parse_records(encode_line(msgspec.structs.replace(header_factory(), version=4), 0, version=4) + payload)
    assert v4[0][1].usage is None and v4[0][1].text == "hi"
