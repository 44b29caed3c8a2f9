"""/save and /load: never overwrite a user's file, write atomically, and any failure is reported while the REPL
and its conversation go on (run in-process with scripted input; the pty tests cover the terminal)."""
import json
import resource
import signal
from types import SimpleNamespace

import pytest

from tinygpt.repl import read_message, run_repl
from tinygpt.runtime.saved_chat import SavedChatError, load_chat, save_chat
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.transcript import Transcript


@pytest.fixture
def conv(tiny_engine):
    t = Transcript(engine=tiny_engine)
    s = tiny_engine.new_session()
    t.add_messages({"role": "user", "content": "remember me"})
    r = tiny_engine.generate(t.ids, SamplingParams(max_tokens=4), session=s)
    t.add_output(r.output_ids, {"role": "assistant", "content": r.text}, stopped_on_eos=r.finish_reason == "stop")
    return SimpleNamespace(transcript=t, session=s)


def files(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_save_refuses_files_it_did_not_write(tiny_engine, conv, tmp_path):
    (tmp_path / "notes.chat.json").write_text("my notes")
    (tmp_path / "other.chat.json").write_text(json.dumps({"format": "someone-else/1"}))
    (tmp_path / "data.kv.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    before = files(tmp_path)
    for name in ("notes", "other", "data"):
        with pytest.raises(SavedChatError, match="not a tinygpt saved chat; refusing to overwrite"):
            save_chat(tiny_engine, conv.transcript, conv.session, tmp_path / name)
    (tmp_path / "d.chat.json").mkdir()
    with pytest.raises(SavedChatError, match="is a directory"):
        save_chat(tiny_engine, conv.transcript, conv.session, tmp_path / "d")
    assert files(tmp_path) == before


def test_save_replaces_its_own_saved_chat_and_says_so(tiny_engine, conv, tmp_path):
    path, replaced = save_chat(tiny_engine, conv.transcript, conv.session, tmp_path / "c")
    assert path == tmp_path / "c.chat.json" and not replaced
    conv.transcript.add_messages({"role": "user", "content": "more"})
    path, replaced = save_chat(tiny_engine, conv.transcript, conv.session, tmp_path / "c.chat.json")
    assert replaced
    t, s = load_chat(tiny_engine, tmp_path / "c")
    assert t.ids == conv.transcript.ids and s.ids == conv.session.ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.chat.json", "c.kv.safetensors"]


def test_load_refuses_corrupt_foreign_and_mismatched_files(tiny_engine, conv, tmp_path):
    save_chat(tiny_engine, conv.transcript, conv.session, tmp_path / "c")
    good = json.loads((tmp_path / "c.chat.json").read_text())
    cases = {"garbage": "{not json", "list": "[1, 2]", "ids": json.dumps({**good, "ids": ["x"]}),
             "vocab": json.dumps({**good, "ids": good["ids"] + [10**6]}),
             "model": json.dumps({**good, "model_fingerprint": "another"}),
             "role": json.dumps({**good, "messages": [{"role": "wizard", "content": "hi"}]}),
             "call": json.dumps({**good, "messages": [{"role": "assistant", "content": "",
                                                       "tool_calls": [{"function": {"arguments": {}}}]}]})}
    for name, text in cases.items():
        (tmp_path / f"{name}.chat.json").write_text(text)
        (tmp_path / f"{name}.kv.safetensors").write_bytes((tmp_path / "c.kv.safetensors").read_bytes())
        with pytest.raises(SavedChatError, match=None if name not in ("role", "call") else "not a readable saved"):
            load_chat(tiny_engine, tmp_path / name)
    tools = [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(SavedChatError, match="another tool list"):
        load_chat(tiny_engine, tmp_path / "c", tools=tools)
    with pytest.raises(SavedChatError, match="no saved chat"):
        load_chat(tiny_engine, tmp_path / "missing")


def test_failing_save_and_load_are_reported_and_the_repl_goes_on(tiny_engine, conv, tmp_path, monkeypatch,
                                                                 capsys, scripted):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "afile" / "cache"))  # history unwritable: ignored
    (tmp_path / "adir.chat.json").mkdir()
    (tmp_path / "notes.chat.json").write_text("my notes")
    (tmp_path / "bad.chat.json").write_text("{broken")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def disk_full(arg):  # files may grow to 1 KiB: writes fail as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 if arg == "on" else limits[0], limits[1]))

    said = []
    scripted([f"/save {tmp_path}/good", f"/save {tmp_path}/adir", f"/save {tmp_path}/afile/x",
                           f"/save {tmp_path}/notes", "/full on", f"/save {tmp_path}/good", "/full off",
                           f"/load {tmp_path}/bad", f"/load {tmp_path}", "hello", "/bye"])
    good = None
    try:
        def on_message(text):
            said.append(text)

        def snapshot(_):
            nonlocal good
            good = files(tmp_path)

        code = run_repl(engine=tiny_engine, conv=conv, help_text="", on_message=on_message, on_reset=lambda: None,
                        extra={"/full": lambda a: (snapshot(a), disk_full(a))})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, old_handler)
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and said == ["hello"]
    errors = [line for line in out if line.startswith("error:")]
    assert len(errors) == 6, out
    assert "is a directory" in errors[0] and "is a file" in errors[1] and "not a tinygpt saved chat" in errors[2]
    assert "not a readable saved chat" in errors[4] and "no saved chat" in errors[5]
    assert files(tmp_path) == good  # the failed save left the earlier pair and no temp file
    assert (tmp_path / "notes.chat.json").read_text() == "my notes"
    t, _ = load_chat(tiny_engine, tmp_path / "good")
    assert t.ids == conv.transcript.ids


def test_ctrl_c_during_an_answer_drops_the_exchange_and_rewinds_the_session(tiny_engine, conv, monkeypatch,
                                                                             capsys, tmp_path, scripted):
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path))
    kept = list(conv.transcript.ids)

    def on_message(text):
        conv.transcript.add_messages({"role": "user", "content": text})
        gen = tiny_engine.stream(conv.transcript.ids, SamplingParams(max_tokens=50), session=conv.session)
        try:
            for i, _ in enumerate(gen):
                if i == 3:
                    raise KeyboardInterrupt
        finally:
            gen.close()

    scripted(["interrupt me", KeyboardInterrupt(), '"""', "two", "lines", '"""', "/quit"])
    seen = []
    code = run_repl(engine=tiny_engine, conv=conv, help_text="", on_reset=lambda: None,
                    on_message=lambda t: seen.append(t) or (on_message(t) if t == "interrupt me" else None))
    out = capsys.readouterr().out
    assert code == 0 and seen == ["interrupt me", "two\nlines"]
    assert "the conversation has 2 messages" in out and "Ctrl-D or /bye" in out
    assert conv.transcript.ids == kept and conv.session.ids == kept
    assert [c.offset for c in conv.session.cache] == [len(kept)] * len(conv.session.cache)


def test_read_message_joins_a_triple_quoted_block(scripted):
    scripted(['"""first', "second", 'third"""'])
    assert read_message() == "first\nsecond\nthird"
    scripted(['  """one line"""'])
    assert read_message() == "one line"
