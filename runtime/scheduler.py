"""The one scheduler every caller generates through: the server, the CLI, the agent loop and (next) evals.

It serves jobs for several models by name: each loaded model is served by a `Lane` (lane.py: its batch, solo
job, prefix cache and sessions). Models come from a `ModelSource` (`get(name)` loads one, `release(name)` lets the
source drop it once unloaded, `footprint(name)` says what it will occupy, `names()` lists what can be served).
A model unloads after its keep-alive runs out, and whenever room is needed: the scheduler owns the one memory
budget (`memory_budget_bytes`, weights only, each shared array once) and the one least-recently-used order;
before a model loads, idle models (no running or queued jobs) unload, least recently used first, until it fits
(memory_budget.py). A model with work in flight is never unloaded: if the new one cannot fit without it, the new
one's jobs wait while the busy model drains (it finishes what it runs; its new jobs wait behind the new model);
a model that fits nothing loads when it would be alone. When the source can give a specialist's base
(`base_model`, as the server's catalog does), a base and all its specialists share one lane: their rows go into
one batch, one forward pass of the base with per-row adapter deltas (multi_adapter.py). Each round every lane
with work runs one step, in turn, so a long stream on one model never starves another's short requests.
It runs either on its own thread (`start()`: the server; jobs come from any thread through an inbox and events
go back through each job's `post`/`sink`, handed over in one call per sink at most every FLUSH_S), or inline,
driven by its one caller (`pump()`: the CLI and agent through engine.py), where an interruption (Ctrl-C inside
a layer) settles every running job's cache and finishes it before it propagates. `run(jobs)` submits many jobs
at once and waits for their ends, in either mode (evals, distillation).
Not here: HTTP and wire formats (web/), prompts and chat templates (engine.py), tokens-to-events (jobs.py).
"""
from __future__ import annotations

import concurrent.futures
import gc
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import mlx.core as mx

from tinygpt.runtime.jobs import Chunk, Event, Failed, Finished, Job, deliver
from tinygpt.runtime.lane import Lane, LaneConfig
from tinygpt.runtime.memory_budget import plan_room
from tinygpt.runtime.model_card import ModelCard, describe
from tinygpt.runtime.models import LoadedModel, load
from tinygpt.runtime.multi_adapter import AdapterError
from tinygpt.runtime.provider import footprint, weight_arrays
from tinygpt.runtime.store import ModelStore

log = logging.getLogger("tinygpt.scheduler")
FLUSH_S = 0.02  # longest a generated token waits before it is handed to its caller (threaded mode)


class UnknownModel(LookupError):
    """No model by that name; `names` is what can be served."""

    def __init__(self, name: str, names: list[str]):
        self.name, self.names = name, list(names)
        super().__init__(f"no model named {name!r}; available: {', '.join(self.names) or '(none)'}")


