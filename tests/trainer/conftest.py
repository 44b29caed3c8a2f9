"""Fixtures for the trainer tests: the synthetic tool task (trainer_task.py) recorded and exported once."""
import pytest

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
