"""Privacy: a socket-level guard records every outbound connection and name lookup of the process. With backends
configured but disabled, a whole agent session on the local model makes none (and asking for a disabled
backend makes none); with one enabled, only its configured host:port is contacted."""
import io
import re
import socket

import pytest
from wire_server import anthropic_reply, backends_file, openai_reply, wire  # noqa: F401 (fixtures)

from tinygpt import cli
from tinygpt.traces.reader import list_traces, read_episode

CONFIG = """
[backends.claude]
kind = "anthropic"
model = "claude-sonnet-4-5"
api_key_env = "TG_PRIVACY_KEY"
{claude_extra}

[backends.openai]
kind = "openai"
model = "gpt-4o-mini"
api_key_env = "TG_PRIVACY_KEY"

[backends.cluster]
kind = "openai-compatible"
model = "qwen3-32b"
base_url = "{cluster_url}/v1"
"""


@pytest.fixture
def outbound(monkeypatch):
    """Every address the process connects to or looks up, from now on, as (host, port)."""
    seen = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_lookup = socket.create_connection, socket.getaddrinfo

    def connect(self, address):
        seen.append(tuple(address[:2]) if isinstance(address, tuple) else address)
        return real_connect(self, address)

    def connect_ex(self, address):
        seen.append(tuple(address[:2]) if isinstance(address, tuple) else address)
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        seen.append(tuple(address[:2]))
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host, port, *args, **kwargs):
        seen.append((host, port))
        return real_lookup(host, port, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def test_backends_configured_but_disabled_nothing_leaves_during_a_local_agent_session(
        wire, backends_file, tiny_model_dir, monkeypatch, capsys, tmp_path, outbound):
    cluster = wire(openai_reply("must never be asked"))
    backends_file(CONFIG.format(claude_extra="", cluster_url=cluster.url))
    monkeypatch.setenv("TG_PRIVACY_KEY", "sk-ant-privacy-0123456789")
    outbound.clear()  # the server's own start-up is not the session
    monkeypatch.setattr("sys.stdin", io.StringIO("list the files\nand read one\n/tools\n/quit\n"))
    argv = ["agent", "--model", str(tiny_model_dir), "--max-tokens", "6", "--max-steps", "2",
            "--trajectory-dir", str(tmp_path)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert len(re.findall(r"\[(answer|length|max_steps|truncated_call), \d step", out)) == 2  # two local turns
    (path,) = list_traces(tmp_path)
    header = read_episode(path).header
    assert header.model_fingerprint and not header.model_fingerprint.startswith("remote:")
    for name in ("claude", "cluster"):  # asking for a disabled backend is refused before anything is sent
        with pytest.raises(SystemExit):
            cli.main(["agent", "--backend", name])
        assert "is disabled" in capsys.readouterr().err
    assert cli.main(["backends", "ls"]) == 0
    assert outbound == [] and cluster.requests == []


def test_with_one_backend_enabled_only_its_host_and_port_are_contacted(wire, backends_file, monkeypatch, capsys,
                                                                      outbound):
    claude = wire(anthropic_reply("", [("toolu_1", "ls", "{}")]), anthropic_reply("a notes folder"))
    cluster = wire(openai_reply("must never be asked"))
    backends_file(CONFIG.format(claude_extra=f'enabled = true\nbase_url = "{claude.url}"', cluster_url=cluster.url))
    monkeypatch.setenv("TG_PRIVACY_KEY", "sk-ant-privacy-0123456789")
    outbound.clear()
    monkeypatch.setattr("sys.stdin", io.StringIO("what is here?\n"))
    assert cli.main(["agent", "--backend", "claude"]) == 0
    out = capsys.readouterr().out
    assert "→ ls({})" in out and "a notes folder" in out
    assert len(claude.requests) == 2 and cluster.requests == []
    assert outbound and set(outbound) <= {("127.0.0.1", claude.port)}