class ModelSource(Protocol):
    """Where the scheduler gets models: `names()` lists the servable ones, `get(name)` loads one, `release(name)`
    says the scheduler unloaded it (the source must not keep its weights alive for it), `footprint(name)` is
    {directory: bytes} of the weights it will run on once loaded (base first, then its adapter), not loading."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> LoadedModel: ...

    def release(self, name: str) -> None: ...

    def footprint(self, name: str) -> dict[str, int]: ...


class StaticModels:
    """A fixed set of models by name: each a path or hub id (loaded on each `get`, dropped when the scheduler
    unloads it) or an already loaded model (the caller's: it stays in memory whatever the scheduler does)."""

    def __init__(self, models: dict[str, str | LoadedModel]):
        self._models = dict(models)

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> LoadedModel:
        if name not in self._models:
            raise UnknownModel(name, self.names())
        m = self._models[name]
        return m if isinstance(m, LoadedModel) else load(m)

    def release(self, name: str) -> None:
        """Nothing to do: this source keeps no reference to what it loads."""

    def footprint(self, name: str) -> dict[str, int]:
        m = self._models[name]
        if isinstance(m, LoadedModel):
            return footprint(m.path, m.adapter_path)
        r = ModelStore().resolve(m)
        return footprint(r.base, r.adapter)


@dataclass
class SchedulerConfig(LaneConfig):
    """The lanes' settings plus the scheduler's own."""

    keep_alive_s: float = -1.0      # after a model's last job; < 0: keep loaded (until room is needed)
    memory_budget_bytes: int | None = None  # weights of all loaded models (shared arrays once); None: no limit
    share_adapters: bool = True     # a base and its specialists share one lane (one batch) where the source allows
    max_pending: int = 256          # queued jobs beyond this are refused (Failed 429 / QueueFull)

    def lane_config(self) -> LaneConfig:
        """The lanes' settings; a prefill step of 0 means "by device" (default_prefill_step)."""
        c = LaneConfig(**{f.name: getattr(self, f.name) for f in fields(LaneConfig)})
        if c.prefill_step <= 0:
            c.prefill_step = default_prefill_step()
        return c


class QueueFull(RuntimeError):
    pass


class ShuttingDown(RuntimeError):
    pass


@dataclass(frozen=True)
class Resident:
    """A loaded model, as /api/ps shows it."""

    name: str
    nbytes: int             # the weights it runs on (a specialist: its base's and its adapter's)
    expires: float | None   # monotonic time its keep-alive ends; None: kept until room is needed or it is unloaded
    on_gpu: bool            # its weights are in the accelerator's memory (MLX's default device is a GPU)


class Scheduler:
    """Jobs for many models, one MLX owner. `submit` jobs (any thread when started); events come back to each job."""

    def __init__(self, models: ModelSource, config: SchedulerConfig = SchedulerConfig(), *,
                 default: str | None = None):
        self.models = models
        self.config = config
        self.default = default or (models.names()[0] if models.names() else "")
        self.cards: dict[str, ModelCard] = {}
        self.lanes: dict[str, Lane] = {}  # model name -> the lane serving it (specialists share their base's)
        self._groups: dict[str, Lane] = {}  # base directory -> its shared lane
        self.expires: dict[str, float | None] = {}  # monotonic time a loaded model unloads; None: never
        self.sizes: dict[str, int] = {}  # bytes of the weights each loaded model runs on
        self._loaded: dict[str, LoadedModel] = {}  # each loaded name's model (a shared lane's specialists too)
        self._arrays: dict[str, dict[int, int]] = {}  # each loaded name's weight arrays, {id: bytes}
        self._used: dict[str, int] = {}  # when each loaded model was last used, in ticks: the one LRU order
        self._tick = 0
        self._waiter: str | None = None  # the model waiting for memory; models not loaded yet wait behind it
        self._held_back: list[Lane] = []  # lanes that take no new jobs until the waiter loads
        self._load_waits: dict[str, list[tuple[float | None, concurrent.futures.Future, float]]] = {}  # control
        self._on_gpu = mx.default_device().type == mx.DeviceType.gpu
        self._queued: dict[str, deque[Job]] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: list[tuple[Job, Event]] = []
        self._flushed = 0.0
        self._round = 0
        self._stopping = False
        self._threaded = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._preload: list[str] = []
        self._thread = threading.Thread(target=self._main, name="tinygpt-scheduler", daemon=True)
        self._gone = {"peak_active": 0, "cancelled": 0, "solo_jobs": 0, "handoffs": 0}  # of unloaded lanes

    # ---- observability (totals over lanes) ---------------------------------------------------------------
    def _total(self, key: str) -> int:
        return self._gone[key] + sum(getattr(lane, key) for lane in self._unique())

    def _unique(self) -> list[Lane]:
        """Every lane once (several names can share one)."""
        return list({id(lane): lane for lane in list(self.lanes.values())}.values())

    peak_active = property(lambda self: max([self._gone["peak_active"]]
                                            + [lane.peak_active for lane in self._unique()]))
    cancelled = property(lambda self: self._total("cancelled"))
    solo_jobs = property(lambda self: self._total("solo_jobs"))
    handoffs = property(lambda self: self._total("handoffs"))

    @property
    def active(self) -> int:
        """Jobs being decoded now, over all models."""
        return sum(lane.n_active for lane in self._unique())

    @property
    def loaded(self) -> bool:
        """Whether the default model is loaded now."""
        return self.default in self.lanes

    def is_loaded(self, name: str) -> bool:
        return name in self.lanes

    def resident(self) -> list[Resident]:
        """The loaded models (any thread may ask)."""
        lanes, expires = dict(self.lanes), dict(self.expires)
        return [Resident(name, self.sizes.get(name, 0), expires.get(name), self._on_gpu) for name in lanes]

    def held_bytes(self, without: list[Lane] = ()) -> int:
        """Bytes of the weights the loaded models hold, each shared array once (as if `without` were unloaded).
        A shared lane's stacked adapter copies count too. In the scheduler's thread."""
        lanes = [lane for lane in self._unique() if all(lane is not w for w in without)]
        arrays: dict[int, int] = {}
        for n, lane in self.lanes.items():  # a lane's base arrays are in every model it serves
            if any(lane is kept for kept in lanes):
                arrays.update(self._arrays[n])
        return sum(arrays.values()) + sum(lane.multi.nbytes for lane in lanes if lane.multi is not None)

    def names(self) -> list[str]:
        return self.models.names()

    def resolve(self, name: str) -> str:
        """The model a job's name means ("" = the default); UnknownModel lists the servable ones."""
        if not name:
            return self.default
        names = self.models.names()
        if name not in names:
            raise UnknownModel(name, names)
        return name

    # ---- any thread (threaded mode) -----------------------------------------------------------------------
    def start(self, preload: list[str] | None = None, timeout: float | None = None) -> dict[str, ModelCard]:
        """Start the thread and load `preload` (default: the default model); raise what loading raised."""
        self._threaded = True
        self._preload = list(preload if preload is not None else [self.default])
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the models did not load within {timeout} s")
        if self._start_error is not None:
            raise self._start_error
        return dict(self.cards)

    def submit(self, job: Job) -> None:
        """Queue a job. Raises UnknownModel, QueueFull or ShuttingDown (nothing was queued then)."""
        job.model = self.resolve(job.model)
        if not self._threaded:
            self._queue(job)
            return
        if self._stopping or not self._thread.is_alive():
            raise ShuttingDown("the scheduler is shutting down")
        if sum(map(len, self._queued.values())) + self._inbox.qsize() >= self.config.max_pending:
            raise QueueFull(f"too many queued requests (limit {self.config.max_pending}); retry later")
        self._inbox.put(("job", job))

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        if self._threaded:
            self._inbox.put(("wake",))

    def control(self, op: str, name: str = "", keep_alive_s: float | None = None) -> concurrent.futures.Future:
        """'load' (the result is the load time in seconds; it may wait for memory like a job) or 'unload' model
        `name`, in the scheduler's thread. Inline, a load that waits completes in a later `pump`."""
        name = self.resolve(name)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if not self._threaded:
            self._control(op, name, keep_alive_s, fut)
            return fut
        if self._stopping or not self._thread.is_alive():
            raise ShuttingDown("the scheduler is shutting down")
        self._inbox.put(("control", op, name, keep_alive_s, fut))
        return fut

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._threaded:
            self._inbox.put(("stop",))
            if self._thread.is_alive():
                self._thread.join(timeout)
        else:
            self._shutdown()

    def run(self, jobs: list[Job], timeout: float | None = None) -> list[Finished | Failed]:
        """Submit `jobs` together (they batch) and wait for each one's end event, in order: the simplest way for a
        Python caller (evals, distillation) to generate many answers. Jobs keep their own `post` too."""
        ends: dict[int, Finished | Failed] = {}
        done = threading.Event()

        def watch(job: Job):
            post = job.post

            def on_event(ev: Event) -> None:
                post(ev)
                if isinstance(ev, (Finished, Failed)):
                    ends[id(job)] = ev
                    if len(ends) == len(jobs):
                        done.set()
            return on_event

        for job in jobs:
            job.post, job.sink = watch(job), None
        for job in jobs:
            self.submit(job)
        if self._threaded:
            if jobs and not done.wait(timeout):
                for job in jobs:
                    self.cancel(job)
                raise TimeoutError(f"{len(jobs) - len(ends)} of {len(jobs)} jobs did not finish within {timeout} s")
        else:
            while len(ends) < len(jobs):
                self.pump()
        return [ends[id(job)] for job in jobs]

    # ---- inline mode --------------------------------------------------------------------------------------
    def pump(self) -> None:
        """One round in the caller's thread (inline mode). An interruption settles running jobs, then propagates."""
        try:
            self._iterate(block=False)
        except BaseException:
            for lane in self._unique():
                lane.interrupted()
            self._flush()
            raise
        self._flush()

    def lane(self, name: str = "") -> Lane:
        """The loaded lane of model `name` (loading it); for callers that run in the scheduler's thread."""
        name = self.resolve(name)
        if self._ensure_loaded(name) is None:
            raise RuntimeError(f"the model {name!r} does not fit the memory budget while "
                               f"{', '.join(lane.name for lane in self._held_back)} run; retry when they are done")
        return self.lanes[name]

    # ---- the scheduler's thread -----------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            for name in self._preload:
                self._ensure_loaded(name)  # nothing runs yet: it never waits
        except BaseException as exc:  # noqa: BLE001 — handed to start()'s caller, who reports it
            self._start_error = exc
            mx.clear_streams()  # before start() returns: its caller may exit at once, and MLX aborts a live stream
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping:
                try:
                    self._iterate(block=True)
                    self._maybe_flush()
                except Exception as exc:  # noqa: BLE001 — a bug must not leave every waiting client hanging
                    log.exception("the scheduler hit an unexpected error")
                    self._fail_all(500, f"internal error in the scheduler ({type(exc).__name__}: {exc})")
                    self._flush()
                    for lane in self._unique():
                        if lane.bg is not None:
                            lane.new_batch()
        finally:
            self._shutdown()
            mx.clear_streams()  # MLX needs this at the end of a thread that used it, or exit may abort

    def _shutdown(self) -> None:
        self._fail_all(503, "the server is shutting down")
        self._flush()
        for name in list(self.lanes):
            self._unload(name)

    def _iterate(self, block: bool) -> None:
        lanes = self._unique()
        if self._threaded:
            busy = any(lane.busy for lane in lanes) or any(self._queued.values()) or bool(self._load_waits)
            self._take_inbox(block=block and not busy)
            lanes = self._unique()  # a control message may have loaded or unloaded a model
        for lane in lanes:
            lane.reap_cancelled()
        if any(self._queued.values()) or self._load_waits or any(lane.pending for lane in lanes):  # skip when idle
            self._admit()
            lanes = self._unique()  # admitting may have loaded a model
        lanes = [lane for lane in lanes if lane.n_active]
        if lanes:  # one step per model with work, starting from a different one each round
            self._round += 1
            k = self._round % len(lanes)
            for lane in lanes[k:] + lanes[:k]:
                lane.step()
        else:
            self._maybe_unload()

    def _take_inbox(self, block: bool) -> None:
        timeout = None
        if block:
            due = [t for t in self.expires.values() if t is not None]
            if due:
                timeout = min(3600.0, max(0.0, min(due) - time.monotonic()))
        try:
            item = self._inbox.get(timeout=timeout) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "job":
            self._queue(item[1])
        elif kind == "stop":
            self._stopping = True
        elif kind == "control":
            self._control(*item[1:])

    def _queue(self, job: Job) -> None:
        self._queued.setdefault(job.model, deque()).append(job)

    def _control(self, op: str, name: str, keep_alive: float | None, fut: concurrent.futures.Future) -> None:
        if op == "load":  # admitted like a job: within the budget, behind a model that waits for memory
            self._load_waits.setdefault(name, []).append((keep_alive, fut, time.perf_counter()))
            self._admit()
            return
        try:
            if name in self.lanes and (self.lanes[name].n_active or self.lanes[name].pending
                                         or self._queued.get(name)):
                self.expires[name] = time.monotonic()  # unload once the running jobs are done
            else:
                self._unload(name)
            _settle(fut, 0.0)
        except Exception as exc:  # noqa: BLE001 — reported to the waiting caller
            _settle(fut, error=exc)

    def _set_expiry(self, name: str, keep_alive_s: float | None) -> None:
        ka = self.config.keep_alive_s if keep_alive_s is None else keep_alive_s
        self.expires[name] = None if ka < 0 else time.monotonic() + ka

    def _touch(self, job: Job) -> None:
        self._set_expiry(job.model, job.keep_alive_s)
        self._use(job.model)

    def _use(self, name: str) -> None:
        if name in self.lanes:
            self._tick += 1
            self._used[name] = self._tick

    def _maybe_unload(self) -> None:
        now = time.monotonic()
        for name in list(self.lanes):
            t, lane = self.expires.get(name), self.lanes.get(name)
            if lane is not None and t is not None and now >= t and not self._queued.get(name) and not lane.pending:
                self._unload(name)

    def _ensure_loaded(self, name: str) -> float | None:
        """Load `name` after making room for it within the memory budget: the load time in seconds (0.0 if it
        was loaded), or None when it must wait for busy models to drain (then they take no new jobs)."""
        if name in self.lanes:
            return 0.0
        if not self._make_room(name):
            return None
        t0 = time.perf_counter()
        loaded = self.models.get(name)
        try:
            self._serve(name, loaded)
        except BaseException:
            self.models.release(name)  # the source must not keep a model that no lane serves
            raise
        self._loaded[name] = loaded
        self._arrays[name] = weight_arrays(loaded.model)
        self.sizes[name] = sum(self._arrays[name].values())
        self._set_expiry(name, None)
        self._use(name)
        self._trim_to_budget(name)
        return time.perf_counter() - t0

    def _serve(self, name: str, loaded: LoadedModel) -> None:
        """Give `name` a lane: its own, or its base's shared one."""
        if name not in self.cards:
            self.cards[name] = describe(loaded, name)
        base_of = getattr(self.models, "base_model", None) if self.config.share_adapters else None
        if base_of is None:
            self.lanes[name] = Lane(name, loaded, self.config.lane_config(), self._post, self._touch)
        else:
            key = str(Path(loaded.path).resolve())
            lane = self._groups.get(key)
            if lane is None:
                base = base_of(loaded)
                lane = Lane(base.name, base, self.config.lane_config(), self._post, self._touch, multi=True)
                self._groups[key] = lane
            try:
                lane.add_model(name, loaded)
            except AdapterError as exc:  # e.g. an embedding adapter: served on its own, batched per adapter
                log.warning("%s cannot share its base's batch (%s); it gets a batch of its own", name, exc)
                if not self._names_of(lane):  # made for it alone: it must not hold the base
                    del self._groups[key]
                    lane.close()
                lane = Lane(name, loaded, self.config.lane_config(), self._post, self._touch)
            self.lanes[name] = lane

    def _parts(self, lanes: list[Lane]) -> set[str]:
        """The weight directories (bases, adapters) the models of `lanes` run on."""
        parts = set()
        for n, m in self._loaded.items():
            if any(self.lanes[n] is lane for lane in lanes):
                parts.add(str(Path(m.path).resolve()))
                if m.adapter_path is not None:
                    parts.add(str(Path(m.adapter_path).resolve()))
        return parts

    def _by_age(self, keep: str) -> list[Lane]:
        """Lanes that may unload to make room for `keep` (not those on its base), least recently used first."""
        lanes = [lane for lane in self._unique() if keep not in self._parts([lane])]
        return sorted(lanes, key=lambda lane: max(self._used.get(n, 0) for n in self._names_of(lane)))

    def _names_of(self, lane: Lane) -> list[str]:
        return [n for n, other in self.lanes.items() if other is lane]

    def _idle(self, lane: Lane) -> bool:
        """No job runs or waits in it (jobs held back for the waiter do not count: they wait for it anyway)."""
        if lane.n_active or lane.pending:
            return False
        return any(lane is h for h in self._held_back) or not any(self._queued.get(n) for n in self._names_of(lane))

    def _make_room(self, name: str) -> bool:
        """Unload idle models, least recently used first, until `name` fits the budget; False: it must wait."""
        budget = self.config.memory_budget_bytes
        if budget is None:
            return True
        want = self.models.footprint(name)
        base = next(iter(want))
        held_parts = self._parts(self._unique())
        need = sum(b for part, b in want.items() if part not in held_parts)
        room = plan_room(budget, need, self._by_age(base), self._idle, self.held_bytes)
        if not room.fits:
            self._held_back = room.evict + room.drain
            return False
        self._held_back = []
        for lane in room.evict:
            log.info("unloading %s to make room for %s (memory budget %d MiB)", ", ".join(self._names_of(lane)),
                     name, budget >> 20)
            self._evict(lane)
        if self.held_bytes() + need > budget:
            log.warning("%s (%d MiB) does not fit the memory budget of %d MiB; it is served as the only model",
                        name, need >> 20, budget >> 20)
        return True

    def _trim_to_budget(self, name: str) -> None:
        """After a load, measured: if the estimate fell short, unload more idle models (never a busy one)."""
        budget = self.config.memory_budget_bytes
        if budget is None:
            return
        base = str(Path(self._loaded[name].path).resolve())
        for lane in self._by_age(base):
            if self.held_bytes() <= budget:
                return
            if self._idle(lane):
                self._evict(lane)

    def _unload(self, name: str) -> None:
        """Unload `name`. In a lane shared with other loaded models only its adapter and sessions leave (the base
        stays while any model on it is loaded); otherwise the lane closes. The source lets go of its weights."""
        lane = self.lanes.get(name)
        if lane is None:
            self.expires.pop(name, None)
            return
        if len(self._names_of(lane)) > 1:
            self._forget(name)
            lane.remove_model(name)
            self.models.release(name)
            self._free()
        else:
            self._evict(lane)

    def _evict(self, lane: Lane) -> None:
        """Unload every model of `lane` and close it."""
        names = self._names_of(lane)
        for n in names:
            self._forget(n)
        self._groups = {k: v for k, v in self._groups.items() if v is not lane}
        self._held_back = [h for h in self._held_back if h is not lane]
        lane.fail_all(503, f"the model {', '.join(map(repr, names))} was unloaded")
        for key in ("cancelled", "solo_jobs", "handoffs"):
            self._gone[key] += getattr(lane, key)
        self._gone["peak_active"] = max(self._gone["peak_active"], lane.peak_active)
        lane.close()
        for n in names:
            self.models.release(n)
        self._free()

    def _forget(self, name: str) -> None:
        for d in (self.lanes, self.expires, self._loaded, self._arrays, self.sizes, self._used):
            d.pop(name, None)

    @staticmethod
    def _free() -> None:
        gc.collect()
        mx.clear_cache()

    def _admit(self) -> None:
        loads: dict[str, float] = {}
        for jobs in self._queued.values():  # a cancelled job that never started needs no model
            if any(job.cancelled for job in jobs):
                kept = [job for job in jobs if not job.cancelled]
                jobs.clear()
                jobs.extend(kept)
        for name, waits in list(self._load_waits.items()):  # nor a load whose caller went away
            waits[:] = [w for w in waits if not w[1].cancelled()]
            if not waits:
                del self._load_waits[name]
        if self._waiter is not None and not self._queued.get(self._waiter) and self._waiter not in self._load_waits:
            self._waiter, self._held_back = None, []  # nobody waits for it any more: the drained take work again
        asked = {n: jobs[0].submitted for n, jobs in self._queued.items() if jobs}
        for n, waits in self._load_waits.items():
            asked[n] = min(asked.get(n, waits[0][2]), waits[0][2])
        # the model waiting for memory first, then in the order asked: a later job for a model that must make
        # room for an earlier one is held back, or the earlier one could wait forever
        wanted = sorted(asked, key=lambda n: (n != self._waiter, asked[n]))
        for name in wanted:
            if any(self.lanes.get(name) is h for h in self._held_back):
                continue  # drains: its new jobs wait until the waiting model has loaded
            if name not in self.lanes and self._waiter not in (None, name):
                continue  # models to load wait behind the one that waits for memory, in turn
            if name == self._waiter and not all(self._idle(lane) for lane in self._held_back):
                continue  # the drain is not over: planning again cannot find room (it runs every token)
            try:
                load_s = self._ensure_loaded(name)
            except Exception as exc:  # noqa: BLE001 — a bad or changed model directory; tell every waiter
                log.exception("loading the model %s failed", name)
                self._fail_loading(name, exc)
                continue
            if load_s is None:
                self._waiter = name
                continue
            if self._waiter == name:
                self._waiter, self._held_back = None, []
            loads[name] = load_s
            for keep_alive, fut, _ in self._load_waits.pop(name, []):
                self._set_expiry(name, keep_alive)
                _settle(fut, load_s)
            jobs = self._queued.get(name)
            if jobs:
                self.lanes[name].pending.extend(jobs)
                jobs.clear()
                self._use(name)
        for lane in self._unique():
            if lane.pending:  # the first job admitted after a load reports its time
                lane.admit(max((loads.get(n, 0.0) for n in lane.models()), default=0.0))

    def _fail_loading(self, name: str, exc: Exception) -> None:
        if self._waiter == name:
            self._waiter, self._held_back = None, []
        jobs = self._queued.get(name) or deque()
        while jobs:
            self._post(jobs.popleft(), Failed(503, f"the model {name!r} could not be loaded: {exc}"))
        for _, fut, _ in self._load_waits.pop(name, []):
            _settle(fut, error=exc)

    def _fail_all(self, status: int, message: str) -> None:
        for lane in self._unique():
            lane.fail_all(status, message)
        for jobs in self._queued.values():
            while jobs:
                self._post(jobs.popleft(), Failed(status, message))
        for waits in self._load_waits.values():
            for _, fut, _ in waits:
                _settle(fut, error=ShuttingDown(message) if status == 503 else RuntimeError(message))
        self._load_waits.clear()
        self._waiter, self._held_back = None, []

    def _post(self, job: Job, event: Event) -> None:
        self._outbox.append((job, event))

    def _maybe_flush(self) -> None:
        """Deliver now if anything is urgent (a job's first text, an end, an idle scheduler), else at most every
        FLUSH_S: under load, each wake-up of a caller's event loop then carries a few tokens, not one."""
        if not self._outbox:
            return
        if (time.perf_counter() - self._flushed >= FLUSH_S or not self.active
                or any(not isinstance(ev, Chunk) or not job.delivered for job, ev in self._outbox)):
            self._flush()

    def _flush(self) -> None:
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            for job, _ in outbox:
                job.delivered = True
            deliver(outbox)
        self._flushed = time.perf_counter()


def _settle(fut: concurrent.futures.Future, result=None, error: BaseException | None = None) -> None:
    """Complete a control future, unless its caller cancelled it meanwhile (from another thread)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def default_prefill_step() -> int:
    """Prompt tokens per prefill step. On the CPU a 2048-token step of a 0.6B model takes many seconds, during
    which every other stream waits, so 512; on a GPU 512-token steps cost a long cold prompt several times the
    time to first token (H100, 0.6B bf16: ~1.4 s vs ~0.25 s for ~1.1k tokens), so mlx-lm's 2048."""
    return 2048 if mx.default_device().type == mx.DeviceType.gpu else 512
