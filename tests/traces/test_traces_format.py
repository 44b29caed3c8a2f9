"""The .atraj records and line framing: strict Structs, CRC lines, torn tails dropped, damage refused."""
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
    assert payload.startswith(b'{"seq":0,"kind":"header","version":2,')
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
