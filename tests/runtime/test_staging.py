"""Prompts prefilled outside the batch ("staged") and prompt starts shared through the prefix cache (lane.py).

A long prompt that arrives while other jobs decode is prefilled on its own between batch steps and joins the
batch with the ids it gets alone; a start that several sessions share is prefilled once, one at a time and in
flight alike, with the same ids and the same cached counts both ways; the lane counts it all (lane_work.py)."""
import numpy as np
import pytest

from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job
from tinygpt.runtime.kv_cache import Session
from tinygpt.runtime.lane import SHARE_MIN
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig, StaticModels

STEP = 64  # prompt ids per prefill step: a few hundred ids take several


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from tinygpt.runtime.models import load

    return load(str(tiny_model_dir))


def scheduler(loaded, **config):
    return Scheduler(StaticModels({"m": loaded}), SchedulerConfig(prefill_step=STEP, **config))


def ids(n, seed, first=None):
    rest = np.random.default_rng(seed).integers(3, 600, size=n).tolist()
    return rest if first is None else [first] + rest[1:]


def job(prompt, n, session=None):
    events = []
    j = Job(prompt_ids=list(prompt), params=SamplingParams(max_tokens=n, stop_token_ids=()), model="m",
            session=session, post=events.append)
    return j, events


def end(events):
    return next((e for e in events if isinstance(e, (Finished, Failed))), None)


def tokens(events):
    return sum(len(e.token_ids) for e in events if isinstance(e, Chunk))


def consistent(session):
    return all(c.offset == len(session.ids) for c in session.cache)


def arrive_while_decoding(loaded, prompt, **config):
    """Job A decodes alone; `prompt` arrives; pump to the end. (lane, the new job's end, the rounds that prefilled
    it outside the batch, the tokens A made in those rounds)."""
    s = scheduler(loaded, **config)
    a, a_events = job(ids(10, 2), 400)
    s.submit(a)
    while tokens(a_events) < 2:
        s.pump()
    b, b_events = job(prompt, 8)
    s.submit(b)
    lane, staged_rounds, a_tokens = s.lane("m"), 0, 0
    while end(b_events) is None:
        before, prefilled = tokens(a_events), lane.work.staged_prefill_tokens
        s.pump()
        if lane.work.staged_prefill_tokens > prefilled:
            staged_rounds += 1
            a_tokens += tokens(a_events) - before
    s.cancel(a)
    s.pump()
    return lane, end(b_events), staged_rounds, a_tokens


