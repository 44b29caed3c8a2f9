"""The calendar suite: enough tasks, splits that never overlap, gold solutions the checker passes and broken ones it
fails (every task), later arguments that come from earlier results, and a checker that judges end state."""
import json
from collections import Counter

import pytest

from tinygpt.evals import calendar_suite as cal
from tinygpt.evals.calendar_tasks import FAMILIES
from tinygpt.evals.calendar_world import TITLES
from tinygpt.evals.suite import drop_last_call, load_suite, select_tasks
from tinygpt.tools.calendar_api import Calendar

ALL = {split: cal.tasks(split) for split in cal.SPLITS}


def calls_of(turn):
    return [call for step in turn if not isinstance(step, str) for call in step]


def test_the_registry_finds_the_suite():
    suite = load_suite("calendar")
    assert suite is cal and len(suite.tasks("heldout")) == 200 and suite.SYSTEM
    assert [t.id for t in select_tasks(suite, "heldout", categories=["clear-day"])][:1] == \
        [next(t.id for t in ALL["heldout"] if t.category == "clear-day")]


def test_split_sizes_and_every_category_in_every_split():
    assert {s: len(t) for s, t in ALL.items()} == {"train": 3000, "validation": 200, "heldout": 200}
    assert 8 <= len(FAMILIES) <= 10
    for tasks in ALL.values():
        counts = Counter(t.category for t in tasks)
        assert set(counts) == set(FAMILIES) and min(counts.values()) >= 10, counts


def test_splits_never_overlap_by_id_or_by_content():
    ids = {s: {t.id for t in tasks} for s, tasks in ALL.items()}
    hashes = {s: {t.data.content_hash for t in tasks} for s, tasks in ALL.items()}
    for a in cal.SPLITS:
        assert len(ids[a]) == len(ALL[a]) and len(hashes[a]) == len(ALL[a])
        for b in cal.SPLITS:
            if a < b:
                assert not ids[a] & ids[b] and not hashes[a] & hashes[b]
    seen = {}
    for split, tasks in ALL.items():
        for t in tasks:
            digest = cal.content_hash(t.category, cal.Plan(t.turns, t.gold, t.data.answers), t.data.world)
            assert digest == t.data.content_hash and cal.split_of(digest) == split == t.split
            key = json.dumps([t.turns, t.data.world], sort_keys=True)
            assert seen.setdefault(key, split) == split


def test_generation_is_deterministic():
    again = cal.SUITE.generate()
    assert {s: [t.id for t in again[s]] for s in cal.SPLITS} == {s: [t.id for t in ALL[s]] for s in ALL}


def test_worlds_are_well_formed():
    assert not [(a, b) for a in TITLES for b in TITLES if a != b and a in b]  # a full title finds one event
    for task in ALL["validation"]:
        config = task.data.world
        assert 6 <= len(config["events"]) <= 10
        assert Calendar.from_config(config).to_config() == config
        assert len({e["title"] for e in config["events"]}) == len(config["events"])


@pytest.mark.parametrize("split", cal.SPLITS)
def test_every_gold_solution_passes_and_dropping_its_last_call_fails(split):
    for task in ALL[split]:
        assert all(c.passed for c in cal.replay(task, task.gold, tools=False)), task.id
        assert all(calls_of(turn)[-1].name in ("add_event", "move_event", "cancel_event") for turn in task.gold)
        checks = cal.replay(task, tuple(drop_last_call(turn) for turn in task.gold), tools=False)
        assert not all(c.passed for c in checks), task.id
        assert any("calendar differs" in c.reason for c in checks), task.id


def test_gold_calls_are_valid_tool_calls_through_the_toolset():
    for split, tasks in ALL.items():
        for category in FAMILIES:
            for task in [t for t in tasks if t.category == category][:2]:
                episode = cal.start(task)
                for turn in task.gold:
                    for call in calls_of(turn):
                        result = episode.toolset.call(call.name, call.arguments)
                        assert not result.is_error, (task.id, call, result.content)
                assert all(c.passed for c in cal.replay(task, task.gold)), task.id


