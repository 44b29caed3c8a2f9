"""Labelled data for the router: JSONL rows and `.atraj` trajectories labelled by their header."""
import json
import time

import pytest

from tinygpt.router.data import read_jsonl, read_traces
from tinygpt.router.errors import RouterError
from tinygpt.router.features import Request
from tinygpt.traces.atraj import Header, Reward, Sampling, ToolSpec
from tinygpt.traces.recorder import Recorder


def record(directory, episode_id, labels, user="list my files", tools=("ls", "cd")):
    header = Header(episode_id=episode_id, task_id=f"task-{episode_id}", split="train", created_at=time.time(),
                    model="m", model_fingerprint="f", tokenizer_hash="t", chat_template_hash="c",
                    tools=[ToolSpec(name=n) for n in tools], sampling=Sampling(temperature=0.0), labels=labels)
    with Recorder(directory, header, fsync="none") as rec:
        rec.message("system", "You are a file agent.", [1])
        rec.message("user", user, [2])
        rec.model_call(prompt_token_ids=[1, 2], output_token_ids=[3], text="ok", finish_reason="stop",
                       latency_s=0.0)
        rec.message("user", "a later turn is not the request", [4])
        return rec.end(Reward(value=1.0, source="t"))


def test_trajectories_give_their_first_request_tools_and_domain_label(tmp_path):
    record(tmp_path, "a", {"suite": "fileops", "category": "x"})
    record(tmp_path, "b", {"domain": "math", "suite": "fileops"}, user="add 2 and 3", tools=("add",))
    record(tmp_path, "c", {})
    examples, skipped = read_traces(tmp_path)
    assert skipped == 1 and [(e.domain, e.group) for e in examples] == [("fileops", "fileops/task-a"),
                                                                        ("math", "math/task-b")]
    assert examples[0].request == Request("You are a file agent.\nlist my files", ("ls", "cd"))
    with pytest.raises(RouterError, match="neither a trace file nor a directory"):
        read_traces(tmp_path / "nowhere")


def test_jsonl_rows_take_text_or_messages_and_say_which_line_is_wrong(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "hi", "domain": "chat"}, {"messages": [{"role": "user", "content": "ls"}], "tools": ["ls"],
                                               "domain": "files", "group": 7}, {}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n")
    a, b = read_jsonl(path)
    assert (a.request, a.domain, a.group) == (Request("hi"), "chat", "hi")
    assert (b.request, b.group) == (Request("ls", ("ls",)), "7")
    for bad, message in ((rows[2], "'domain' must be a name"), ({"domain": "x"}, "exactly one of 'text'"),
                         ({"text": "", "domain": "x"}, "no text and no tools"), ([1], "expected an object"),
                         ({"text": "a", "tools": "ls", "domain": "x"}, "'tools' must be a list"),
                         ({"text": "a", "tools": [{}], "domain": "x"}, "tool 0 has no name")):
        path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(RouterError, match=f"d.jsonl:2: .*{message}"):
            read_jsonl(path)
    path.write_text("{nope\n")
    with pytest.raises(RouterError, match="d.jsonl:1: not JSON"):
        read_jsonl(path)
    with pytest.raises(RouterError, match="is a directory"):
        read_jsonl(tmp_path)
