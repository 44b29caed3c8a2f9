"""A lone job decodes outside the batch (runtime/solo.py) and is handed to the batch when another arrives: the
hand-off must be exact, at any point of prefill or decode, and seeded draws must not depend on the path."""
import threading
import time

import httpx
import mlx.core as mx
import pytest
from mlx_lm.generate import BatchGenerator, StopSequences

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.job_sampler import make_job_sampler
from tinygpt.runtime.solo import SoloRun


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(load(str(tiny_model)))


def _run(engine, prompt, max_tokens, handoff_after, prefill_step=4):
    """Advance a SoloRun `handoff_after` times (prefill chunks and tokens), hand it to a batch, finish there."""
    sampler = make_job_sampler(SamplingParams(max_tokens=max_tokens))
    run = SoloRun(engine.model, None, list(prompt), [], max_tokens, sampler, prefill_step)
    out = []
    for _ in range(handoff_after):
        got = run.advance()
        if got is not None:
            out.append(got[0])
    cache, rest, held, left = run.handoff()
    assert held + rest == (list(prompt) + out)[: len(held) + len(rest)]
    assert left == max_tokens - len(out)
    bg = BatchGenerator(engine.model, completion_batch_size=4, prefill_step_size=prefill_step)
    try:
        bg.insert([rest], max_tokens=[left], caches=[cache], all_tokens=[held], samplers=[sampler],
                  stop_sequences=[StopSequences([])])
        while len(out) < max_tokens:
            for r in bg.next()[1]:
                out.append(r.token)
    finally:
        bg.close()
    return out


@pytest.mark.parametrize("handoff_after", [0, 1, 3, 5, 6, 9, 20])
def test_handoff_at_any_point_continues_exactly(engine, handoff_after):
    prompt = engine.encode_chat([{"role": "user", "content": "hand me over at any point please"}])
    want = engine.generate(prompt, SamplingParams(max_tokens=24, stop_token_ids=[])).output_ids
    # prefill_step 4 over a ~20-token prompt: the first few advances are prefill chunks, then tokens
    assert _run(engine, prompt, 24, handoff_after) == want


def test_solo_alone_matches_the_engine(engine):
    prompt = engine.encode_chat([{"role": "user", "content": "alone"}])
    sampler = make_job_sampler(SamplingParams())
    run = SoloRun(engine.model, None, prompt, [], 16, sampler, 512)
    out, lps = [], []
    while len(out) < 16:
        got = run.advance()
        if got is not None:
            out.append(got[0])
            lps.append(got[1][got[0]].item())
    cache, ids = run.close()
    want = engine.generate(prompt, SamplingParams(max_tokens=16, stop_token_ids=[]))
    assert out == want.output_ids
    assert lps == pytest.approx(want.logprobs, abs=1e-4)
    assert ids == (prompt + out)[: len(ids)] and cache[0].offset == len(ids) >= len(prompt) + 15


def _chat(url, content, **extra):
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0,
            "return_token_ids": True, "logprobs": True, **extra}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    r.raise_for_status()
    return r.json()


def test_a_lone_request_runs_solo_and_a_second_one_takes_it_into_the_batch(start_server, engine):
    srv = start_server(max_tokens=4096)
    lone = _chat(srv.url, "just me", max_tokens=12)
    assert (srv.worker.solo_jobs, srv.worker.handoffs) == (1, 0)
    ids = engine.encode_chat([{"role": "user", "content": "just me"}])
    assert lone["choices"][0]["token_ids"] == engine.generate(ids, SamplingParams(max_tokens=12)).output_ids

    answers = {}
    first = threading.Thread(target=lambda: answers.update(a=_chat(srv.url, "long one", max_tokens=1500)))
    first.start()
    deadline = time.monotonic() + 30
    while srv.worker.active == 0 and time.monotonic() < deadline:  # the long one is decoding on its own
        time.sleep(0.005)
    time.sleep(0.1)
    answers["b"] = _chat(srv.url, "second", max_tokens=10)
    first.join(120)
    assert (srv.worker.solo_jobs, srv.worker.handoffs) == (2, 1)
    for key, content, n in (("a", "long one", 1500), ("b", "second", 10)):
        want = engine.generate(engine.encode_chat([{"role": "user", "content": content}]),
                               SamplingParams(max_tokens=n))
        got = answers[key]["choices"][0]
        assert got["token_ids"] == want.output_ids
        assert [t["logprob"] for t in got["logprobs"]["content"]] == pytest.approx(want.logprobs, abs=1e-3)


def test_seeded_draws_do_not_depend_on_running_solo(start_server):
    solo, batched = start_server(), start_server(solo=False)
    args = dict(max_tokens=16, temperature=1.0, seed=77)
    a = _chat(solo.url, "seeded", **args)["choices"][0]["token_ids"]
    b = _chat(batched.url, "seeded", **args)["choices"][0]["token_ids"]
    assert solo.worker.solo_jobs == 1 and batched.worker.solo_jobs == 0
    assert a == b


def test_a_grammar_job_never_runs_solo(start_server):
    srv = start_server()
    _chat(srv.url, "json please", max_tokens=8, response_format={"type": "json_object"})
    assert srv.worker.solo_jobs == 0
