"""The scheduler's one memory budget over loaded models: an unloaded model is let go by the provider too, idle
models leave least recently used first, a model with work in flight is never unloaded (the new one waits while
it drains), weights shared by a base and its specialists count once, and a lone model larger than the budget is
still served. Real tiny models (571,392 bytes of float32 weights each; rank-4 adapters of 38,912 bytes)."""
import pytest

from tinygpt.runtime.catalog import Catalog
from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job
from tinygpt.runtime.models import ModelLoadError
from tinygpt.runtime.provider import unique_nbytes
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig
from tinygpt.runtime.store import ModelStore

NO_EOS = dict(stop_token_ids=())


@pytest.fixture(scope="module")
def world(tiny_model_dir, tmp_path_factory):
    """A store root: the tiny model served as `base`, specialists `spec-a`/`spec-b` on it, other bases m1, m2."""
    from tinygpt.runtime.presets import InitSpec, init_adapter, init_model

    root = tmp_path_factory.mktemp("budget")
    store = ModelStore(root / "models")
    for seed in (1, 2):
        store.add(f"m{seed}", init_model(root / f"m{seed}", InitSpec(preset="tiny", seed=seed)))
    for name, seed in (("a", 11), ("b", 12)):
        store.add(f"spec-{name}", init_adapter(tiny_model_dir, root / f"adapter-{name}", rank=4, seed=seed),
                  base=str(tiny_model_dir))
    return store


ONE = 571_392  # bytes of one tiny base's weights


def scheduler(world, tiny_model_dir, budget=None) -> Scheduler:
    catalog = Catalog(str(tiny_model_dir), "base", store=world)
    return Scheduler(catalog, SchedulerConfig(prefill_step=64, memory_budget_bytes=budget))


def held(s: Scheduler) -> list[tuple[bool, tuple[str, ...]]]:
    """What the provider holds: (is a base, the names holding it)."""
    return sorted((h.adapter is None, h.names) for h in s.models.provider.loaded())


def job(model, n=4, log=None):
    events = []

    def post(ev):
        events.append(ev)
        if log is not None and isinstance(ev, (Finished, Failed)):
            log.append((model, n, type(ev).__name__))

    return Job(prompt_ids=[5, 6, 7], params=SamplingParams(max_tokens=n, **NO_EOS), model=model, post=post), events


def run(s: Scheduler, model: str, n: int = 4):
    j, events = job(model, n)
    s.submit(j)
    while not any(isinstance(e, (Finished, Failed)) for e in events):
        s.pump()
    return events[-1]


def test_an_unloaded_model_is_let_go_by_the_provider_too(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir)
    run(s, "spec-a")
    run(s, "m1")
    assert held(s) == [(False, ("spec-a",)), (True, ()), (True, ("m1",))]  # spec-a's base, held for it
    s.control("unload", "spec-a").result(0)
    assert held(s) == [(True, ("m1",))]  # the specialist and the base it alone used are gone
    s.control("unload", "m1").result(0)
    assert held(s) == [] and s.lanes == {} and s.held_bytes() == 0


def test_a_shared_base_stays_while_any_specialist_on_it_is_loaded(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir)
    for name in ("base", "spec-a", "spec-b"):
        run(s, name)
    lane = s.lanes["base"]
    base_model = lane.loaded.model
    assert lane is s.lanes["spec-a"] is s.lanes["spec-b"] and lane.multi.names == ["spec-a", "spec-b"]
    s.control("unload", "spec-a").result(0)
    assert lane.multi.names == ["spec-b"] and "spec-a" not in lane.keys  # its adapter left the shared batch
    s.control("unload", "base").result(0)
    assert s.lanes == {"spec-b": lane}  # the base's weights stay: spec-b runs on them
    assert held(s) == [(False, ("spec-b",)), (True, ())]
    assert isinstance(run(s, "spec-b"), Finished)
    s.control("unload", "spec-b").result(0)
    assert held(s) == [] and s.lanes == {}
    assert not any(type(m).__name__.startswith("Multi") for _, m in base_model.named_modules())  # layers back


def test_idle_models_leave_least_recently_used_first_within_the_budget(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=int(2.5 * ONE))  # two of the three bases fit
    run(s, "m1")
    run(s, "m2")
    run(s, "m1")  # m2 is now the least recently used
    run(s, "base")
    assert sorted(s.lanes) == ["base", "m1"]
    assert held(s) == sorted([(True, ("m1",)), (True, (str(tiny_model_dir),))])
    assert s.held_bytes() == 2 * ONE
    run(s, "m2")  # m1 was used before base: it goes
    assert sorted(s.lanes) == ["base", "m2"]


