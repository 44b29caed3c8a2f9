"""The chat playground (/ui/chat, /ui/api/chat) against a real server on the embedded world-base model (a model of
the tool world: it calls file-system tools for file requests): the API streams each tool call and its result as
the runtime's agent loop runs them and records the session as an .atraj the viewer lists; a reader may re-attach
from any event; bad input is a 4xx with a message; model "auto" shows the router's decision. In Chromium: a chat
that triggers a tool call renders the call and its result, and a page reloaded mid-answer re-attaches."""
import json
import os
import tempfile
from pathlib import Path

import httpx
import pytest
from browser_for_tests import browser, ui_page, ui_server  # noqa: F401

from tinygpt.runtime.store import DEFAULT_DIR
from tinygpt.traces.atraj import ModelCall, ToolResult
from tinygpt.traces.reader import read_episode

FILES_QUESTION = "What files are in the current directory?"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-chat")
    with ui_server(DEFAULT_DIR, store=str(root / "store"), chat_dir=str(root / "chats"),
                   evals_dir=str(root / "evals"), max_tokens=256) as (url, app):
        yield url, app, root / "chats"


def client(srv) -> httpx.Client:
    return httpx.Client(base_url=srv[0], timeout=120)


def new_chat(c, **settings) -> dict:
    r = c.post("/ui/api/chat", json={"temperature": 0, **settings})
    assert r.status_code == 201, r.text
    return r.json()


