"""The one scheduler: many models by name, fair between models, prefix caches never shared across identities,
and the same tokens whichever caller drives it (inline for the CLI and agent, threaded for the server)."""
import time

import pytest

from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig, StaticModels, UnknownModel

NO_EOS = dict(stop_token_ids=())  # never stops early: the budget decides


@pytest.fixture(scope="module")
def two_models(tiny_model_dir, tmp_path_factory):
    from tinygpt.runtime.models import load
    from tinygpt.runtime.presets import InitSpec, init_model

    other = init_model(tmp_path_factory.mktemp("models") / "other", InitSpec(preset="tiny", seed=1))
    return {"a": load(str(tiny_model_dir)), "b": load(str(other))}


def _job(model, ids, n, **params):
    events = []
    job = Job(prompt_ids=list(ids), params=SamplingParams(max_tokens=n, **params), model=model, post=events.append)
    return job, events


def _done(events):
    return next((e for e in events if isinstance(e, (Finished, Failed))), None)


def test_a_long_stream_on_one_model_does_not_starve_another_models_requests(two_models):
    s = Scheduler(StaticModels(two_models), SchedulerConfig(prefill_step=64))
    long_job, long_events = _job("a", [5, 6, 7, 8], 300, **NO_EOS)
    s.submit(long_job)
    for _ in range(5):
        s.pump()
    shorts = [_job("b", [9, 10 + i, 11], 4, **NO_EOS) for i in range(3)]
    for job, _ in shorts:
        s.submit(job)
    rounds = 0
    while not all(_done(ev) for _, ev in shorts):
        s.pump()
        rounds += 1
        assert rounds < 100, "the other model's short requests waited behind the long stream"
    assert _done(long_events) is None  # still streaming: the short ones were served in between
    assert all(len(_done(ev).result.output_ids) == 4 for _, ev in shorts)
    while not _done(long_events):
        s.pump()
    assert len(_done(long_events).result.output_ids) == 300


def test_threaded_scheduler_serves_two_models_at_once_with_each_models_own_tokens(two_models):
    from tinygpt.runtime.engine import Engine

    s = Scheduler(StaticModels(two_models), SchedulerConfig(prefill_step=64))
    s.start(preload=["a", "b"])
    try:
        long_job, long_events = _job("a", [5, 6, 7, 8], 2000, **NO_EOS)
        s.submit(long_job)
        deadline = time.monotonic() + 30
        while not any(isinstance(e, Chunk) for e in long_events) and time.monotonic() < deadline:
            time.sleep(0.005)
        shorts = [_job("b", [9, 10 + i, 11], 6, **NO_EOS) for i in range(3)]
        for job, _ in shorts:
            s.submit(job)
        while not all(_done(ev) for _, ev in shorts) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert all(_done(ev) for _, ev in shorts) and _done(long_events) is None
        s.cancel(long_job)
        solo_b = Engine(two_models["b"])
        for job, ev in shorts:  # batched next to another model's stream, yet exactly what b alone gives
            want = solo_b.generate(job.prompt_ids, SamplingParams(max_tokens=6, **NO_EOS)).output_ids
            assert _done(ev).result.output_ids == want
    finally:
        s.stop()


def test_prefix_cache_entries_are_never_shared_between_models(two_models):
    s = Scheduler(StaticModels(two_models), SchedulerConfig(prefill_step=64))
    ids = list(range(3, 40))

    def run(model):
        job, ev = _job(model, ids, 3)
        s.submit(job)
        while not _done(ev):
            s.pump()
        return _done(ev).result

    assert run("a").cached_tokens == 0
    assert run("a").cached_tokens == len(ids) - 1  # same model, same prompt: a prefix-cache hit
    assert run("b").cached_tokens == 0             # another identity never sees a's entry
    assert s.lane("a").cache_key != s.lane("b").cache_key


def test_unknown_model_is_refused_with_the_servable_names(two_models):
    s = Scheduler(StaticModels(two_models))
    job, _ = _job("nope", [1, 2], 2)
    with pytest.raises(UnknownModel) as e:
        s.submit(job)
    assert e.value.names == ["a", "b"] and "'nope'" in str(e.value) and "a, b" in str(e.value)


