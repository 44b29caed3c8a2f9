"""The trajectory viewer (/ui/trajectories, /ui/api/trajectories, /ui/api/trajectory[/tokens]) on episodes recorded
here through the real agent loop (world-base on the embedded file-system world, sampled, judged): the list and its
filters, refs (two eval runs record the same episode id), the episode, and the token view, whose ids and loss mask
must be traces→data's training row and whose logprobs the recorded ones. In Chromium: filter the list, open an
episode and read a sampled token's logprob off the token view."""
import shutil
import time

import httpx
import msgspec
import pytest
from browser_for_tests import browser, ui_page, ui_server  # noqa: F401

from tinygpt.runtime.store import DEFAULT_DIR
from tinygpt.traces.atraj import Header, ModelCall, Reward, RouteDecision, Sampling, Verdict
from tinygpt.traces.export import training_row
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder
from tinygpt.web.ui_traces import episode_url

ASK = "What files are in the current directory?"


def record(engine, directory, *, episode_id, task_id, split, passed, route=None, seed=0):
    """One episode of the real agent loop (sampled at temperature 1 with `seed`) on the embedded file world."""
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.recording import ConversationRecorder
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.tools.catalog import load_toolset

    agent = Agent(engine, load_toolset("fs:virtual"),
                  AgentConfig(max_steps=3, sampling=SamplingParams(temperature=1.0, max_tokens=64, seed=seed)))
    rec = ConversationRecorder(directory, engine, agent, task_id=task_id, split=split, episode_id=episode_id,
                               route=route, labels={"suite": "fileops"})
    for _ in rec.record(agent.run(ASK)):
        pass
    verdict = None if passed is None else Verdict(passed=passed, checker="test", details="judged here")
    return rec.end("answer", Reward(value=float(bool(passed)), source="test"), verdict)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Episodes under a --traces dir and an evals dir (two runs recording the same episode id)."""
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    root = tmp_path_factory.mktemp("ui-traces")
    engine = Engine(load(str(DEFAULT_DIR)))
    mine, evals = root / "mine", root / "evals"
    route = RouteDecision(target="files-spec", policy="router:test", reason="fileops", kind="specialist",
                          domain="fileops", score=0.9, threshold=0.5)
    paths = {
        "passed": record(engine, mine, episode_id="ep-pass", task_id="files-1", split="train", passed=True, seed=1),
        "failed": record(engine, mine, episode_id="ep-fail", task_id="files-2", split="heldout", passed=False,
                         seed=2, route=route),
        "run-a": record(engine, evals / "traces" / "run-a", episode_id="files-3.k0", task_id="files-3",
                        split="validation", passed=None, seed=3),
        "run-b": record(engine, evals / "traces" / "run-b", episode_id="files-3.k0", task_id="files-3",
                        split="validation", passed=True, seed=4),
    }
    # a remote model's episode: no ids, so no token view
    header = Header(episode_id="ep-remote", task_id="files-4", split="train", created_at=time.time(),
                    model="remote-model", model_fingerprint="remote:http://x#m", tokenizer_hash="",
                    chat_template_hash="", sampling=Sampling(temperature=0.0))
    rec = Recorder(mine, header)
    rec.record(ModelCall(prompt_token_ids=None, output_token_ids=None, text="hi", content="hi", finish_reason="stop",
                         latency_s=0.1, token_exact=False))
    paths["remote"] = rec.end(Reward(value=0.0, source="test"))
    (mine / "broken.atraj").write_bytes(b"not a trace\n")
    return root, paths


@pytest.fixture(scope="module")
def srv(store):
    root, _ = store
    with ui_server(DEFAULT_DIR, store=str(root / "models"), traces=(str(root / "mine"),),
                   chat_dir=str(root / "chats"), evals_dir=str(root / "evals")) as (url, app):
        yield url, app


def listing(srv, **query):
    r = httpx.get(f"{srv[0]}/ui/api/trajectories", params=query, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_list_holds_every_episode_of_every_root_with_its_outcome(srv, store):
    body = listing(srv)
    assert [r["name"] for r in body["roots"]] == ["chats", "traces-1", "evals"]
    assert body["total"] == 5 and len(body["problems"]) == 1 and "broken.atraj" in body["problems"][0]
    by_ref = {e["ref"]: e for e in body["episodes"]}
    assert set(by_ref) == {"traces-1/ep-pass.atraj", "traces-1/ep-fail.atraj", "traces-1/ep-remote.atraj",
                           "evals/traces/run-a/files-3.k0.atraj", "evals/traces/run-b/files-3.k0.atraj"}
    e = by_ref["traces-1/ep-fail.atraj"]
    assert (e["task_id"], e["split"], e["passed"], e["reward"], e["route"]) == ("files-2", "heldout", False, 0.0,
                                                                                  "files-spec")
    assert e["model"] == "world-base" and e["token_exact"] and e["calls"] >= 1 and e["complete"]
    for name, path in store[1].items():  # the URL other pages link to is the one the list gives
        (entry,) = [x for x in body["episodes"] if x["path"] == str(path)]
        assert episode_url(srv[1].state.tg.config, path) == entry["url"] == "/ui/trajectories/" + entry["ref"]


@pytest.mark.parametrize("query, refs", [
    ({"split": "heldout"}, {"traces-1/ep-fail.atraj"}),
    ({"task": "files-3"}, {"evals/traces/run-a/files-3.k0.atraj", "evals/traces/run-b/files-3.k0.atraj"}),
    ({"passed": "true"}, {"traces-1/ep-pass.atraj", "evals/traces/run-b/files-3.k0.atraj"}),
    ({"passed": "none"}, {"traces-1/ep-remote.atraj", "evals/traces/run-a/files-3.k0.atraj"}),
    ({"route": "files-spec"}, {"traces-1/ep-fail.atraj"}),
    ({"model": "remote-model"}, {"traces-1/ep-remote.atraj"}),
    ({"id": "files-3.k0", "split": "validation", "passed": "false"}, set()),
    ({"q": "PASS"}, {"traces-1/ep-pass.atraj"}),
])
def test_filters_keep_exactly_the_matching_episodes(srv, query, refs):
    body = listing(srv, **query)
    assert {e["ref"] for e in body["episodes"]} == refs and body["matched"] == len(refs) and body["total"] == 5


def test_facets_count_each_value(srv):
    facets = listing(srv)["facets"]
    assert {"value": "validation", "count": 2} in facets["split"]
    assert {"value": "none", "count": 4} in facets["route"] and {"value": "files-spec", "count": 1} in facets["route"]
    assert sum(f["count"] for f in facets["passed"]) == 5


@pytest.mark.parametrize("query, says", [
    ({"colour": "red"}, "unknown filter 'colour'"),
    ({"passed": "maybe"}, "passed must be true, false or none"),
    ({"limit": "-3"}, "limit must be a whole number"),
])
def test_bad_list_queries_are_a_400_that_says_why(srv, query, says):
    r = httpx.get(f"{srv[0]}/ui/api/trajectories", params=query)
    assert r.status_code == 400 and says in r.json()["error"]


@pytest.mark.parametrize("ref", ["traces-1/../mine/ep-pass.atraj", "nowhere/ep-pass.atraj", "traces-1/ep-pass.txt",
                                 "traces-1//etc/passwd", "traces-1/missing.atraj", "chats"])
def test_a_ref_outside_the_roots_is_a_404(srv, ref):
    for path in ("/ui/api/trajectory", "/ui/api/trajectory/tokens"):
        r = httpx.get(f"{srv[0]}{path}", params={"ref": ref})
        assert r.status_code == 404 and "no episode" in r.json()["error"]


def test_an_episode_has_its_header_events_and_end(srv, store):
    body = httpx.get(f"{srv[0]}/ui/api/trajectory", params={"ref": "traces-1/ep-fail.atraj"}).json()
    ep = read_episode(store[1]["failed"])
    assert body["header"] == msgspec.to_builtins(ep.header)
    assert [e["kind"] for e in body["events"]] == [type(e).__struct_config__.tag for e in ep.events]
    calls = [e for e in body["events"] if e["kind"] == "model_call"]
    recorded = [e for e in ep.events if isinstance(e, ModelCall)]
    assert [c["output_tokens"] for c in calls] == [len(c.output_token_ids) for c in recorded]
    assert body["end"]["verdict"]["passed"] is False and body["header"]["route"]["target"] == "files-spec"


@pytest.mark.parametrize("mask_error_turns", [False, True])
def test_the_token_view_is_the_training_row_with_the_recorded_logprobs(srv, store, mask_error_turns):
    for name in ("passed", "failed", "run-b"):
        ep = read_episode(store[1][name])
        ref = httpx.get(f"{srv[0]}/ui/api/trajectories", params={"q": ep.header.episode_id}).json()
        ref = [e["ref"] for e in ref["episodes"] if e["path"] == str(store[1][name])][0]
        body = httpx.get(f"{srv[0]}/ui/api/trajectory/tokens",
                         params={"ref": ref, "mask_error_turns": str(mask_error_turns).lower()}).json()
        row = training_row(ep, mask_error_turns=mask_error_turns)
        tokens = body["tokens"]
        assert [t["id"] for t in tokens] == row.input_ids and [t["mask"] for t in tokens] == row.loss_mask
        sampled = [lp for c in ep.events if isinstance(c, ModelCall) for lp in c.logprobs]
        assert [t["logprob"] for t in tokens if t["logprob"] is not None] == sampled
        assert "world-base's tokenizer" in body["note"] and all(isinstance(t["text"], str) for t in tokens)


def test_an_episode_without_ids_has_no_token_view_and_says_why(srv):
    body = httpx.get(f"{srv[0]}/ui/api/trajectory/tokens", params={"ref": "traces-1/ep-remote.atraj"}).json()
    assert body["tokens"] == [] and "no token view" in body["note"]


def test_an_open_episode_stays_reachable_by_its_ref_once_finished(srv, store):
    chats = store[0] / "chats"
    chats.mkdir(exist_ok=True)
    shutil.copy(store[1]["passed"], chats / "chat-x.atraj")
    try:
        r = httpx.get(f"{srv[0]}/ui/api/trajectory", params={"ref": "chats/chat-x.atraj.part"})
    finally:
        (chats / "chat-x.atraj").unlink()  # the other tests count five episodes
    assert r.status_code == 200 and r.json()["path"] == str(chats / "chat-x.atraj")


# ---- the page, in Chromium --------------------------------------------------------------------------------------
def test_filter_the_list_open_an_episode_and_read_a_tokens_logprob(srv, store, ui_page):
    page = ui_page
    page.goto(f"{srv[0]}/ui/trajectories")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("nav.ui-top a.active").inner_text() == "Trajectories"
    assert page.locator("#episodes tbody tr").count() == 5
    page.select_option("#f-split", "heldout")
    page.wait_for_function("document.querySelectorAll('#episodes tbody tr').length === 1")
    assert "split=heldout" in page.url
    page.click("#episodes tbody a.episode-link")
    page.wait_for_selector("body[data-ready='1'] #tokens .tok")
    assert page.url.endswith("/ui/trajectories/traces-1/ep-fail.atraj")
    assert page.locator("#ep-reward").inner_text() == "0 (test)"
    ep = read_episode(store[1]["failed"])
    calls = [e for e in ep.events if isinstance(e, ModelCall)]
    assert page.locator(".event.model_call").count() == len(calls)
    # the first sampled token whose logprob is not 0: click it and read its logprob
    row = training_row(ep)
    lps = [lp for c in calls for lp in c.logprobs]
    first_sampled = row.loss_mask.index(1)
    k = next(i for i, lp in enumerate(lps) if lp < -1e-3)
    index = [i for i, m in enumerate(row.loss_mask) if m == 1][k]
    token = page.locator(f"#tokens .tok[data-i='{index}']")
    assert token.get_attribute("class") == "tok m1"
    assert page.locator(f"#tokens .tok[data-i='{first_sampled - 1}']").get_attribute("class") == "tok m0"
    token.click()
    assert page.locator("#tok-logprob").inner_text() == f"{lps[k]:.4f}"
    assert f"id {row.input_ids[index]}" in page.locator("#token-info").inner_text()


def test_an_episode_id_opens_its_episode_or_lists_those_that_share_it(srv, ui_page):
    page = ui_page
    page.goto(f"{srv[0]}/ui/trajectories/ep-pass")
    page.wait_for_selector("body[data-ready='1']")
    assert page.url.endswith("/ui/trajectories/traces-1/ep-pass.atraj") and page.locator("#tokens .tok").count() > 0
    page.goto(f"{srv[0]}/ui/trajectories/files-3.k0")
    page.wait_for_selector("body[data-ready='1']")
    assert "id=files-3.k0" in page.url and page.locator("#episodes tbody tr").count() == 2
