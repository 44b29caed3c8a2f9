"""The file-ops suite through the real agent loop and engine on a tiny random model: gold replay scores 100%, the
gold less its last call per turn scores 0%, every episode is a readable .atraj whose verdict matches its row, and
the model itself runs under the grammar."""
import pytest

from tinygpt.evals import fileops
from tinygpt.evals.results import read_results
from tinygpt.runtime import recording
from tinygpt.evals.runner import RunSettings, episode_seed, run_suite, scripted_replies
from tinygpt.traces.reader import read_episode


@pytest.fixture(scope="module")
def one_per_category():
    tasks, seen = [], set()
    for t in fileops.tasks("validation"):
        if t.category not in seen:
            seen.add(t.category)
            tasks.append(t)
    return tasks


@pytest.mark.parametrize("policy, rate", [("gold", 1.0), ("drop-last", 0.0)])
def test_scripted_replays_score_100_and_0_percent(tiny_engine, one_per_category, tmp_path, policy, rate):
    seen = []
    manifest, rows = run_suite(tiny_engine, fileops, one_per_category, RunSettings(policy=policy), tmp_path,
                               model="tiny", split="validation", on_row=seen.append)
    assert seen == rows and len(rows) == len(one_per_category) == 12
    assert sum(r.passed for r in rows) / len(rows) == rate
    (run,) = read_results(tmp_path)
    assert run.rows == rows and run.manifest.status == "complete" and run.manifest.policy == policy
    loaded = tiny_engine.loaded
    for row, task in zip(rows, one_per_category):
        assert (row.task_id, row.category, row.split) == (task.id, task.category, "validation")
        assert row.model_fingerprint == loaded.fingerprint and row.base_fingerprint == loaded.identity.base
        assert row.policy == policy and row.seed == episode_seed(0, task.id, 0)
        per_conversation = hasattr(recording, "ConversationRecorder")  # else one episode per turn (older recorder)
        assert len(row.trajectories) == (1 if per_conversation else len(task.turns))
        assert row.prompt_tokens > 0 and row.output_tokens > 0
        if policy == "gold":
            assert row.end == "answer" and row.steps == sum(len(t) for t in task.gold) and row.reason == "ok"
        episodes = [read_episode(tmp_path / path) for path in row.trajectories]
        for episode in episodes:
            assert episode.complete and episode.header.task_id == task.id
            assert episode.header.labels["policy"] == policy and episode.header.labels["run"] == row.run_id
        assert all(e.end.verdict.passed for e in episodes) == row.passed
        assert sum(e.end.reward.value for e in episodes) / len(episodes) == row.score
        users = [m.content for e in episodes for m in e.events if getattr(m, "role", "") == "user"]
        assert users == list(task.turns)


def test_passes_get_their_own_seeds_and_rows(tiny_engine, one_per_category, tmp_path):
    tasks = one_per_category[:2]
    _, rows = run_suite(tiny_engine, fileops, tasks, RunSettings(policy="gold", passes=3, seed=5), tmp_path,
                        model="tiny", split="validation")
    assert [(r.task_id, r.pass_index) for r in rows] == [(t.id, k) for t in tasks for k in range(3)]
    assert len({r.seed for r in rows}) == 6 and all(r.passed for r in rows)


@pytest.mark.slow  # ~15 s on 2 cores: the task prompt (system + 18 tool schemas) is ~6,000 tiny-BPE tokens to prefill
def test_the_model_itself_runs_under_the_grammar(tiny_engine, one_per_category, tmp_path):
    task = one_per_category[0]
    _, (row,) = run_suite(tiny_engine, fileops, [task], RunSettings(max_tokens=16), tmp_path, model="tiny",
                          split="validation")
    assert row.policy == "model" and row.steps >= 1 and row.output_tokens >= 1
    assert not row.passed  # random weights cannot do a five-call task in 16-token steps
    episode = read_episode(tmp_path / row.trajectories[0])
    assert episode.complete and episode.end.verdict.passed is False
    assert episode.header.sampling.seed == row.seed and episode.header.sampling.temperature == 0.0


def test_scripted_replies_are_in_the_models_tool_call_format(tiny_engine):
    from tinygpt.runtime.tool_calls import parse_tool_calls

    task = next(t for t in fileops.tasks("validation") if t.category == "organize-ext")
    replies = scripted_replies(task, "gold", tiny_engine.tokenizer)
    assert len(replies) == len(task.gold[0]) and replies[-1] == task.gold[0][-1]
    tools = fileops.start(task).toolset.schemas()
    for reply, step in zip(replies[:-1], task.gold[0][:-1]):
        parsed = parse_tool_calls(reply, tiny_engine.tokenizer, tools)
        assert [(c.name, c.arguments) for c in parsed.calls] == [(c.name, c.arguments) for c in step]
    assert len(scripted_replies(task, "drop-last", tiny_engine.tokenizer)) == len(replies) - 1
    assert scripted_replies(task, "model", tiny_engine.tokenizer) is None
    with pytest.raises(ValueError, match="unknown policy"):
        scripted_replies(task, "oracle", tiny_engine.tokenizer)


def test_an_interrupted_run_is_left_incomplete_and_refused(tiny_engine, one_per_category, tmp_path):
    from tinygpt.evals.errors import EvalError

    def stop_after_one(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(tiny_engine, fileops, one_per_category[:3], RunSettings(policy="gold"), tmp_path, model="tiny",
                  split="validation", on_row=stop_after_one)
    (rows_file,) = tmp_path.glob("*.results.jsonl")
    assert len(rows_file.read_text().splitlines()) == 1  # the finished episode's row is kept
    with pytest.raises(EvalError, match="did not complete"):
        read_results(tmp_path)
