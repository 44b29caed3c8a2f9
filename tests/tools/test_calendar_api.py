"""The calendar backend: its tools' results and error messages, config round trips, and its Toolset schemas."""
import json

import pytest

from tinygpt.tools.calendar_api import TOOLS, Calendar, calendar_toolset, demo_config


def week():
    return Calendar.from_config(demo_config())


def test_config_round_trips_and_state_is_normalized():
    config = demo_config()
    assert Calendar.from_config(config).to_config() == config
    cal = Calendar.from_config({"events": [{"id": "e4", "title": "Team  Lunch", "day": "monday", "time": "12:00"}]})
    assert cal.next_id == 5
    assert cal.state() == {"e4": {"title": "team lunch", "day": "monday", "time": "12:00"}}


@pytest.mark.parametrize("config", [
    {"events": [{"id": "x1", "title": "a", "day": "monday", "time": "09:00"}]},
    {"events": [{"id": "e1", "title": "a", "day": "mon", "time": "09:00"}]},
    {"events": [{"id": "e1", "title": "a", "day": "monday", "time": "9:00"}]},
    {"events": [{"id": "e1", "title": "a", "day": "monday", "time": "09:00"}], "next_id": 1},
])
def test_a_malformed_config_is_refused(config):
    with pytest.raises(ValueError, match="calendar config"):
        Calendar.from_config(config)


def test_list_and_find():
    cal = week()
    assert cal.list_events("Tuesday") == {"events": [{"id": "e2", "title": "dentist", "day": "tuesday",
                                                      "time": "10:30"}]}
    assert cal.list_events("sunday") == {"events": []}
    assert [e["id"] for e in cal.find_events("WITH")["events"]] == ["e3", "e6"]  # any case, in week order
    assert cal.find_events("piano") == {"events": []}


def test_add_move_cancel():
    cal = week()
    assert cal.add_event("piano lesson", "sunday", "9:30") == {
        "added": {"id": "e7", "title": "piano lesson", "day": "sunday", "time": "09:30"}}
    assert cal.move_event("e7", "monday", "10:00")["moved"] == {"id": "e7", "title": "piano lesson",
                                                                "day": "monday", "time": "10:00"}
    assert cal.move_event("e1", "monday", "09:00")["moved"]["id"] == "e1"  # its own slot is no clash
    assert cal.cancel_event("e2")["cancelled"]["title"] == "dentist"
    assert "e2" not in cal.state() and cal.add_event("dentist", "friday", "09:00")["added"]["id"] == "e8"


def test_a_wrong_call_returns_a_message_and_changes_nothing():
    cal = week()
    before = cal.state()
    cases = [
        (cal.add_event("gym", "fri", "09:00"), "bad day 'fri'; use one of monday"),
        (cal.add_event("gym", "friday", "9.30"), "bad time '9.30'; use 24-hour HH:MM"),
        (cal.add_event("gym", "friday", "25:00"), "bad time '25:00'"),
        (cal.add_event("  ", "friday", "09:00"), "the title is empty"),
        (cal.add_event("gym", "tuesday", "10:30"), "tuesday 10:30 is taken by e2 (dentist); pick another time"),
        (cal.move_event("e1", "tuesday", "10:30"), "is taken by e2"),
        (cal.move_event("e9", "friday", "09:00"), "no event 'e9'; get ids from find_events or list_events"),
        (cal.move_event("e1", "someday", "09:00"), "bad day 'someday'"),
        (cal.cancel_event("dentist"), "no event 'dentist'"),
        (cal.list_events("weekend"), "bad day 'weekend'"),
    ]
    for result, message in cases:
        assert message in result["error"], result
    assert cal.state() == before and cal.next_id == 7


def test_the_toolset_has_five_short_documented_tools():
    cal = week()
    tools = calendar_toolset(cal, timeout_s=None)
    assert tools.names == list(TOOLS)
    for schema in tools.schemas():
        fn = schema["function"]
        assert fn["description"] and len(fn["description"]) < 80, fn
        assert all(p["description"] for p in fn["parameters"]["properties"].values()), fn
    move = tools.get("move_event").parameters
    assert move["required"] == ["event_id", "day", "time"]
    result = tools.call("find_events", {"query": "dentist"})
    assert not result.is_error and json.loads(result.content)["events"][0]["id"] == "e2"
    result = tools.call("cancel_event", {"event_id": "e42"})
    assert result.is_error and "find_events" in result.content
    assert tools.call("move_event", {"event_id": "e2"}).is_error  # missing arguments: the registry says so
    assert "e2" in cal.state()
