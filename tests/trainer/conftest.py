"""Fixtures for the trainer tests: the synthetic tool task (trainer_task.py) recorded and exported once; a tiny
corpus, a BPE trained on it and a model pretrained on it (pretrain_task.py), made once."""
import pytest

from pretrain_task import CHAT, CLOCK_TOOL, REPEATED
from trainer_task import TOOLS, record_episode, record_task, task_items


@pytest.fixture(scope="session")
def task_data(tiny_engine, tmp_path_factory):
    """Traces of the 48 training tasks (every 6th verdict failed) and their traces-to-data export."""
    from tinygpt.traces.export_config import ExportConfig
    from tinygpt.traces.to_data import traces_to_data

    root = tmp_path_factory.mktemp("task")
    count = record_task(root / "traces", tiny_engine, failed_every=6)
    report = traces_to_data([root / "traces"], root / "data", ExportConfig(near_dedupe=False))
    assert report.rows == count == 48
    return root


@pytest.fixture(scope="session")
def tool_episodes(tiny_engine, tmp_path_factory):
    """A few episodes recorded with the tools block in the prompt, and their export."""
    from tinygpt.traces.export_config import ExportConfig
    from tinygpt.traces.to_data import traces_to_data

    root = tmp_path_factory.mktemp("tools")
    items = [item for item in task_items() if not item[3]][:4]
    for i, (tool, prompt, city, _) in enumerate(items):
        record_episode(root / "traces", tiny_engine, f"tool{i}", prompt, tool, city, tools=TOOLS)
    traces_to_data([root / "traces"], root / "data", ExportConfig(near_dedupe=False, exact_dedupe=False))
    return root


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    """A private model store and no user config."""
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYGPT_CONFIG", "")
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def pretrain_corpus(tmp_path_factory):
    """A tiny corpus: a text file repeating REPEATED, and a JSONL of text, chat (with tools) and completion
    records."""
    import json

    root = tmp_path_factory.mktemp("corpus")
    (root / "cats.txt").write_text(REPEATED * 120)
    records = [{"text": f"note {i}: the dog and the cat are friends."} for i in range(20)]
    records += [{"messages": CHAT, "tools": [CLOCK_TOOL]}, {"prompt": "hello", "completion": "hi there"}]
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture(scope="session")
def pretrain_tokenizer(pretrain_corpus, tmp_path_factory):
    """A 320-token BPE trained on the corpus by `train_tokenizer`, and its report."""
    from tinygpt.trainer.tokenizer_train import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "bpe"
    report = train_tokenizer([str(pretrain_corpus)], str(out), vocab_size=320)
    return out, report


PRETRAIN_FLAGS = {"preset": "tiny", "seq_length": 32, "batch_size": 8, "iters": 60, "warmup": 5,
                  "learning_rate": 3e-3, "val_every": 20, "save_every": 20}


@pytest.fixture(scope="session")
def pretrained(pretrain_corpus, pretrain_tokenizer, tmp_path_factory):
    """(run directory, summary) of 60 steps of pretraining the tiny preset on the repeated text."""
    from tinygpt.trainer import pretrain
    from tinygpt.trainer.pretrain_config import resolve

    run = tmp_path_factory.mktemp("pretrain") / "run"
    cfg = resolve({"data": [str(pretrain_corpus / "cats.txt")], "tokenizer": str(pretrain_tokenizer[0]),
                   "out": str(run), **PRETRAIN_FLAGS})
    return run, pretrain.run(cfg)
