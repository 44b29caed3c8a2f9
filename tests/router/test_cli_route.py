"""`tinygpt route`, `route train`, `route ls`, `route describe`: help, one-line errors, a trained router's output."""
import json

import pytest
from router_fakes import DOMAINS, add_specialist, fake_base, tool_examples

from tinygpt import cli
from tinygpt.runtime.store import ModelStore


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    store = ModelStore(tmp_path / "cache" / "models")
    store.add("base", fake_base(tmp_path / "base"))
    return store


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "labelled.jsonl"
    with open(path, "w") as f:
        for e in tool_examples(30):
            f.write(json.dumps({"text": e.request.text, "tools": list(e.request.tools), "domain": e.domain}) + "\n")
    return path


def run(capsys, *argv):
    code = cli.main(["route", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_command_and_shows_the_rule(capsys):
    assert cli.main(["--help"]) == 0 and "route" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["route", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--routed-ship" in out and "a routed-ship one if s >= --routed-ship" in out
    with pytest.raises(SystemExit):
        cli.main(["route", "train", "--help"])
    assert "--traces" in capsys.readouterr().out


def test_train_route_ls_and_describe_end_to_end(capsys, cache, labelled, tmp_path):
    add_specialist(cache, tmp_path, "files", "shipped")
    code, out, err = run(capsys, "train", "--data", str(labelled), "--out", str(tmp_path / "r"), "--steps", "60",
                         "--dim", "4096", "--json")
    report = json.loads(out)
    assert code == 0 and report["domains"] == {d: 30 for d in DOMAINS} and report["test"] == 2 * 3 * 4
    assert report["accuracy"] >= 0.5  # rows with tools are all right; their text-only copies carry no signal
    assert 0 <= report["ece"] <= 1 and "training: step 60/60" in err
    code, out, _ = run(capsys, "move it", "--tools", "mv,cd", "--router", str(tmp_path / "r"), "--json")
    d = json.loads(out)
    assert code == 0 and (d["route"], d["kind"], d["domain"]) == ("default", "generalist", "fileops")
    assert "no routable specialist for domain fileops" in d["reason"]
    code, out, _ = run(capsys, "describe", "files", "--domain", "fileops", "--tools", "mv,cd")
    assert code == 0 and out.strip() == "files: domain fileops, tools cd, mv, status shipped"
    code, out, _ = run(capsys, "move it", "--tools", "mv,cd", "--router", str(tmp_path / "r"))
    assert code == 0 and out.startswith("route: files (specialist) (threshold 0.5)\ndomain: fileops at ")
    assert "target scores:" in out and "files" in out.split("target scores:")[1]
    code, out, _ = run(capsys, "ls", "--router", str(tmp_path / "r"))
    assert code == 0 and "+ files" in out and "ship: routed for domain fileops" in out


@pytest.mark.parametrize("argv, message", [
    (["x", "--router", "{tmp}/none"], "no router at {tmp}/none (router.json missing); train one with"),
    (["train"], "no labelled data: give --data FILE.jsonl and/or --traces DIR"),
    (["train", "--data", "{tmp}/missing.jsonl"], "no labelled data at {tmp}/missing.jsonl"),
    (["train", "--data", "{tmp}/bad.jsonl"], "{tmp}/bad.jsonl:2: 'domain' must be a name"),
    (["train", "--data", "{tmp}/one.jsonl"], "a router needs examples of at least two domains"),
    (["--router", "{tmp}"], "give the request's text"),
    (["describe", "nope", "--domain", "x"], "unknown model 'nope'"),
    (["describe", "base"], "nothing to record: give --domain and/or --tools"),
    (["--messages", "{tmp}/bad.jsonl"], "{tmp}/bad.jsonl is not JSON"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, cache, tmp_path, argv, message):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "domain": "x"}\n{"text": "b", "domain": "no spaces"}\n')
    (tmp_path / "one.jsonl").write_text('{"text": "a", "domain": "x"}\n')
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    last = err.splitlines()[-1]  # train prints what it read before it fits
    assert code == 2 and last.startswith("tinygpt route: error: ") and message.format(tmp=tmp_path) in last
    assert "Traceback" not in err and out == ""


def test_a_bad_threshold_flag_is_argparses_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["route", "x", "--ship", "1.5"])
    assert exit_.value.code == 2 and "must be" in capsys.readouterr().err


@pytest.mark.parametrize("sub", ["train", "ls", "describe", "data"])
def test_each_subcommands_help_is_light(sub):
    import subprocess
    import sys

    probe = ("import sys\nfrom tinygpt.cli import main\ntry:\n    main(['route', sys.argv[1], '--help'])\n"
             "except SystemExit:\n    pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'numpy', 'mlx', 'rich', 'tokenizers', 'huggingface_hub'}))")
    r = subprocess.run([sys.executable, "-c", probe, sub], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr


def test_retraining_keeps_the_routers_own_settings_flags_win_and_a_foreign_file_is_refused(capsys, cache, labelled,
                                                                                        tmp_path):
    out = tmp_path / "r"
    train = ["train", "--data", str(labelled), "--out", str(out), "--steps", "20", "--dim", "1024", "--json"]
    assert run(capsys, *train)[0] == 0
    meta = json.loads((out / "router.json").read_text())
    meta["settings"].update(escalate_below=0.3, ship=0.7,
                            targets=[{"name": "cluster", "kind": "remote", "enabled": True, "low_confidence": True}])
    (out / "router.json").write_text(json.dumps(meta))
    code, _, err = run(capsys, *train, "--ship", "0.6")
    assert code == 0 and "keeping the settings of" in err
    settings = json.loads((out / "router.json").read_text())["settings"]
    assert (settings["escalate_below"], settings["ship"]) == (0.3, 0.6)
    assert settings["targets"] == [{"name": "cluster", "kind": "remote", "enabled": True, "low_confidence": True}]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "router.json").write_text('{"my": "notes"}')
    code, out_, err = run(capsys, "train", "--data", str(labelled), "--out", str(foreign))
    assert code == 2 and "was not written by tinygpt; it is left alone" in err
    assert (foreign / "router.json").read_text() == '{"my": "notes"}' and not (foreign / "weights.npz").exists()


def test_route_and_ls_use_the_servers_live_targets_and_say_why_one_is_off(capsys, cache, labelled, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "r"
    assert run(capsys, "train", "--data", str(labelled), "--out", str(out), "--steps", "20", "--dim", "1024",
               "--escalate-below", "1")[0] == 0
    meta = json.loads((out / "router.json").read_text())
    meta["settings"]["targets"] = [{"name": "cluster", "kind": "remote", "enabled": True, "low_confidence": True}]
    (out / "router.json").write_text(json.dumps(meta))
    toml = tmp_path / "backends.toml"
    monkeypatch.setenv("TINYGPT_BACKENDS", str(toml))
    toml.write_text('[backends.cluster]\nkind = "openai-compatible"\nmodel = "m"\n'
                    'base_url = "http://127.0.0.1:9/v1"\nenabled = false\n')
    code, text, _ = run(capsys, "ls", "--router", str(out))
    assert code == 0 and "- cluster" in text and f"off (backend 'cluster' is disabled in {toml})" in text
    code, text, _ = run(capsys, "move it", "--tools", "mv", "--router", str(out), "--json")
    d = json.loads(text)
    assert code == 0 and d["kind"] == "generalist" and "remote target cluster skipped (disabled)" in d["reason"]
    toml.write_text(toml.read_text().replace("enabled = false", "enabled = true"))
    code, text, _ = run(capsys, "move it", "--tools", "mv", "--router", str(out), "--json")
    assert code == 0 and (json.loads(text)["route"], json.loads(text)["kind"]) == ("cluster", "remote")
    code, text, _ = run(capsys, "ls", "--router", str(out), "--json")
    assert json.loads(text)["targets"] == [{"name": "cluster", "kind": "remote", "enabled": True,
                                            "low_confidence": True, "why_off": None}]
    toml.write_text("")
    code, text, _ = run(capsys, "ls", "--router", str(out))
    assert "off (no backend named 'cluster' in" in text


def test_an_unknown_generalist_and_a_routed_ship_bar_below_ship_are_refused(capsys, cache, labelled, tmp_path):
    base = ["train", "--data", str(labelled), "--out", str(tmp_path / "r"), "--steps", "5", "--dim", "1024"]
    code, _, err = run(capsys, *base, "--generalist", "nosuch")
    assert code == 2 and "the generalist 'nosuch' is not a model of the store (default, base)" in err
    assert not (tmp_path / "r").exists()
    code, _, err = run(capsys, *base, "--ship", "0.9", "--routed-ship", "0.6")
    assert code == 2 and "routed-ship (0.6) must be at least ship (0.9)" in err
    assert run(capsys, *base, "--generalist", "base")[0] == 0