def test_a_specialist_and_its_base_share_weights_but_never_a_prefix_cache_entry(tiny_model_dir, tmp_path):
    from tinygpt.runtime.catalog import Catalog
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    store = ModelStore(tmp_path / "models")
    init_adapter(tiny_model_dir, tmp_path / "adapter", rank=4, seed=3)
    store.add("spec", tmp_path / "adapter", base=str(tiny_model_dir))
    catalog = Catalog(str(tiny_model_dir), "base", store=store)
    assert catalog.names() == ["base", "default", "spec"]  # the embedded default is always servable
    s = Scheduler(catalog, SchedulerConfig(prefill_step=64))
    ids = list(range(3, 30))

    def run(model):
        job, ev = _job(model, ids, 4, **NO_EOS)
        s.submit(job)
        while not _done(ev):
            s.pump()
        return _done(ev).result

    base = run("base")
    assert run("base").cached_tokens == len(ids) - 1
    spec = run("spec")
    lane = s.lane("spec")
    assert lane is s.lane("base")  # one lane, one batch for a base and its specialists (multi_adapter.py)
    assert spec.cached_tokens == 0 and lane.keys["spec"] != lane.keys["base"]
    assert spec.logprobs != base.logprobs  # the adapter changes the distribution: it really ran on the specialist
    assert catalog.info("spec").kind == "specialist" and catalog.info("spec").base == catalog.info("base").base


def test_a_base_and_two_specialists_decode_in_one_batch_exactly_as_each_alone(tiny_model_dir, tmp_path):
    from tinygpt.runtime.catalog import Catalog
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    store = ModelStore(tmp_path / "models")
    for i, name in enumerate(("s1", "s2")):
        init_adapter(tiny_model_dir, tmp_path / name, rank=4, seed=10 + i)
        store.add(name, tmp_path / name, base=str(tiny_model_dir))
    catalog = Catalog(str(tiny_model_dir), "base", store=store)
    s = Scheduler(catalog, SchedulerConfig(prefill_step=64))
    s.start(preload=["base", "s1", "s2"])
    try:
        jobs = {m: _job(m, [4, 5, 6, 7, 8, 9], 12, **NO_EOS) for m in ("base", "s1", "s2", "s1")}
        jobs["s1b"] = _job("s1", [4, 5, 6, 7, 8, 9], 12, **NO_EOS)
        for job, _ in jobs.values():
            s.submit(job)
        deadline = time.monotonic() + 60
        while not all(_done(ev) for _, ev in jobs.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.lanes["s1"] is s.lanes["s2"] is s.lanes["base"] and s.peak_active >= 3  # one shared batch
    finally:
        s.stop()
    for name, (job, ev) in jobs.items():
        alone = Engine(catalog.get(job.model)).generate(job.prompt_ids, SamplingParams(max_tokens=12, **NO_EOS))
        got = _done(ev).result
        assert got.output_ids == alone.output_ids, name
        assert max(abs(a - b) for a, b in zip(got.logprobs, alone.logprobs)) < 1e-3, name
    assert _done(jobs["s1"][1]).result.output_ids == _done(jobs["s1b"][1]).result.output_ids


def test_one_session_id_on_two_specialists_of_a_shared_lane_never_shares_their_kv(tiny_model_dir, tmp_path):
    from tinygpt.runtime.catalog import Catalog
    from tinygpt.runtime.presets import init_adapter
    from tinygpt.runtime.store import ModelStore

    store = ModelStore(tmp_path / "models")
    for i, name in enumerate(("s1", "s2")):
        init_adapter(tiny_model_dir, tmp_path / name, rank=4, seed=20 + i)
        store.add(name, tmp_path / name, base=str(tiny_model_dir))
    s = Scheduler(Catalog(str(tiny_model_dir), "base", store=store), SchedulerConfig(prefill_step=64))
    ids = list(range(3, 25))

    def run(model):
        job, ev = _job(model, ids, 3, **NO_EOS)
        job.session = "same-id"
        s.submit(job)
        while not _done(ev):
            s.pump()
        return _done(ev).result

    assert run("s1").cached_tokens == 0
    assert run("s1").cached_tokens == len(ids) - 1  # the session kept s1's KV
    assert run("s2").cached_tokens == 0             # s2 under the same id starts from nothing
    assert s.lane("s1") is s.lane("s2") and len(s.lane("s1").sessions) == 2


@pytest.mark.parametrize("threaded", [False, True])
def test_run_batches_many_jobs_for_a_python_caller_and_returns_each_end_in_order(two_models, threaded):
    from tinygpt.runtime.engine import Engine

    s = Scheduler(StaticModels(two_models), SchedulerConfig(prefill_step=64))
    if threaded:
        s.start(preload=["a", "b"])
    try:
        jobs = [_job(m, [3, 4 + i, 5], 5, **NO_EOS)[0] for i, m in enumerate("abab")]
        ends = s.run(jobs, timeout=60)
    finally:
        s.stop()
    assert [type(e) for e in ends] == [Finished] * 4
    for job, end in zip(jobs, ends):
        want = Engine(two_models[job.model]).generate(job.prompt_ids, SamplingParams(max_tokens=5, **NO_EOS))
        assert end.result.output_ids == want.output_ids and end.result.prompt_ids == job.prompt_ids
