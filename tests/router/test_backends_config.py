"""backends.toml: off by default, one-line errors for what is wrong, `tinygpt backends ls`, `tinygpt agent
--backend` (driven through the CLI against a local server speaking OpenAI's wire format)."""
import io
import json
import os
from pathlib import Path

import pytest
from wire_server import backends_file, openai_reply, wire  # noqa: F401 (fixtures)

from tinygpt import cli
from tinygpt.router.backends import BackendError, load_backends
from tinygpt.traces.atraj import ModelCall
from tinygpt.traces.reader import list_traces, read_episode

GOOD = """
[backends.claude]
kind = "anthropic"
model = "claude-sonnet-4-5"
api_key_env = "TG_ANTHROPIC_KEY"

[backends.cluster]
kind = "openai-compatible"
model = "qwen3-32b"
base_url = "http://10.1.2.3:8000/v1"
enabled = true

[prices]
"qwen3-32b" = { input = 0.1, output = 0.2 }
"""


def test_no_file_means_no_backends_and_a_backend_is_disabled_unless_enabled(tmp_path, monkeypatch,
                                                                           backends_file):
    monkeypatch.delenv("TINYGPT_BACKENDS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_backends().backends == {}
    backends_file(GOOD)
    config = load_backends()
    assert (config.backends["claude"].enabled, config.backends["cluster"].enabled) == (False, True)
    assert config.backends["claude"].url == "https://api.anthropic.com" and config.backends["claude"].retries == 2
    assert config.prices["qwen3-32b"].output == 0.2 and config.prices["gpt-4o"].input == 2.5  # user's + shipped
    with pytest.raises(BackendError, match=r"backend 'claude' is disabled: nothing is sent to "
                                           r"https://api.anthropic.com until you set enabled = true"):
        config.policy("claude")


@pytest.mark.parametrize("text, says", [
    ("[backends.x\nkind = 1", "not valid TOML"),
    ("[backend.x]\nkind = 'openai'", "unknown tables ['backend']"),
    ("[backends.x]\nkind = 'gemini'\nmodel = 'm'", "kind must be one of openai-compatible, openai, anthropic"),
    ("[backends.x]\nkind = 'openai'", "set model"),
    ("[backends.x]\nkind = 'openai'\nmodel = 'm'", "needs api_key_env"),
    ("[backends.x]\nkind = 'openai-compatible'\nmodel = 'm'", "needs base_url"),
    ("[backends.x]\nkind = 'openai-compatible'\nmodel = 'm'\nbase_url = 'ftp://h'", "is not an http(s) URL"),
    ("[backends.x]\nkind = 'openai-compatible'\nmodel = 'm'\nbase_url = 'http://h'\nenabled = 'yes'",
     "enabled must be true or false"),
    ("[backends.x]\nkind = 'openai-compatible'\nmodel = 'm'\nbase_url = 'http://h'\napi_key = 'sk-1'",
     "unknown keys ['api_key']"),
    ("[backends.x]\nkind = 'openai-compatible'\nmodel = 'm'\nbase_url = 'http://h'\nfallback = 'y'",
     "fallback 'y' is not a configured backend"),
    ("[prices]\nm = { input = 1 }", "the price of 'm' must be"),
    ("[backends.local]\nkind = 'openai-compatible'\nmodel = 'm'\nbase_url = 'http://h'", "and not 'local'"),
    ("[redact]\nrules = ['phone']", "unknown redaction rules ['phone']"),
    ("[redact]\npatterns = ['(']", "is not a valid regular expression"),
])
def test_a_bad_file_is_one_line_naming_it(backends_file, text, says):
    path = backends_file(text)
    with pytest.raises(BackendError) as bad:
        load_backends()
    assert says in str(bad.value) and str(path) in str(bad.value) and "\n" not in str(bad.value)


def test_unknown_backend_missing_key_and_fallback_loops_are_one_line(backends_file, monkeypatch):
    monkeypatch.delenv("TG_ANTHROPIC_KEY", raising=False)
    backends_file(GOOD.replace('api_key_env = "TG_ANTHROPIC_KEY"', 'api_key_env = "TG_ANTHROPIC_KEY"\nenabled = true'))
    config = load_backends()
    with pytest.raises(BackendError, match="no backend named 'gpt' \\(configured: claude, cluster\\)"):
        config.policy("gpt")
    with pytest.raises(BackendError, match="environment variable TG_ANTHROPIC_KEY is not set"):
        config.policy("claude")
    backends_file(GOOD +
                  '\n[backends.b]\nkind = "openai-compatible"\nmodel = "m"\nbase_url = "http://h/v1"\n'
                  'enabled = true\nfallback = "cluster"\n')
    looped = load_backends()
    looped.backends["b"] = looped.backends["b"].__class__(**{**looped.backends["b"].__dict__, "fallback": "b"})
    with pytest.raises(BackendError, match="backend fallbacks loop: b -> b"):
        looped.policy("b")


@pytest.mark.parametrize("argv, says", [
    (["--backend", "nope"], "no backend named 'nope'"),
    (["--backend", "claude"], "backend 'claude' is disabled"),
    (["--backend", "cluster", "--remote", "http://127.0.0.1:9/v1"], "--backend NAME and --remote URL: give one"),
    (["--backend", "cluster", "--timeout", "5"], "--api-key-env and --timeout go with --remote URL"),
    (["--backend", "cluster", "--grammar-backend", "outlines"], "--grammar-backend is for a local model"),
])
def test_agent_backend_errors_are_one_line_and_exit_2(backends_file, capsys, argv, says):
    backends_file(GOOD)
    with pytest.raises(SystemExit) as done:
        cli.main(["agent", *argv])
    err = capsys.readouterr().err
    assert done.value.code == 2 and says in err and err.strip().splitlines()[-1].startswith("tinygpt agent: error:")
    assert "Traceback" not in err


def test_a_bad_backends_file_is_one_line_for_agent_and_backends_ls(backends_file, capsys):
    backends_file("[backends.x\n")
    with pytest.raises(SystemExit) as done:
        cli.main(["agent", "--backend", "x"])
    assert done.value.code == 2 and "not valid TOML" in capsys.readouterr().err
    assert cli.main(["backends", "ls"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinygpt backends: error: ") and "not valid TOML" in err and len(err.splitlines()) == 1


def test_backends_ls_lists_enabled_and_disabled_with_host_model_and_price(backends_file, capsys, tmp_path,
                                                                          monkeypatch):
    backends_file(GOOD)
    assert cli.main(["backends", "ls"]) == 0
    out = capsys.readouterr().out
    claude, cluster = [line for line in out.splitlines() if line.startswith("  ")]
    assert claude.split()[:5] == ["claude", "disabled", "anthropic", "https://api.anthropic.com", "claude-sonnet-4-5"]
    assert "$3 in / $15 out per M" in claude
    assert cluster.split()[:5] == ["cluster", "enabled", "openai-compatible", "http://10.1.2.3:8000/v1", "qwen3-32b"]
    assert cli.main(["backends", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["backends"]
    assert [(b["name"], b["enabled"], b["price_usd_per_m"]) for b in listed] == [
        ("claude", False, {"input": 3.0, "output": 15.0}), ("cluster", True, {"input": 0.1, "output": 0.2})]
    monkeypatch.delenv("TINYGPT_BACKENDS")
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    assert cli.main(["backends", "ls"]) == 0
    assert "no backends configured" in capsys.readouterr().out


def test_agent_cli_with_a_backend_runs_tools_and_records_cost(wire, backends_file, monkeypatch, capsys, tmp_path):
    server = wire(openai_reply("", [("call_1", "ls", "{}")]), openai_reply("one folder", usage=(50, 4)))
    monkeypatch.setenv("TG_OPENAI_KEY", "sk-test-abcdefghijklmnop")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-must-not-be-sent")
    backends_file(f"""
[backends.gpt]
kind = "openai"
model = "gpt-4o-mini"
base_url = "{server.url}/v1"
api_key_env = "TG_OPENAI_KEY"
enabled = true
""")
    monkeypatch.setattr("sys.stdin", io.StringIO("what is here?\n"))
    assert cli.main(["agent", "--backend", "gpt", "--trajectory-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert f"backend gpt: model gpt-4o-mini at {server.url}/v1" in err
    assert "→ ls({})" in out and "one folder" in out and "[answer, 2 steps]" in out
    assert [h["authorization"] for _, h, _ in server.requests] == ["Bearer sk-test-abcdefghijklmnop"] * 2
    sent = server.requests[1][2]
    assert sent["stream_options"] == {"include_usage": True} and sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    server.answers.append(openai_reply("no counts asked"))
    backends_file(Path(os.environ["TINYGPT_BACKENDS"]).read_text() + "stream_usage = false\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    assert cli.main(["agent", "--backend", "gpt"]) == 0 and "stream_options" not in server.requests[2][2]
    (path,) = list_traces(tmp_path)
    calls = [e for e in read_episode(path).events if isinstance(e, ModelCall)]
    assert [(c.usage.backend, c.usage.input_tokens, c.usage.output_tokens) for c in calls] == [
        ("gpt", 40, 9), ("gpt", 50, 4)]
    assert calls[1].usage.cost_usd == pytest.approx((50 * 0.15 + 4 * 0.6) / 1e6)  # gpt-4o-mini's price
    assert "sk-test" not in path.read_text() + out + err


def test_the_example_in_docs_backends_md_is_a_valid_file(backends_file):
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "backends.md").read_text(encoding="utf-8")
    backends_file(re.search(r"```toml\n(.*?)```", doc, re.S).group(1))
    config = load_backends()
    assert {n: b.enabled for n, b in config.backends.items()} == {"claude": True, "gpt": False, "cluster": True,
                                                                  "workstation": True}
    assert config.backends["claude"].fallback == "workstation" and config.prices["qwen3-32b"].input == 0.1
    assert config.redactor("a@b.co ACME-12345") == "[redacted:email] [redacted:pattern1]"


def test_a_fallback_loop_in_the_file_is_refused_when_it_is_read(backends_file, capsys):
    from tinygpt import cli

    entry = '\n[backends.{n}]\nkind = "openai-compatible"\nmodel = "m"\nbase_url = "http://h/v1"\nfallback = "{f}"\n'
    backends_file(entry.format(n="a", f="a"))
    with pytest.raises(BackendError, match="backend fallbacks loop: a -> a; end the chain"):
        load_backends()
    backends_file(entry.format(n="a", f="b") + entry.format(n="b", f="a"))
    with pytest.raises(BackendError, match="backend fallbacks loop: a -> b -> a"):
        load_backends()
    assert cli.main(["backends", "ls"]) == 2 and "fallbacks loop" in capsys.readouterr().err
