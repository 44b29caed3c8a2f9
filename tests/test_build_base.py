"""`tinygpt build-base`: corpus -> tokenizer -> pretraining -> card in one command, resumed step by step; and the
corpus itself: gold episodes of the LAST train tasks only, each assistant text exactly the scripted teacher's."""
import json

from tinygpt import cli
from tinygpt.evals.suite import load_suite
from tinygpt.evals.world_corpus import gold_chat, write_corpus

SMALL = ["--fileops", "3", "--calendar", "3", "--shop", "3", "--small-talk", "3", "--vocab-size", "400",
         "--layers", "1", "--hidden-size", "32", "--seq-length", "64", "--batch-size", "2", "--iters", "2",
         "--warmup", "1", "--grad-clip", "1.0"]


def test_build_base_end_to_end_then_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "base"
    assert cli.main(["build-base", "--out", str(out), *SMALL, "--eval-tasks", "1", "--in-flight", "2"]) == 0
    model = out / "pretrain" / "model"
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert json.loads((out / "corpus" / "mix.json").read_text()) == {"fileops": 3, "calendar": 3, "shop": 3,
                                                                    "small_talk": 3}
    card = (model / "MODEL_CARD.md").read_text()
    assert "tinygpt build-base --out" in card and "--grad-clip 1.0" in card
    for domain in ("fileops", "calendar", "shop"):
        assert f"| {domain} | " in card  # a measured row per domain
    results = json.loads((model / "card.json").read_text())["results"]
    assert set(results) == {"fileops", "calendar", "shop"} and all(r["tasks"] == 1 for r in results.values())
    capsys.readouterr()
    assert cli.main(["build-base", "--out", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    assert "1/3 corpus: reusing" in err and "2/3 tokenizer: reusing" in err and "3/3 pretrain: reusing" in err


def test_the_corpus_holds_the_last_train_tasks_as_the_teacher_plays_them(tmp_path):
    counts = write_corpus(tmp_path / "c.jsonl", {"calendar": 2}, small_talk_records=1)
    assert counts == {"calendar": 2, "small_talk": 1}
    records = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    suite = load_suite("calendar")
    last = suite.tasks("train")[-2:]
    firsts = {r["messages"][1]["content"] for r in records if "tools" in r}
    assert firsts == {t.turns[0] for t in last}  # the user turn of each of the last two train tasks
    record = gold_chat(suite, last[0])
    assert record["messages"][0] == {"role": "system", "content": suite.SYSTEM}
    calls = [m for m in record["messages"] if m["role"] == "assistant" and m["content"].startswith("<tool_call>")]
    results = [m for m in record["messages"] if m["role"] == "tool"]
    assert len(calls) == len(results) > 0 and all(not r["content"].startswith('{"error"') for r in results)
    assert record["tools"] == suite.start(last[0]).toolset.schemas()
