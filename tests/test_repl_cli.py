"""The chat/agent commands around the REPL: start-up checks, the random-init note, and how agent events print."""
import io
import json
import os
from types import SimpleNamespace

import pytest

from tinygpt import cli
from tinygpt.cli_agent import EventPrinter
from tinygpt.repl import random_init_note
from tinygpt.runtime import agent_events as ev
from tinygpt.traces.atraj import ModelCall, ToolCall, ToolResult


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_agent_unwritable_trajectory_dir_is_one_line_and_exit_2_before_the_repl(tiny_model_dir, tmp_path, capsys,
                                                                                where):
    (tmp_path / "a_file").write_text("mine")
    code = cli.main(["agent", "--model", str(tiny_model_dir), "--trajectory-dir", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tinygpt agent: error: --trajectory-dir") and err.count("\n") == 1, err
    assert (tmp_path / "a_file").read_text() == "mine"


def test_agent_takes_trajectory_dir_from_the_config_file(tiny_model_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("mine")
    config = tmp_path / "config.toml"
    config.write_text(f'trajectory_dir = "{tmp_path / "a_file" / "traces"}"\n')
    monkeypatch.setenv("TINYGPT_CONFIG", str(config))
    assert cli.main(["agent", "--model", str(tiny_model_dir)]) == 2  # the file's value is used (and refused)
    assert "a_file" in capsys.readouterr().err


@pytest.mark.parametrize("marker, noted", [({"created_by": "tinygpt init-model"}, True),
                                           ({"created_by": "tinygpt init-model", "trained_by": "sft"}, False),
                                           (None, False)])
def test_random_init_note_only_for_untrained_models_tinygpt_made(tmp_path, capsys, marker, noted):
    if marker is not None:
        (tmp_path / "tinygpt.json").write_text(json.dumps(marker))
    random_init_note(SimpleNamespace(loaded=SimpleNamespace(path=str(tmp_path), name="m", adapter_path=None)))
    err = capsys.readouterr().err
    assert ("random-init (untrained): its output is noise" in err) is noted


def test_banners_name_the_model_as_asked_and_what_it_is_made_of():
    from tinygpt.repl import describe_model

    spec = SimpleNamespace(name="my-spec", path="/m/base", adapter_path="/m/adapter")
    assert describe_model(spec) == "my-spec (/m/base + adapter /m/adapter)"
    assert describe_model(SimpleNamespace(name="small", path="models/small", adapter_path=None)) == \
        "small (models/small)"


def model_call():
    return ModelCall(prompt_token_ids=[], output_token_ids=[], logprobs=[], text="", content="",
                     finish_reason="stop", latency_s=0.0)


def test_agent_prints_each_tool_call_once_and_text_that_only_looked_like_one():
    from tinygpt.runtime import tool_formats

    out = io.StringIO()
    p = EventPrinter(tool_formats.get("hermes").trigger, out)
    for text in ["Let me look", ".\n<tool", "_call>", '\n{"name": "ls", "arguments": {}}\n', "</tool_call>"]:
        p.show(ev.Token(0, text, 0.0))
    p.show(model_call())
    p.show(ToolCall(id="call_1", name="ls", arguments={}))
    p.show(ToolResult(call_id="call_1", name="ls", content='{"current_directory_content": []}'))
    for text in ["It has <to", "ols> and <", "tool"]:  # never a call: the held-back text comes out at the end
        p.show(ev.Token(0, text, 0.0))
    p.show(model_call())
    p.show(ev.TurnEnd("answer", 2))
    assert out.getvalue() == ('Let me look.\n\n  \u2192 ls({})\n  \u2190 {"current_directory_content": []}\n'
                              "It has <tools> and <tool\n[answer, 2 steps]\n")


def test_history_is_kept_in_the_cache_and_an_unwritable_one_is_ignored(tmp_path, monkeypatch):
    import readline

    from tinygpt import repl

    monkeypatch.setattr("sys.stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    readline.clear_history()
    try:
        save = repl._history("chat")
        readline.add_history("/help")
        save()
        assert "/help" in (tmp_path / "cache" / "history-chat").read_text()
        readline.clear_history()
        repl._history("chat")
        assert readline.get_history_item(1) == "/help"  # the next session recalls it
        (tmp_path / "a_file").write_text("mine")
        monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "a_file" / "cache"))
        repl._history("agent")()  # neither reading nor writing raises
        assert (tmp_path / "a_file").read_text() == "mine"
    finally:
        readline.clear_history()


def test_set_changes_one_sampling_setting_and_refuses_bad_values(capsys):
    from tinygpt.repl import set_command
    from tinygpt.runtime.sampling import SamplingParams

    box = [SamplingParams(max_tokens=8)]
    run = set_command(lambda: box[0], lambda p: box.__setitem__(0, p))
    for arg in ["max-tokens 100000", "temperature 0.7", "top_p 0.5", "temperature nan", "max-tokens 0",
                "top-k many", "nonsense 1", "seed"]:
        run(arg)
    out = capsys.readouterr().out.splitlines()
    assert box[0] == SamplingParams(max_tokens=100000, temperature=0.7, top_p=0.5)
    assert out[:3] == ["max-tokens = 100000", "temperature = 0.7", "top_p = 0.5"]
    assert [line.split(":")[0] for line in out[3:]] == ["error", "error", "error", "usage", "usage"]


def test_agent_keeps_the_conversation_when_recording_fails(tiny_model_dir, tmp_path):
    """A full disk under --trajectory-dir (here a file-size limit: EFBIG) stops recording, not the REPL."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    r = subprocess.run([sys.executable, "-m", "tinygpt.cli", "agent", "--model", str(tiny_model_dir), "--tools",
                        "fs:virtual", "--max-tokens", "4", "--max-steps", "1", "--trajectory-dir",
                        str(tmp_path / "traces")], input="hello\nagain\n/quit\n", capture_output=True, text=True,
                       timeout=300, preexec_fn=small_files, env={**os.environ, "TINYGPT_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("could not record this conversation") == 1 and "Traceback" not in r.stderr
    assert r.stdout.count(">>> ") >= 3  # both turns ran and the prompt came back for /quit