def test_a_model_with_work_in_flight_is_never_unloaded_the_new_one_waits(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=int(1.5 * ONE))  # one base at a time
    ends = []
    long_job, long_events = job("m1", 40, ends)
    s.submit(long_job)
    while not any(isinstance(e, Chunk) for e in long_events):
        s.pump()
    other, _ = job("m2", 4, ends)
    again, _ = job("m1", 4, ends)  # m1 drains: its new job waits behind m2, or m2 could wait forever
    s.submit(other)
    s.submit(again)
    while len(ends) < 3:
        s.pump()
        assert len(s.lanes) <= 1, "two bases loaded at once under a budget of one"
    assert ends == [("m1", 40, "Finished"), ("m2", 4, "Finished"), ("m1", 4, "Finished")]
    assert list(s.lanes) == ["m1"] and held(s) == [(True, ("m1",))]


def test_a_load_request_waits_for_a_busy_model_to_finish(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=int(1.5 * ONE))
    long_job, long_events = job("m1", 30)
    s.submit(long_job)
    s.pump()
    loading = s.control("load", "m2")
    while not any(isinstance(e, Finished) for e in long_events):
        assert not loading.done() and "m2" not in s.lanes
        s.pump()
    s.pump()
    assert loading.result(0) > 0 and list(s.lanes) == ["m2"]


def test_when_the_waiting_request_goes_away_the_drained_model_takes_work_again(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=int(1.5 * ONE))
    ends = []
    long_job, long_events = job("m1", 40, ends)
    s.submit(long_job)
    while not any(isinstance(e, Chunk) for e in long_events):
        s.pump()
    waiting, _ = job("m2", 4, ends)
    s.submit(waiting)
    loading = s.control("load", "m2")
    s.pump()
    again, _ = job("m1", 4, ends)
    s.submit(again)
    s.pump()
    assert ends == []  # m1's new job is held back behind m2
    s.cancel(waiting)  # both callers that wanted m2 go away
    assert loading.cancel()
    while len(ends) < 2:
        s.pump()
    assert ends == [("m1", 4, "Finished"), ("m1", 40, "Finished")]  # it joined the running batch, m2 never came
    assert list(s.lanes) == ["m1"]


def test_a_base_and_its_specialists_count_their_shared_weights_once(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=int(1.5 * ONE))  # base + two adapters fit; two bases do not
    for name in ("base", "spec-a", "spec-b"):
        run(s, name)
    assert sorted(s.lanes) == ["base", "spec-a", "spec-b"]  # nothing was unloaded to load the specialists
    lane = s.lanes["base"]
    models = [lane.loaded.model] + [s.models.get(n).model for n in ("spec-a", "spec-b")]
    assert s.held_bytes() == unique_nbytes(models) + lane.multi.nbytes  # adapters stacked for the shared batch
    assert ONE < s.held_bytes() < 1.5 * ONE
    assert s.sizes["spec-a"] == ONE + 38_912  # /api/ps: the weights spec-a runs on
    run(s, "m1")  # the base's whole lane was idle and least recently used: it goes, with its specialists
    assert list(s.lanes) == ["m1"] and held(s) == [(True, ("m1",))]


def test_a_lone_model_larger_than_the_budget_is_still_served(world, tiny_model_dir):
    s = scheduler(world, tiny_model_dir, budget=1)
    assert isinstance(run(s, "m1"), Finished)
    assert isinstance(run(s, "spec-a"), Finished)  # with its base: one model family at a time
    assert sorted(s.lanes) == ["spec-a"] and held(s) == [(False, ("spec-a",)), (True, ())]


def test_a_model_whose_weights_cannot_be_read_fails_its_jobs_with_a_clear_error(world, tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    store = ModelStore(tmp_path / "models")
    store.add("broken", broken)
    s = Scheduler(Catalog(str(tiny_model_dir), "base", store=store), SchedulerConfig(memory_budget_bytes=ONE))
    end = run(s, "broken")
    assert isinstance(end, Failed) and end.status == 503
    assert "could not be loaded" in end.message and "not a readable safetensors file" in end.message
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        s.control("load", "broken").result(0)
    assert isinstance(run(s, "base"), Finished) and held(s) == [(True, (str(tiny_model_dir),))]


def test_threaded_jobs_for_more_models_than_fit_all_finish_one_model_at_a_time(world, tiny_model_dir):
    from tinygpt.runtime.engine import Engine

    s = scheduler(world, tiny_model_dir, budget=int(1.5 * ONE))
    s.start(preload=["m1"])
    both = []

    def watch(j):
        post = j.post

        def on_event(ev):  # delivered in the scheduler's thread
            if len(s.lanes) > 1:
                both.append(sorted(s.lanes))
            post(ev)
        j.post = on_event
        return j

    try:
        jobs = [watch(job(m, 6)[0]) for m in ("m1", "m2", "m1", "m2")]
        ends = s.run(jobs, timeout=120)
    finally:
        s.stop()
    assert both == [] and [type(e) for e in ends] == [Finished] * 4
    for j, end in zip(jobs, ends):
        want = Engine(s.models.get(j.model)).generate(j.prompt_ids, SamplingParams(max_tokens=6, **NO_EOS))
        assert end.result.output_ids == want.output_ids