def test_later_arguments_come_from_earlier_results():
    """Every id a gold call acts on, and every day, time or answer word the user did not say, was in an earlier
    tool result of the same task (ids: in most families)."""
    needing = Counter()
    for task in ALL["validation"]:
        backend = Calendar.from_config(task.data.world)
        seen = ""
        for prompt, turn, words in zip(task.turns, task.gold, task.data.answers):
            for call in calls_of(turn):
                args = call.arguments
                if "event_id" in args:
                    assert f'"id": "{args["event_id"]}"' in seen, (task.id, call)
                    needing[task.category] += 1
                for key in ("day", "time") if task.category != "delay-event" else ("day",):
                    if key in args and args[key] not in prompt:
                        assert f'"{key}": "{args[key]}"' in seen, (task.id, call)
                seen += json.dumps(getattr(backend, call.name)(**args))
            for word in words:  # a count is of the events the turn cancelled; any other word was seen
                assert (int(word) == [c.name for c in calls_of(turn)].count("cancel_event") if word.isdigit()
                        else word in prompt or word in seen), (task.id, word)
    assert len(needing) >= len(FAMILIES) // 2 + 1, needing


def test_a_delay_shifts_the_time_the_search_returned():
    for task in [t for t in ALL["validation"] if t.category == "delay-event"]:
        find, move = calls_of(task.gold[0])
        (found,) = Calendar.from_config(task.data.world).find_events(**find.arguments)["events"]
        hours = {"an hour later": 1, "two hours later": 2, "an hour earlier": -1}
        (shift,) = [h for words, h in hours.items() if words in task.turns[0]]
        assert int(move.arguments["time"][:2]) - int(found["time"][:2]) == shift, task.id
        assert move.arguments["time"][2:] == found["time"][2:] and move.arguments["day"] == found["day"]
        assert task.data.answers[0] == (move.arguments["time"],)


def test_two_turn_tasks_are_judged_per_turn():
    task = next(t for t in ALL["validation"] if t.category == "move-then-fill")
    checks = cal.replay(task, (task.gold[0], ("Done.",)))
    assert checks[0].passed and not checks[1].passed and "is missing" in checks[1].reason
    (day,) = task.data.answers[1]
    no_day = (task.gold[0], (*task.gold[1][:-1], "Added it."))
    checks = cal.replay(task, no_day)
    assert checks[0].passed and not checks[1].passed and checks[1].reason == f"the answer does not say {day!r}"


def test_the_checker_reads_state_and_answer():
    task = next(t for t in ALL["validation"] if t.category == "cancel-report")
    day, time = task.data.answers[0]
    backend = Calendar.from_config(task.data.world)
    for call in calls_of(task.gold[0]):
        getattr(backend, call.name)(**call.arguments)
    assert cal.judge(task, 0, backend.state(), f"It was {day.title()} at {time}.").passed
    check = cal.judge(task, 0, backend.state(), f"It was on {day}.")
    assert not check.passed and check.reason == f"the answer does not say {time!r}"
    before = Calendar.from_config(task.data.world).state()
    check = cal.judge(task, 0, before, f"{day} {time}")
    assert not check.passed and "should not exist" in check.reason


def test_difference_names_the_event_and_what_differs():
    a = {"e1": {"title": "gym", "day": "monday", "time": "09:00"}}
    assert cal.difference(a, a) == ""
    assert cal.difference(a, {}) == "e1 (gym) is missing"
    assert cal.difference({}, a) == "e1 (gym) should not exist"
    moved = {"e1": {**a["e1"], "day": "friday"}}
    assert cal.difference(a, moved) == "e1 (gym) should be on monday at 09:00, not friday at 09:00"
    assert cal.difference(a, {"e1": {**a["e1"], "title": "yoga"}}) == "e1 should be titled 'gym', not 'yoga'"
