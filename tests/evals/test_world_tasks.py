"""Every embedded world task is solvable by its teacher, and its checker rejects doing nothing."""
import pytest

from tinygpt.evals.world_tasks import TASKS, expected_state, make_judge
from tinygpt.traces.atraj import ModelCall
from tinygpt.tools.catalog import open_filesystem


def answer_event(text):
    return ModelCall(prompt_token_ids=[1], output_token_ids=[2], logprobs=[0.0], text=text, content=text,
                     finish_reason="stop", latency_s=0.0)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_teacher_calls_succeed_and_an_idle_episode_fails(task):
    state = expected_state(task)  # raises if any teacher call returns an error
    fs = open_filesystem("fs:virtual")
    reward, verdict = make_judge(task, fs)([answer_event(task.teacher[-1])])
    changes_world = state != fs.to_bfcl()
    needs_answer = bool(task.answer_contains)
    assert changes_world or needs_answer
    if changes_world:
        assert not verdict.passed and reward.value == 0.0
    reward, verdict = make_judge(task, fs)([answer_event("I don't know")])
    assert not verdict.passed
