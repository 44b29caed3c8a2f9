"""`tinygpt quickstart --data FILE.jsonl`: the loop on the user's own chats.

One `--short` run (in a subprocess with its own model store) on chats exported from the calendar suite's gold
solutions in mlx-lm's tools format (assistant tool_calls, tool results, tools): the data stage replaces the
rollouts, the splits partition the file, the held-out chats are scored per turn in the evals row schema and the
gate and the report use them; the same command again reuses every stage; an edited file makes a new data version
and training starts again from it. The checks of a bad file (each naming its line) and the turn scoring run
in-process on the embedded base's tokenizer, without a model."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINYGPT = [sys.executable, "-m", "tinygpt.cli"]
DATA_STAGES = ("data", "train", "eval", "gate", "register")
GUARDS = ("fileops", "calendar", "shop")
CHATS = 40


def calendar_chat(suite, task) -> dict:
    """A calendar task's gold solution as a finished chat: structured tool calls answered by real results."""
    from tinygpt.evals.suite import start_episode

    episode = start_episode(suite, task)
    try:
        messages, n = [{"role": "system", "content": suite.SYSTEM}], 0
        for user, steps in zip(task.turns, task.gold):
            messages.append({"role": "user", "content": user})
            for step in steps:
                if isinstance(step, str):
                    messages.append({"role": "assistant", "content": step})
                    continue
                calls = []
                for call in step:
                    n += 1
                    calls.append({"id": f"call_{n}", "type": "function",
                                  "function": {"name": call.name, "arguments": json.dumps(call.arguments)}})
                messages.append({"role": "assistant", "content": "", "tool_calls": calls})
                for call, sent in zip(step, calls):
                    result = episode.toolset.call(call.name, call.arguments)
                    messages.append({"role": "tool", "tool_call_id": sent["id"], "name": call.name,
                                     "content": result.content})
        return {"messages": messages, "tools": episode.toolset.schemas()}
    finally:
        if episode.close is not None:
            episode.close()


@pytest.fixture(scope="module")
def chats():
    from tinygpt.evals.suite import load_suite

    suite = load_suite("calendar")
    return [calendar_chat(suite, t) for t in suite.tasks("train")[:CHATS + 4]]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def quickstart(data, out, cache, cwd, env=None):
    return subprocess.run(TINYGPT + ["quickstart", "--short", "--data", str(data), "--guard-tasks", "2", "--out",
                                     str(out), "--json"], capture_output=True, text=True, timeout=900, cwd=cwd,
                          env={**os.environ, "TINYGPT_CACHE": str(cache), "TINYGPT_CONFIG": "", **(env or {})})


