"""retrain's data mode (RetrainConfig.data, what `tinygpt quickstart --data` runs): the inputs it refuses before
anything is written, and the plan it makes (stages, guards, the chats' split). The loop itself runs in
tests/test_quickstart_data.py."""
import json

import pytest


@pytest.fixture(scope="module")
def chats_file(tmp_path_factory):
    """12 short finished chats with one declared tool."""
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.", "parameters": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}]
    path = tmp_path_factory.mktemp("chats") / "words.jsonl"
    lines = []
    for i in range(12):
        word = f"word{i}"
        lines.append({"messages": [
            {"role": "user", "content": f"What does {word} mean?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": {"word": word}}}]},
            {"role": "tool", "tool_call_id": "c1", "content": f"{word}: a test word"},
            {"role": "assistant", "content": f"{word} is a test word."}], "tools": tools})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def config(tmp_path, chats_file, **change):
    from tinygpt.retrain import RetrainConfig

    values = {"model": "", "domain": "words", "out": str(tmp_path / "run"), "data": str(chats_file), **change}
    return RetrainConfig(**values)


@pytest.mark.parametrize("change, says", [
    ({"teacher": "default"}, "--data: the recorded assistant turns of your chats are the teacher"),
    ({"teacher_remote": "http://127.0.0.1:9/v1", "teacher_model": "m"}, "do not go with --data"),
    ({"traces": ["somewhere"]}, "--data and --traces: give one"),
    ({"domain": "shop"}, "--domain shop: that name is taken by a built-in eval suite"),
    ({"domain": "general"}, "--domain general: that name is taken by the router generalist"),
    ({"domain": "my words"}, "--domain 'my words': the domain of your chats is a name of letters"),
    ({"data": "/nonexistent/chats.jsonl"}, "--data /nonexistent/chats.jsonl: no such file"),
])
def test_data_mode_refuses_what_does_not_go_with_it(change, says, tmp_path, chats_file, monkeypatch):
    from tinygpt.retrain import RetrainError, prepare

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RetrainError) as caught:
        prepare(config(tmp_path, chats_file, **change))
    assert says in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_data_mode_plan_has_no_rollouts_and_guards_on_the_tool_world(tmp_path, chats_file, monkeypatch):
    from tinygpt.retrain import DATA_STAGES, prepare, stage_inputs, tool_names

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    plan = prepare(config(tmp_path, chats_file))
    assert plan.stages == DATA_STAGES and "rollouts" not in plan.stages
    assert [g.NAME for g in plan.guards] == ["fileops", "calendar", "shop"]
    assert plan.suite.NAME == "words" and sum(plan.suite.counts().values()) == 12
    assert plan.teacher == f"data:{chats_file.resolve()}" and len(plan.data_sha) == 64
    assert stage_inputs(plan, "data", {})["data_sha"] == plan.data_sha
    assert tool_names(plan.suite) == ["lookup"]
    task = (plan.suite.tasks("train") or plan.suite.tasks("heldout"))[0]
    refs = task.data.references
    assert refs[0].calls == (("lookup", {"word": refs[0].calls[0][1]["word"]}),) and refs[1].calls is None
    assert not (tmp_path / "run").exists()


def test_a_bad_chat_is_one_retrain_error_naming_its_line(tmp_path, chats_file, monkeypatch):
    from tinygpt.retrain import RetrainError, prepare

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    lines = chats_file.read_text().splitlines()
    broken = json.loads(lines[4])
    broken["messages"][1]["tool_calls"][0]["function"]["name"] = "define"
    lines[4] = json.dumps(broken)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(RetrainError) as caught:
        prepare(config(tmp_path, bad))
    message = str(caught.value)
    assert "line 5: messages[1] (assistant).tool_calls[0]: calls 'define', but the record declares lookup" in message
    assert message.endswith("Nothing was written.") and not (tmp_path / "run").exists()