def events(c, sid, after=-1, until=None) -> list[dict]:
    """The session's events after `after`, followed to the end of the running turn (or to the first event
    `until(event)` is true for)."""
    out = []
    with c.stream("GET", f"/ui/api/chat/{sid}/events", params={"after": after}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
                if until is not None and until(out[-1]):
                    break
    return out


def ask(c, sid, text=FILES_QUESTION) -> list[dict]:
    r = c.post(f"/ui/api/chat/{sid}/messages", json={"text": text})
    assert r.status_code == 202, r.text
    return events(c, sid, after=r.json()["seq"] - 1)


def test_the_shell_serves_the_pages_its_own_files_and_plotly_from_the_installed_package(srv):
    from tinygpt.web.ui import plotly_path

    with client(srv) as c:
        home = c.get("/ui", follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "/ui/chat"
        for page in ("/ui/chat", "/ui/trajectories", "/ui/trajectories/chats/x.atraj"):
            r = c.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        css = c.get("/ui/static/ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert css.content == (Path(__file__).resolve().parents[2] / "web" / "static" / "ui.css").read_bytes()
        for bad in ("/ui/static/nope.js", "/ui/static/..%2Fui.py", "/ui/static/.hidden.css", "/ui/static/ui.py"):
            r = c.get(bad)
            assert r.status_code == 404 and "error" in r.json(), bad
        plotly = c.get("/ui/vendor/plotly.min.js")
        assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
        assert plotly.content == plotly_path().read_bytes() and len(plotly.content) > 1_000_000
        assert c.get("/favicon.ico").status_code == 204


def test_options_offer_the_served_models_the_tool_worlds_and_the_tool_choices(srv):
    with client(srv) as c:
        o = c.get("/ui/api/chat/options").json()
    assert o["default"] == "world-base" and "world-base" in [m["name"] for m in o["models"]]
    assert "auto" not in [m["name"] for m in o["models"]]  # no router on this server
    assert [t["name"] for t in o["tools"]] == ["none", "files", "sandbox", "calendar", "shop"]
    assert o["tool_choices"] == ["auto", "required", "none"] and o["limits"]["max_tokens"] == 256


def test_a_file_question_streams_its_tool_calls_and_results_and_is_recorded_as_an_episode(srv):
    with client(srv) as c:
        s = new_chat(c, tools="files", max_steps=3)
        assert s["model"] == "world-base" and "ls" in s["tools"] and s["episode"] is None
        got = ask(c, s["id"])
        kinds = [e["type"] for e in got]
        assert kinds[0] == "user" and kinds[-1] == "idle" and "turn_end" in kinds
        assert [e["seq"] for e in got] == list(range(got[0]["seq"], got[0]["seq"] + len(got)))
        calls = [e for e in got if e["type"] == "tool_call"]
        results = [e for e in got if e["type"] == "tool_result"]
        assert calls and [r["call_id"] for r in results] == [c_["id"] for c_ in calls]
        assert got.index(calls[0]) < got.index(results[0])  # a call is shown before its result
        # the open episode: what the page showed is what the file holds
        url = got[-1]["episode"]
        assert url.startswith("/ui/trajectories/chats/chat-") and url.endswith(".atraj.part")
        part = srv[2] / f"chat-{s['id']}.atraj.part"
        ep = read_episode(part)
        recorded = [t for e in ep.events if isinstance(e, ModelCall) for t in e.tool_calls]
        assert [(t.id, t.name, t.arguments) for t in recorded] == [(e["id"], e["name"], e["arguments"]) for e in calls]
        assert [e.content for e in ep.events if isinstance(e, ToolResult)] == [r["content"] for r in results]
        assert ep.header.split == "interactive" and ep.header.labels["source"] == "ui-chat"
        assert ep.header.model == "world-base" and ep.header.route is None
        # a second turn goes into the same episode; "New chat" finishes it
        second = ask(c, s["id"], "Now list them again.")
        assert second[0]["seq"] == got[-1]["seq"] + 1 and second[-1]["type"] == "idle"
        done = c.post(f"/ui/api/chat/{s['id']}/end").json()
        assert done["episode"] == url.removesuffix(".part")
        final = read_episode(srv[2] / f"chat-{s['id']}.atraj")
        assert final.end.status == "reset" and not part.exists()
        assert sum(1 for e in final.events if getattr(e, "role", None) == "user") == 2
        listed = c.get("/ui/api/trajectories", params={"q": s["id"]}).json()
        assert [e["url"] for e in listed["episodes"]] == [done["episode"]]
        assert c.post(f"/ui/api/chat/{s['id']}/messages", json={"text": "more"}).status_code == 409


def test_a_reader_re_attaches_from_any_event_and_gets_exactly_the_rest(srv):
    with client(srv) as c:
        s = new_chat(c, tools="files", tool_choice="required", max_steps=4)
        r = c.post(f"/ui/api/chat/{s['id']}/messages", json={"text": FILES_QUESTION})
        assert r.status_code == 202
        # one reader stops at the first tool call (a page reloaded there); another starts from that event on
        head = events(c, s["id"], until=lambda e: e["type"] == "tool_call")
        rest = events(c, s["id"], after=head[-1]["seq"])
        whole = events(c, s["id"])
    assert head + rest == whole
    steps = [e for e in whole if e["type"] == "call"]
    assert whole[-1]["type"] == "idle" and len(steps) == 4  # tool_choice required: a call at every step
    assert [e["type"] for e in whole].count("tool_call") == sum(e["tool_calls"] for e in steps) >= 4


def test_the_sandbox_world_runs_tools_in_a_new_directory_of_the_servers_own(srv):
    before = sorted(os.listdir("."))
    with client(srv) as c:
        s = new_chat(c, tools="sandbox", tool_choice="required", max_steps=2)
        sandbox = Path(s["sandbox"])
        assert sandbox.is_dir() and sandbox.parent.name.startswith("tinygpt-ui-sandbox-")
        assert sandbox.is_relative_to(Path(tempfile.gettempdir()))
        got = ask(c, s["id"], "Create a file named notes.txt")
        assert [e["type"] for e in got].count("tool_result") == 2
    assert sorted(os.listdir(".")) == before  # nothing written where the server runs


@pytest.mark.parametrize("body, status, says", [
    ({"tools": "moon"}, 400, "unknown tool world 'moon'"),
    ({"tool_choice": "sometimes"}, 400, "tool_choice must be one of auto, required, none"),
    ({"max_tokens": 0}, 400, "max_tokens must be from 1 to 256"),
    ({"max_steps": 500}, 400, "max_steps must be from 1 to 50"),
    ({"temperature": -1}, 400, "temperature must be from 0 to 2"),
    ({"model": "no-such-model"}, 404, "does not exist"),
    ({"model": "auto"}, 404, "needs a router"),
    ({"colour": "blue"}, 400, "colour"),
])
def test_bad_chat_settings_are_a_4xx_that_says_what_is_wrong(srv, body, status, says):
    with client(srv) as c:
        r = c.post("/ui/api/chat", json=body)
    assert r.status_code == status and says in r.json()["error"]


def test_bad_messages_and_unknown_sessions_are_4xx(srv):
    with client(srv) as c:
        s = new_chat(c)
        assert c.post(f"/ui/api/chat/{s['id']}/messages", json={"text": "  "}).status_code == 400
        bad = c.post(f"/ui/api/chat/{s['id']}/messages", content=b"{not json",
                     headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
        gone = c.get(f"/ui/api/chat/{'0' * 32}")
        assert gone.status_code == 404 and "start a new chat" in gone.json()["error"]
        assert c.get("/ui/api/chat/../../etc/passwd/events").status_code == 404
        assert c.post(f"/ui/api/chat/{s['id']}/end").json() == {"episode": None}  # nothing said: no episode


# ---- model "auto": the router's decision ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed(tmp_path_factory, saved_router):
    from tinygpt.router.settings import Settings
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    root = tmp_path_factory.mktemp("ui-routed")
    store = ModelStore(root / "models")
    store.add("files-spec", init_adapter(DEFAULT_DIR, root / "adapter", rank=4, seed=5), base=str(DEFAULT_DIR))
    store.set_status("files-spec", "shipped")
    store.describe("files-spec", domain="fileops", tools=["ls", "mv"])
    (root / "backends.toml").write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_BACKENDS", str(root / "backends.toml"))
        with ui_server(DEFAULT_DIR, store=str(root / "models"), router=str(saved_router(Settings(ship=0.5))),
                       chat_dir=str(root / "chats"), evals_dir=str(root / "evals"), max_tokens=64) as (url, app):
            yield url, app, root / "chats"


def test_model_auto_routes_the_first_message_and_the_decision_is_shown_and_recorded(routed):
    with client(routed) as c:
        assert "auto" in [m["name"] for m in c.get("/ui/api/chat/options").json()["models"]]
        s = new_chat(c, model="auto", tools="files", max_steps=1)
        assert s["model"] is None and s["route"] is None
        got = ask(c, s["id"])
        (route,) = [e for e in got if e["type"] == "route"]
        assert route["route"] == "files-spec" and route["kind"] == "specialist" and route["domain"] == "fileops"
        after = c.get(f"/ui/api/chat/{s['id']}").json()
        assert after["model"] == "files-spec" and after["route"]["route"] == "files-spec"
        c.post(f"/ui/api/chat/{s['id']}/end")
    ep = read_episode(routed[2] / f"chat-{s['id']}.atraj")
    assert ep.header.model == "files-spec" and ep.header.route.target == "files-spec"
    assert ep.header.route.kind == "specialist" and ep.header.route.score == route["score"]


# ---- the page, in Chromium --------------------------------------------------------------------------------------
def fill_settings(page, **values):
    page.wait_for_selector("body[data-ready='1']")
    for key, value in values.items():
        target = page.locator(f"#{key}")
        if target.evaluate("e => e.tagName") == "SELECT":
            target.select_option(str(value))
        else:
            target.fill(str(value))


def test_a_chat_that_calls_a_tool_shows_the_call_and_its_result(srv, ui_page):
    page = ui_page
    page.goto(f"{srv[0]}/ui/chat")
    assert page.locator("nav.ui-top a.active").inner_text() == "Chat"
    fill_settings(page, tools="files", **{"tool-choice": "auto", "temperature": 0, "max-steps": 3})
    page.fill("#prompt", FILES_QUESTION)
    page.click("#send")
    page.wait_for_selector(".turn-end", timeout=120_000)
    sid = page.evaluate("new URL(location.href).searchParams.get('session')")
    with client(srv) as c:
        server_events = events(c, sid)
    calls = [e for e in server_events if e["type"] == "tool_call"]
    results = [e for e in server_events if e["type"] == "tool_result"]
    assert calls, "world-base answers a file question with tool calls"
    shown_calls = page.locator(".tool-call")
    assert shown_calls.count() == len(calls)
    assert shown_calls.first.get_attribute("data-tool") == calls[0]["name"]
    assert json.dumps(calls[0]["arguments"], separators=(",", ":")) in shown_calls.first.inner_text()
    assert page.locator(".tool-result").count() == len(results)
    assert results[0]["content"] in page.locator(".tool-result pre").first.inner_text()
    assert page.locator(".turn-user").inner_text() == FILES_QUESTION
    assert page.locator("#info-model").inner_text() == "world-base"
    assert page.locator("#episode-link").get_attribute("href").startswith("/ui/trajectories/chats/chat-")


def test_a_page_reloaded_mid_answer_re_attaches_and_shows_all_of_it(srv, ui_page):
    page = ui_page
    page.goto(f"{srv[0]}/ui/chat")
    fill_settings(page, tools="files", **{"tool-choice": "required", "temperature": 0, "max-steps": 6})
    page.fill("#prompt", FILES_QUESTION)
    page.click("#send")
    page.wait_for_selector(".tool-call", timeout=120_000)
    sid = page.evaluate("new URL(location.href).searchParams.get('session')")
    page.reload()
    page.wait_for_selector(".turn-end", timeout=120_000)
    assert page.evaluate("new URL(location.href).searchParams.get('session')") == sid
    with client(srv) as c:
        server_events = events(c, sid)
    names = [e["name"] for e in server_events if e["type"] == "tool_call"]
    assert [e["type"] for e in server_events].count("call") == 6 and len(names) >= 6  # a call at every step
    shown = page.locator(".tool-call")
    assert [shown.nth(i).get_attribute("data-tool") for i in range(shown.count())] == names
    assert page.locator(".turn-user").count() == 1 and page.locator(".tool-result").count() == len(names)
    assert page.locator("#model").is_disabled()  # the chat's settings are fixed once it has begun
    # the session is remembered: opening /ui/chat again (no ?session=) re-attaches to it too
    page.goto(f"{srv[0]}/ui/chat")
    page.wait_for_selector(".turn-end")
    assert page.evaluate("new URL(location.href).searchParams.get('session')") == sid


@pytest.mark.ui_allowed_errors(r"status of 400")
def test_bad_settings_show_the_servers_message_in_the_page(srv, ui_page):
    page = ui_page
    page.goto(f"{srv[0]}/ui/chat")
    fill_settings(page, **{"max-tokens": 100000})
    page.fill("#prompt", "hello")
    page.click("#send")
    page.wait_for_selector("#error:not([hidden])")
    assert "max_tokens must be from 1 to 256" in page.locator("#error").inner_text()
    assert page.locator(".turn-user").count() == 0 and not page.locator("#send").is_disabled()


def test_the_routers_decision_is_shown_above_the_chat(routed, ui_page):
    page = ui_page
    page.goto(f"{routed[0]}/ui/chat")
    fill_settings(page, model="auto", tools="files", **{"temperature": 0, "max-steps": 1, "max-tokens": 64})
    page.fill("#prompt", FILES_QUESTION)
    page.click("#send")
    page.wait_for_selector(".turn-end", timeout=120_000)
    assert page.locator("#route").is_visible() and page.locator("#route-target").inner_text() == "files-spec"
    assert "specialist; domain fileops" in page.locator("#route").inner_text()
    assert page.locator("#info-model").inner_text() == "files-spec"