@pytest.fixture(scope="module")
def run(tmp_path_factory, chats):
    root = tmp_path_factory.mktemp("quickstart-data")
    data = write_jsonl(root / "my-chats.jsonl", chats[:CHATS])
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    r = quickstart(data, root / "run", root / "cache", root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return {"root": root, "data": data, "sha": sha, "out": root / "run", "summary": json.loads(r.stdout),
            "err": r.stderr}


def stage_outputs(out: Path, stage: str, version: int = 1) -> dict:
    return json.loads((out / "loop" / stage / f"v{version}" / "stage.json").read_text())["outputs"]


def test_data_stage_replaces_the_rollouts_and_partitions_the_file(run, chats):
    out, s = run["out"], run["summary"]
    assert s["domain"] == "my-chats" and s["specialist"] == "my-chats-specialist" and s["data"] == str(run["data"])
    assert not (out / "loop" / "rollouts").exists()
    status = json.loads((out / "loop" / "retrain.json").read_text())
    assert set(status["stages"]) == set(DATA_STAGES) and status["status"] == "complete"
    data = stage_outputs(out, "data")
    assert data["data_sha"] == run["sha"] and data["records"] == CHATS and data["duplicates"] == 0
    sides = {}
    for split, key in (("train", "chat_file"), ("validation", "valid_file"), ("heldout", "heldout_file")):
        lines = [json.loads(x) for x in Path(data[key]).read_text().splitlines()]
        assert len(lines) == data[split]
        sides[split] = {json.dumps({"messages": r["messages"], "tools": r["tools"]}, sort_keys=True) for r in lines}
        assert all(r["episode_id"].startswith("my-chats-") for r in lines)
    assert not (sides["train"] & sides["validation"] or sides["train"] & sides["heldout"]
                or sides["validation"] & sides["heldout"])
    given = {json.dumps(c, sort_keys=True) for c in chats[:CHATS]}
    assert sides["train"] | sides["validation"] | sides["heldout"] == given
    assert data["train"] >= 10 and data["heldout"] >= 1
    assert s["chats"] == {k: data[k] for k in ("records", "duplicates", "train", "validation", "heldout")}
    assert hashlib.sha256(run["data"].read_bytes()).hexdigest() == run["sha"]  # the user's file is only read


def test_held_out_chats_are_scored_per_turn_in_result_rows_the_gate_reads(run):
    from tinygpt.evals.results import read_results

    out, s = run["out"], run["summary"]
    data, evals = stage_outputs(out, "data"), stage_outputs(out, "eval")
    heldout = [json.loads(x)["episode_id"] for x in Path(data["heldout_file"]).read_text().splitlines()]
    assert set(evals["runs"]) == {"my-chats", *GUARDS}
    results = {(r.manifest.model, r.manifest.suite): r for r in read_results(evals["results"])}
    assert len(list(Path(evals["results"]).glob("*.turns.jsonl"))) == 2  # base and specialist on the chats
    for model, arm in (("default", "base"), ("my-chats-specialist", "specialist")):
        rows = results[(model, "my-chats")].rows
        assert sorted(r.task_id for r in rows) == sorted(heldout[:12]) and all(r.split == "heldout" for r in rows)
        details = Path(evals["results"]) / f"{rows[0].run_id}.turns.jsonl"
        turns = [json.loads(x) for x in details.read_text().splitlines()]
        for row in rows:
            mine = [t for t in turns if t["task_id"] == row.task_id]
            assert row.category == "tool-calls" and row.steps == len(mine) >= 2 and row.policy == "model"
            assert row.passed == all(t["passed"] for t in mine)
            assert row.score == pytest.approx(sum(t["passed"] for t in mine) / len(mine))
            assert all(set(t["expected"]) in ({"calls"}, {"content"}) for t in mine)
        assert evals["runs"]["my-chats"][arm]["passed"] == {r.task_id: r.passed for r in rows}
    gate = json.loads(Path(stage_outputs(out, "gate")["gate_result"]).read_text())
    assert gate["target"] == "my-chats" and {x["suite"] for x in gate["suites"]} == {"my-chats", *GUARDS}
    target = next(x for x in gate["suites"] if x["suite"] == "my-chats")
    assert target["tasks"] == len(heldout[:12]) and gate["verdict"] == s["verdict"]
    base_passed = sum(r.passed for r in results[("default", "my-chats")].rows)
    assert s["results"]["base"]["in-domain"]["passed"] == base_passed
    assert s["results"]["base"]["out-of-domain"]["tasks"] == 2 * len(GUARDS)


def test_report_routes_the_held_out_chats_and_names_the_domain(run):
    out, s = run["out"], run["summary"]
    routes = json.loads((out / "routes.json").read_text())
    evals = stage_outputs(out, "eval")["runs"]
    assert set(routes) == {"my-chats", *GUARDS}
    for suite in routes:
        assert set(routes[suite]) == set(evals[suite]["base"]["passed"])
    stage = json.loads((out / "router-stage.json").read_text())
    assert stage["learned"]["chats"] == "my-chats" and stage["examples"] > 3 * 40
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and s["chart"] == str(out / "summary.png")
    assert "my-chats" in s["conclusion"] and any(f"tinygpt serve --router {out / 'router'}" in x for x in s["next"])
    assert len(s["table"]) == 4 and s["table"][2].startswith("specialist (my-chats-specialist)")
    request = json.loads((out / "example-request.json").read_text())
    assert request["model"] == "auto" and request["messages"][-1]["role"] == "user" and request["tools"]
    assert any(f"-d @{out / 'example-request.json'}" in x for x in s["next"])


def test_the_same_command_again_reuses_every_stage(run):
    r = quickstart(run["data"], run["out"], run["root"] / "cache", run["root"])
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in DATA_STAGES:
        assert f"[{stage}] v1: reusing" in r.stderr, r.stderr
    assert f"[router] reusing {run['out'] / 'router'}" in r.stderr and ": start" not in r.stderr
    again = json.loads(r.stdout)
    assert {k: v for k, v in again.items() if k != "seconds"} == \
        {k: v for k, v in run["summary"].items() if k != "seconds"}


def test_an_edited_file_makes_a_new_data_version_and_trains_again(run, chats):
    """Killed (the retrain crash hook) once training has started on the new data: no second full run."""
    write_jsonl(run["data"], chats[:CHATS + 4])
    edited = hashlib.sha256(run["data"].read_bytes()).hexdigest()
    r = quickstart(run["data"], run["out"], run["root"] / "cache", run["root"], {"TINYGPT_RETRAIN_CRASH": "train"})
    assert r.returncode == -9, r.stderr[-3000:]
    assert "[data] v2: start" in r.stderr and "[train] v2: start" in r.stderr
    new, old = stage_outputs(run["out"], "data", 2), stage_outputs(run["out"], "data", 1)
    assert new["data_sha"] == edited != old["data_sha"] and new["records"] == CHATS + 4
    assert Path(old["chat_file"]).is_file()  # the earlier version stays
    train = json.loads((run["out"] / "loop" / "train" / "v2" / "stage.json").read_text())
    assert train["status"] == "running" and train["inputs"]["chat_sha"] == new["chat_sha"]
    assert hashlib.sha256(run["data"].read_bytes()).hexdigest() == edited


# ---- checking the file (in-process, the embedded base's tokenizer) ----------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from mlx_lm.utils import load_tokenizer

    from tinygpt.runtime.store import ModelStore

    return load_tokenizer(Path(ModelStore().resolve("default").base))


def chat_error(path: Path, tokenizer, max_tokens: int = 4096) -> str:
    from tinygpt.evals.chat_suite import ChatDataError, load_chat_suite

    with pytest.raises(ChatDataError) as caught:
        load_chat_suite("mine", path, tokenizer, max_tokens)
    return str(caught.value)


def bad(chat: dict, **change) -> dict:
    out = json.loads(json.dumps(chat))
    for key, value in change.items():
        out[key] = value
    return out


def with_messages(chat: dict, edit) -> dict:
    out = json.loads(json.dumps(chat))
    out["messages"] = edit(out["messages"])
    return out


CASES = {
    "bad json": (lambda c: '{"messages": [', "not valid JSON"),
    "no messages": (lambda c: {"question": "what?"}, 'no "messages" (keys: question); --data takes finished chats, '
                                                     "not tasks"),
    "text record": (lambda c: {"text": "hello"}, "a text record has no turns"),
    "no assistant turn": (lambda c: with_messages(c, lambda m: m[:2]), "no assistant turn"),
    "assistant first": (lambda c: with_messages(c, lambda m: m[2:]), "messages[0] (assistant): an assistant message "
                                                                    "must follow a user message or tool results"),
    "late system": (lambda c: with_messages(c, lambda m: m[1:2] + m[:1] + m[2:]),
                    "messages[1] (system): a system message may only come first"),
    "undeclared tool": (lambda c: bad(c, tools=[]), "calls 'find_events', but the record has no \"tools\" list"),
    "result without call": (lambda c: with_messages(c, lambda m: m[:2] + m[3:]),
                            "messages[2] (tool): a tool result must answer a call"),
    "unanswered call": (lambda c: with_messages(c, lambda m: m[:3] + m[4:]),
                        "messages[2] makes 1 tool call but 0 tool results follow it before messages[3] (assistant)"),
    "args off schema": (lambda c: with_messages(c, lambda m: m[:2] + [{**m[2], "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "find_events", "arguments": '{"q": 1}'}}]}] + m[3:]),
                        "the arguments of find_events do not match its schema"),
    "args not json": (lambda c: with_messages(c, lambda m: m[:2] + [{**m[2], "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "find_events", "arguments": "{query"}}]}] + m[3:]),
                      "the arguments of find_events are not JSON"),
    "bad role": (lambda c: with_messages(c, lambda m: m[:1] + [{"role": "human", "content": "hi"}] + m[1:]),
                 "messages[1]: the role must be one of system, user, assistant, tool, not 'human'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_line_is_named_with_what_is_wrong(case, chats, tokenizer, tmp_path):
    make, says = CASES[case]
    records = [*chats[:12]]
    records[6] = make(chats[6])
    path = write_jsonl(tmp_path / "mine.jsonl", records)
    before = path.read_bytes()
    message = chat_error(path, tokenizer)
    assert "1 of 12 records cannot be used" in message, message
    entry = next(x.strip() for x in message.splitlines() if x.strip().startswith("line 7: "))
    assert says in entry, message
    assert path.read_bytes() == before


def test_every_bad_line_is_listed_and_other_file_problems_are_clear(chats, tokenizer, tmp_path):
    records = [*chats[:12]]
    records[1], records[9] = "[1, 2]", {"prompt": "hi"}
    message = chat_error(write_jsonl(tmp_path / "two.jsonl", records), tokenizer)
    assert "2 of 12 records" in message and "line 2: a record is a JSON object, not list" in message
    assert 'line 10: no "messages" (keys: prompt)' in message
    (tmp_path / "latin.jsonl").write_bytes(json.dumps(chats[0]).encode() + b"\n\xe9t\xe9\n")
    assert "line 2: not UTF-8 text" in chat_error(tmp_path / "latin.jsonl", tokenizer)
    assert "is empty; it must hold at least 10 chats" in chat_error(write_jsonl(tmp_path / "e.jsonl", []), tokenizer)
    few = chat_error(write_jsonl(tmp_path / "few.jsonl", chats[:3] + chats[:2]), tokenizer)
    assert "holds 3 distinct chats; at least 10 are needed" in few and "held-out (20%)" in few
    long = chat_error(write_jsonl(tmp_path / "long.jsonl", chats[:12]), tokenizer, max_tokens=300)
    assert "line 1: the chat is" in long and "more than the 300 the specialist trains on" in long


def test_splits_are_by_content_and_stable_as_the_file_grows(chats, tokenizer, tmp_path):
    from tinygpt.evals.chat_suite import load_chat_suite

    small = load_chat_suite("mine", write_jsonl(tmp_path / "a.jsonl", chats[:30]), tokenizer, 4096)
    grown = load_chat_suite("mine", write_jsonl(tmp_path / "b.jsonl", chats[:30] + chats[:5] + chats[30:40]),
                            tokenizer, 4096)
    assert grown.duplicates == 5 and sum(grown.counts().values()) == 40
    for split in ("train", "validation", "heldout"):
        before = {t.id for t in small.tasks(split)}
        assert before <= {t.id for t in grown.tasks(split)}
    first = small.tasks("heldout")[0]
    messages, tools = small.request(first)
    assert messages[-1]["role"] == "user" and [m["role"] for m in messages] == ["system", "user"]
    assert {t["function"]["name"] for t in tools} == set(small.tool_names())


def test_quickstart_refuses_a_bad_file_before_writing_anything(chats, tmp_path, monkeypatch, capsys):
    from tinygpt import cli

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYGPT_CONFIG", "")
    records = [*chats[:12]]
    records[2] = with_messages(chats[2], lambda m: m[:2])
    path = write_jsonl(tmp_path / "mine.jsonl", records)
    before = path.read_bytes()
    for extra, says in ((["--data", str(path)], "line 3: no assistant turn"),
                        (["--data", str(path), "--domain", "calendar"], "--domain calendar: that name is taken by a "
                                                                        "built-in eval suite"),
                        (["--data", str(tmp_path / "none.jsonl")], "no such file"),
                        (["--domain", "mine"], "--domain mine: the tool world's domains are fileops, calendar, shop"),
                        (["--data", str(path), "--traces", str(tmp_path)], "--data and --traces: give one")):
        assert cli.main(["quickstart", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert "tinygpt quickstart: error: " in err and says in err and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()
    assert path.read_bytes() == before


def test_turns_are_judged_by_calls_as_json_values_and_by_normalised_text():
    from tinygpt.evals.chat_eval import judge
    from tinygpt.evals.chat_suite import Reference
    from tinygpt.runtime.tool_calls import ParsedOutput
    from tinygpt.traces.atraj import ToolCall

    def said(content="", *calls, error=None, truncated=False):
        return ParsedOutput(content=content, calls=[ToolCall(id=str(i), name=n, arguments=a)
                                                    for i, (n, a) in enumerate(calls)],
                            truncated=truncated, error=error)

    two = Reference(index=2, calls=(("move", {"id": "e1", "at": {"day": "mon", "hour": 9}}), ("find", {"q": "x"})),
                    text="")
    assert judge(two, said("", ("find", {"q": "x"}), ("move", {"at": {"hour": 9.0, "day": "mon"}, "id": "e1"})))[0]
    assert not judge(two, said("", ("find", {"q": "x"})))[0]
    assert not judge(two, said("", ("find", {"q": "x"}), ("move", {"id": "e2", "at": {"day": "mon", "hour": 9}})))[0]
    ok, why = judge(two, said("I moved it."))
    assert not ok and "got a text answer 'I moved it.'" in why
    assert not judge(two, said("", ("find", {"q": "x"}), ("move", {"id": "e1", "at": {"day": "mon", "hour": 9}}),
                               truncated=True))[0]
    text = Reference(index=4, calls=None, text="Moved  standup to Monday.\n")
    assert judge(text, said("moved standup   to monday."))[0]
    assert not judge(text, said("Moved standup to Tuesday."))[0]
    ok, why = judge(text, said("", ("find", {"q": "x"})))
    assert not ok and why.startswith("expected a text answer; got")