def test_a_long_prompt_arriving_while_others_decode_is_prefilled_outside_the_batch(loaded):
    prompt = ids(5 * STEP + 7, 1)
    alone = scheduler(loaded).run([job(prompt, 8)[0]])[0].result  # one at a time: the solo path
    lane, got, staged_rounds, a_tokens = arrive_while_decoding(loaded, prompt)
    chunks = -(-(len(prompt) - 1) // STEP)
    # one chunk per round, and the decoding row made a token in each (but the first: it moved from solo to the batch)
    assert staged_rounds == chunks and a_tokens == chunks - 1
    assert lane.work.staged_prefill_tokens == len(prompt) - 1 and lane.work.batch_prefill_tokens == 0
    assert lane.handoffs == 1 and lane.peak_active == 2
    assert got.result.output_ids == alone.output_ids  # it joined the batch with the ids it gets alone


def test_with_staging_off_the_batch_prefills_the_prompt(loaded):
    prompt = ids(5 * STEP + 7, 1)
    lane, got, staged_rounds, _ = arrive_while_decoding(loaded, prompt, stage_min=0)
    assert staged_rounds == 0 and lane.work.staged_prefill_tokens == 0
    assert lane.work.batch_prefill_tokens == len(prompt) - 1  # mlx-lm's prompt processing
    assert len(got.result.output_ids) == 8


def test_sessions_that_start_alike_prefill_the_start_once_one_at_a_time_and_in_flight(loaded):
    shared = ids(SHARE_MIN + 150, 3)
    prompts = [shared + ids(20 + i, 10 + i, first=600 + i) for i in range(3)]  # they part right after `shared`
    got = {}
    for n in (1, 3):
        s = scheduler(loaded)
        sessions = [Session.new(loaded.model) for _ in prompts]
        jobs = [job(p, 6, session=x)[0] for p, x in zip(prompts, sessions)]
        ends = [s.run([j])[0] for j in jobs] if n == 1 else s.run(jobs)
        lane = s.lane("m")
        assert all(x.ids[:len(p)] == p and consistent(x) for p, x in zip(prompts, sessions))
        got[n] = ([e.result.output_ids for e in ends], [e.result.cached_tokens for e in ends])
        w = lane.work
        assert w.prefix_cache_stores == 1 and w.prefix_cache_tokens == 2 * len(shared)  # stored once, used twice
        own = w.solo_prefill_tokens if n == 1 else w.staged_prefill_tokens
        assert own == sum(len(p) - 1 for p in prompts) - 2 * len(shared) and w.batch_prefill_tokens == 0
        # a session's own history is never re-seeded or stored, however long its next turn is
        more = sessions[0].ids + ids(SHARE_MIN + 40, 4)
        turn = s.run([job(more, 2, session=sessions[0])[0]])[0].result
        assert turn.cached_tokens == len(more) - SHARE_MIN - 40
        assert w.prefix_cache_stores == 1 and w.session_tokens == turn.cached_tokens
    assert got[1] == got[3]
    assert got[1][1] == [0, len(shared), len(shared)]


def test_staged_jobs_cancelled_mid_prefill_or_waiting_leave_their_sessions_consistent(loaded):
    s = scheduler(loaded)
    a, a_events = job(ids(10, 2), 400)
    s.submit(a)
    while tokens(a_events) < 2:
        s.pump()
    sessions = [Session.new(loaded.model) for _ in range(3)]
    prompts = [ids(6 * STEP, 5 + i) for i in range(3)]
    staged = [job(p, 8, session=x) for p, x in zip(prompts, sessions)]
    for j, _ in staged:
        s.submit(j)
    lane = s.lane("m")
    while lane.work.staged_prefill_tokens < 2 * STEP:
        s.pump()
    s.cancel(staged[0][0])  # mid-prefill, at the head
    s.cancel(staged[2][0])  # waiting, not started
    s.pump()
    assert [end(staged[i][1]).result.finish_reason for i in (0, 2)] == ["cancelled"] * 2
    assert sessions[0].ids == prompts[0][:2 * STEP] and consistent(sessions[0])  # exactly what it had prefilled
    assert sessions[2].ids == [] and consistent(sessions[2])
    while end(staged[1][1]) is None:  # the one between them goes on
        s.pump()
    assert len(end(staged[1][1]).result.output_ids) == 8 and sessions[1].ids[:len(prompts[1])] == prompts[1]
    s.cancel(a)
    s.pump()
    assert end(a_events) is not None


def test_a_sessions_later_turn_is_staged_on_shape_bucketed_layers(loaded, monkeypatch):
    import tinygpt.runtime.solo as solo
    from tinygpt.runtime.prefill import BucketedKVCache

    s = scheduler(loaded)
    sessions = [Session.new(loaded.model) for _ in range(2)]
    s.run([job(ids(40, 20 + i), 3, session=x)[0] for i, x in enumerate(sessions)])  # in flight: via the batch
    assert not any(isinstance(c, BucketedKVCache) for c in sessions[0].cache)  # the batch gives plain layers back
    seen, real = [], solo.prefill

    def spy(model, cache, chunk, *args, **kwargs):
        seen.append(all(isinstance(c, BucketedKVCache) for c in cache))
        return real(model, cache, chunk, *args, **kwargs)
    monkeypatch.setattr(solo, "prefill", spy)
    held = [len(x.ids) for x in sessions]
    ends = s.run([job(x.ids + ids(30, 30 + i), 3, session=x)[0] for i, x in enumerate(sessions)])
    assert len(seen) == 2 and all(seen)  # each new turn: one chunk, padded and bucketed as a solo turn is
    assert [e.result.cached_tokens for e in ends] == held and all(consistent(x) for x in sessions)
