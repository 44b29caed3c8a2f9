"""The generation worker: one thread that owns all MLX state and serves every request through a batch.

Jobs arrive in an inbox; the thread loads the model (unloads it when its keep-alive runs out), seeds each
job's cache from its server-side session or the engine's prefix cache, and runs all admitted jobs together in
mlx-lm's `BatchGenerator` (continuous batching; chunked prefill so a long prompt does not stall others). Each
step makes a `Chunk` per job, handed over in one wake-up per event loop at most every FLUSH_S; a cancelled job
leaves at the next step. A job that arrives to an idle worker (and has no grammar) is decoded on its own with
mlx-lm's `generate_step`, which is faster for one sequence, and joins the batch when a second job arrives
(solo.py). A job that asks for its prompt's logprobs gets them from one forward pass at admission (scoring.py).
Uncacheable-in-batch models run one job at a time through `Engine.stream`.
Not here: HTTP, prompts, wire formats.
"""
from __future__ import annotations

import concurrent.futures
import gc
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from tinygpt.runtime.engine import Engine, GenerationResult
from tinygpt.runtime.models import load
from tinygpt.web.errors import ApiError
from tinygpt.web.jobs import Chunk, Failed, Finished, Job, Scored, deliver
from tinygpt.web.logprob_row import HostRow, host_row
from tinygpt.web.model_card import ModelCard, describe
from tinygpt.web.sampler import make_job_sampler
from tinygpt.web.scoring import prompt_logprobs
from tinygpt.web.sessions import SessionStore
from tinygpt.web.solo import SoloRun
from tinygpt.web.textstop import StopScanner

log = logging.getLogger("tinygpt.serve")
FLUSH_S = 0.02  # longest a generated token waits before it is handed to its request
SOLO = -1       # the uid of the job decoded on its own (batch uids are >= 0)


@dataclass
class WorkerConfig:
    max_batch: int = 8              # sequences decoded together
    prefill_batch: int = 8          # prompts prefilled together
    prefill_step: int = 0           # prompt tokens per prefill step (smaller: others wait less); 0: by device
    batching: bool = True           # False: one job at a time through Engine.stream
    solo: bool = True               # a lone job decodes outside the batch until a second one arrives
    max_sessions: int = 16
    keep_alive_s: float = -1.0      # after the last job; < 0: keep loaded forever
    max_pending: int = 256          # queued jobs beyond this get 429
    prefix_cache_bytes: int = 1 << 30
    model_name: str | None = None


@dataclass
class _Active:
    job: Job
    detok: Any
    scanner: StopScanner
    stop_ids: set[int]
    cached: int
    prefill: int
    out: list[int] = field(default_factory=list)
    lps: list[float] = field(default_factory=list)
    tops: list[list[tuple[int, float]]] = field(default_factory=list)
    first: float | None = None
    load_s: float = 0.0
    sampler: Any = None


class Worker:
    """Owns the model; `submit` jobs from any thread; events come back through each job's `post`."""

    def __init__(self, model_path: str, config: WorkerConfig = WorkerConfig()):
        self.model_path = model_path
        self.config = config
        self.prefill_step = config.prefill_step if config.prefill_step > 0 else default_prefill_step()
        self.card: ModelCard | None = None
        self.expires_at: float | None = None  # monotonic time; None: never
        self._inbox: queue.Queue = queue.Queue()
        self._pending: deque[Job] = deque()
        self._outbox: list[tuple[Job, Any]] = []  # events not yet delivered (see _maybe_flush)
        self._flushed = 0.0
        self._active: dict[int, _Active] = {}
        self._sessions = SessionStore(config.max_sessions)
        self._engine: Engine | None = None
        self._bg: BatchGenerator | None = None
        self._solo: tuple[SoloRun, _Active] | None = None
        self._solo_ok = False  # the model's caches can be trimmed, so a solo job can be handed to the batch
        self.peak_active = 0  # most sequences decoded together so far (observability, tests, benchmarks)
        self.cancelled = 0    # jobs stopped because their client went away
        self.solo_jobs = 0    # jobs started outside the batch (solo.py)
        self.handoffs = 0     # of those, moved into the batch when another job arrived
        self._stopping = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tinygpt-generate", daemon=True)

    # ---- any thread ----------------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> ModelCard:
        """Start the thread and load the model; raise `ModelLoadError` (or what loading raised) on failure."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the model at {self.model_path} did not load within {timeout} s")
        if self._start_error is not None:
            raise self._start_error
        assert self.card is not None
        return self.card

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def active(self) -> int:
        """Jobs being decoded now."""
        return len(self._active) + (self._solo is not None)

    def submit(self, job: Job) -> None:
        if self._stopping or not self._thread.is_alive():
            raise ApiError(503, "the server is shutting down; retry against a running server")
        if len(self._pending) + self._inbox.qsize() >= self.config.max_pending:
            raise ApiError(429, f"too many queued requests (limit {self.config.max_pending}); retry later",
                           code="rate_limit_exceeded")
        self._inbox.put(("job", job))

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self._inbox.put(("wake",))

    def control(self, op: str, keep_alive_s: float | None = None) -> concurrent.futures.Future:
        """'load' (returns load seconds) or 'unload' the model, in the worker thread."""
        if self._stopping or not self._thread.is_alive():
            raise ApiError(503, "the server is shutting down; retry against a running server")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._inbox.put(("control", op, keep_alive_s, fut))
        return fut

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._inbox.put(("stop",))
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- worker thread ----------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._ensure_loaded()
        except BaseException as exc:  # noqa: BLE001 — handed to start()'s caller, who reports it
            self._start_error = exc
            mx.clear_streams()  # before start() returns: its caller may exit at once, and MLX aborts a live stream
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping:
                try:
                    self._iterate()
                    self._maybe_flush()
                except Exception as exc:  # noqa: BLE001 — a bug must not leave every waiting client hanging
                    log.exception("the generation worker hit an unexpected error")
                    self._fail_all(500, f"internal error in the generation worker ({type(exc).__name__}: {exc})")
                    self._flush()
                    if self._bg is not None:
                        self._new_batch()
        finally:
            self._fail_all(503, "the server is shutting down")
            self._flush()
            self._unload()
            mx.clear_streams()  # MLX needs this at the end of a thread that used it, or exit may abort

    def _iterate(self) -> None:
        busy = bool(self._active) or self._solo is not None or self._runnable()
        self._take_inbox(block=not busy)
        self._reap_cancelled()
        self._admit()
        if self._solo is not None:
            self._solo_step()
        elif self._active:
            self._step()
        else:
            self._maybe_unload()

    def _take_inbox(self, block: bool) -> None:
        timeout = None
        if block and self.expires_at is not None and self._engine is not None:
            timeout = min(3600.0, max(0.0, self.expires_at - time.monotonic()))
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
            self._pending.append(item[1])
        elif kind == "stop":
            self._stopping = True
        elif kind == "control":
            _, op, keep_alive, fut = item
            try:
                if op == "load":
                    fut.set_result(self._ensure_loaded())
                    self._touch(keep_alive)
                elif self.active or self._pending:
                    self.expires_at = time.monotonic()  # unload once the running jobs are done
                    fut.set_result(0.0)
                else:
                    self._unload()
                    fut.set_result(0.0)
            except Exception as exc:  # noqa: BLE001 — reported to the waiting request
                fut.set_exception(exc)

    def _runnable(self) -> bool:
        return any(not (j.session and self._sessions.is_busy(j.session)) for j in self._pending)

    def _touch(self, keep_alive_s: float | None) -> None:
        ka = self.config.keep_alive_s if keep_alive_s is None else keep_alive_s
        self.expires_at = None if ka < 0 else time.monotonic() + ka

    def _maybe_unload(self) -> None:
        if (self._engine is not None and self.expires_at is not None and not self._pending
                and time.monotonic() >= self.expires_at):
            self._unload()

    def _ensure_loaded(self) -> float:
        if self._engine is not None:
            return 0.0
        t0 = time.perf_counter()
        loaded = load(self.model_path)
        self._engine = Engine(loaded, prefix_cache_bytes=self.config.prefix_cache_bytes,
                              prefill_step_size=self.prefill_step)
        if self.card is None:
            self.card = describe(loaded, self.config.model_name)
        caches = make_prompt_cache(loaded.model)
        batchable = all(hasattr(c, "merge") for c in caches)
        self._solo_ok = self.config.solo and can_trim_prompt_cache(caches)
        if self.config.batching and batchable:
            self._new_batch()
        self._touch(None)
        return time.perf_counter() - t0

    def _new_batch(self) -> None:
        if self._bg is not None:
            self._bg.close()
        self._bg = BatchGenerator(
            self._engine.model, completion_batch_size=self.config.max_batch,
            prefill_batch_size=min(self.config.prefill_batch, self.config.max_batch),
            prefill_step_size=self.prefill_step, stream=mx.default_stream(mx.default_device()))

    def _unload(self) -> None:
        self._solo = None
        if self._bg is not None:
            self._bg.close()
        self._bg = None
        self._engine = None
        self._sessions.clear()
        self.expires_at = None
        gc.collect()
        mx.clear_cache()

    def _fail_active(self, status: int, message: str) -> None:
        solo = [self._solo[1]] if self._solo is not None else []
        self._solo = None
        for a in list(self._active.values()) + solo:
            self._post(a.job, Failed(status, message))
            if a.job.session:
                self._sessions.drop(a.job.session)
        self._active.clear()

    def _fail_all(self, status: int, message: str) -> None:
        self._fail_active(status, message)
        while self._pending:
            self._post(self._pending.popleft(), Failed(status, message))

    def _post(self, job: Job, event) -> None:
        self._outbox.append((job, event))

    def _maybe_flush(self) -> None:
        """Deliver now if anything is urgent (a job's first text, an end, an idle worker), else at most every
        FLUSH_S: under load, each wake-up of a request's event loop then carries a few tokens, not one."""
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

    # ---- admission ------------------------------------------------------------------------------------
    def _admit(self) -> None:
        if not self._pending:
            return
        try:
            load_s = self._ensure_loaded()
        except Exception as exc:  # noqa: BLE001 — the model directory changed under us; tell every waiter
            log.exception("reloading the model failed")
            self._fail_all(503, f"the model could not be loaded: {exc}")
            return
        waiting: deque[Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.cancelled:
                continue
            if job.session and self._sessions.is_busy(job.session):
                waiting.append(job)
            elif (job.prompt_logprobs is not None or job.score_only) and self._score(job, load_s):
                pass  # scored and done (generates nothing)
            elif self._bg is None:
                self._run_single(job, load_s)
                self._pending.extendleft(reversed(waiting))
                return
            elif (self._solo is None and not self._active and self._solo_ok and job.processors is None
                  and not self._runnable()):
                self._start_solo(job, load_s)
            else:
                if self._solo is not None:
                    self._handoff()
                if len(self._active) >= self.config.max_batch:
                    waiting.append(job)
                else:
                    self._insert(job, load_s)
            load_s = 0.0
        self._pending = waiting

    def _score(self, job: Job, load_s: float) -> bool:
        """Send the job its prompt's logprobs (scoring.py); True if that was all it asked for (it is finished)."""
        k, job.prompt_logprobs = job.prompt_logprobs, None  # a job that waits for a batch slot is scored once
        if k is not None:
            try:
                lps, tops = prompt_logprobs(self._engine.model, job.prompt_ids, k)
            except Exception as exc:  # noqa: BLE001 — the model failed: fail this job, keep serving
                log.exception("scoring a prompt failed")
                self._post(job, Failed(500, f"scoring the prompt failed: {type(exc).__name__}: {exc}"))
                return True
            self._post(job, Scored(lps, tops))
        if not job.score_only:
            return False
        now = time.perf_counter()
        self._post(job, Finished(GenerationResult(
            prompt_ids=list(job.prompt_ids), cached_tokens=0, output_ids=[], logprobs=[], top_logprobs=[], text="",
            finish_reason="length", ttft_s=now - job.submitted, decode_s=0.0, prefill_tokens=len(job.prompt_ids)),
            load_s))
        self._touch(job.keep_alive_s)
        return True

    def _seed_cache(self, job: Job) -> tuple[list | None, list[int], list[int]]:
        """(cache, ids still to prefill, ids already in the cache) for a job, from its session or the pool."""
        engine = self._engine
        prompt = job.prompt_ids
        if job.session:
            sess = self._sessions.checkout(job.session, engine.model)
            rest = sess.sync(prompt, engine.model)
            return sess.cache, rest, list(sess.ids)
        cache, rest = engine.prefix_cache.fetch_nearest_cache(engine.cache_key, list(prompt))
        if cache is None:
            return None, list(prompt), []
        if not rest:  # exact hit: re-feed the last prompt token to get its logits
            if not can_trim_prompt_cache(cache):
                return None, list(prompt), []
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, list(rest), list(prompt[: len(prompt) - len(rest)])

    def _prepare(self, job: Job, load_s: float) -> tuple[_Active, list | None, list[int], list[int]]:
        """The job's bookkeeping and its seeded cache: (active, cache, ids to prefill, ids in the cache)."""
        cache, rest, held = self._seed_cache(job)
        p = job.params
        stop_ids = set(p.stop_token_ids if p.stop_token_ids is not None else self._engine.tokenizer.eos_token_ids)
        a = _Active(job=job, detok=self._engine.tokenizer.detokenizer, scanner=StopScanner(p.stop_strings),
                    stop_ids=stop_ids, cached=len(job.prompt_ids) - len(rest), prefill=len(rest), load_s=load_s,
                    sampler=make_job_sampler(p))
        return a, cache, rest, held

    def _insert(self, job: Job, load_s: float) -> None:
        try:
            processors = job.processors() if job.processors else []
        except ValueError as exc:
            self._post(job, Failed(400, str(exc)))
            return
        a, cache, rest, held = self._prepare(job, load_s)
        self._bg_insert(a, cache, rest, held, job.params.max_tokens, processors)

    def _bg_insert(self, a: _Active, cache, rest: list[int], held: list[int], max_tokens: int,
                   processors: list) -> None:
        (uid,) = self._bg.insert(
            [rest], max_tokens=[max_tokens], caches=[cache], all_tokens=[held], samplers=[a.sampler],
            logits_processors=[processors], stop_sequences=[StopSequences([[t] for t in sorted(a.stop_ids)])])
        self._active[uid] = a
        self.peak_active = max(self.peak_active, len(self._active))

    # ---- a lone job, outside the batch (solo.py) --------------------------------------------------------
    def _start_solo(self, job: Job, load_s: float) -> None:
        a, cache, rest, held = self._prepare(job, load_s)
        run = SoloRun(self._engine.model, cache, rest, held, job.params.max_tokens, a.sampler, self.prefill_step)
        self._solo = (run, a)
        self.solo_jobs += 1

    def _solo_step(self) -> None:
        run, a = self._solo
        try:
            got = run.advance()
        except Exception as exc:  # noqa: BLE001 — the model failed: fail this job, keep serving
            log.exception("a solo step failed")
            self._fail_active(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        if got is None:
            return
        tok, logprobs = got
        finish = None
        if tok in a.stop_ids:
            finish = "stop"
        elif len(run.out) >= run.max_tokens:
            finish = "length"
        self._on_token(SOLO, a, _SoloResponse(tok, finish), host_row(logprobs))

    def _handoff(self) -> None:
        """A second job is runnable: move the solo job into the batch, where it goes on from where it is."""
        run, a = self._solo
        self._solo = None
        cache, rest, held, left = run.handoff()
        self._bg_insert(a, cache, rest, held, left, [])
        self.handoffs += 1

    # ---- decoding -------------------------------------------------------------------------------------
    def _step(self) -> None:
        try:
            _, responses = self._bg.next()
        except Exception as exc:  # noqa: BLE001 — a processor or the model failed: end the batch, keep serving
            log.exception("a batch step failed")
            self._fail_active(500, f"generation failed: {type(exc).__name__}: {exc}")
            self._new_batch()
            return
        if not responses:
            return
        for r in responses:
            a = self._active.get(r.uid)
            if a is not None:
                self._on_token(r.uid, a, r, host_row(r.logprobs))

    @staticmethod
    def _top(host: HostRow, k: int) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        row = host.full()
        idx = np.argpartition(-row, k - 1)[:k]
        return sorted(zip(idx.tolist(), row[idx].tolist()), key=lambda p: -p[1])

    def _on_token(self, uid: int, a: _Active, r, row: HostRow) -> None:
        now = time.perf_counter()
        a.first = a.first or now
        tok = r.token
        lp = row[tok]
        a.out.append(tok)
        a.lps.append(lp)
        top = self._top(row, a.job.params.top_logprobs)
        a.tops.append(top)
        finish = r.finish_reason
        if finish == "stop" and tok in a.stop_ids:
            a.detok.finalize()
        else:
            a.detok.add_token(tok)
            if finish:
                a.detok.finalize()
        text = a.scanner.push(a.detok.last_segment)
        cache = None
        if a.scanner.stopped and not finish:
            finish = "stop"
            if uid != SOLO:
                cache = self._bg.remove([uid], return_prompt_caches=True).get(uid)
        elif finish and uid != SOLO:
            cache = (r.prompt_cache, r.all_tokens)
        if finish and uid == SOLO:
            cache = self._solo[0].close()
        if finish:
            text += a.scanner.flush()
        self._post(a.job, Chunk(text, [tok], [lp], [top]))
        if finish:
            self._finish(uid, a, finish, cache)

    def _finish(self, uid: int, a: _Active, finish: str, cache) -> None:
        if uid == SOLO:
            self._solo = None
        else:
            del self._active[uid]
        self._store_cache(a.job, cache)
        now = time.perf_counter()
        job = a.job
        first = a.first or now
        result = GenerationResult(
            prompt_ids=list(job.prompt_ids), cached_tokens=a.cached, output_ids=a.out, logprobs=a.lps,
            top_logprobs=a.tops, text=a.scanner.text, finish_reason=finish, ttft_s=first - job.submitted,
            decode_s=now - first, prefill_tokens=a.prefill)
        self._post(job, Finished(result, a.load_s))
        self._touch(job.keep_alive_s)

    def _store_cache(self, job: Job, cache) -> None:
        kv, ids = cache if cache else (None, None)
        if job.session:
            self._sessions.checkin(job.session, kv, ids)
        elif kv is not None and ids:
            self._engine.prefix_cache.insert_cache(self._engine.cache_key, list(ids), kv)

    def _reap_cancelled(self) -> None:
        if self._solo is not None and self._solo[1].job.cancelled:
            run, a = self._solo
            self._solo = None
            self.cancelled += 1
            self._store_cache(a.job, run.close())
            self._touch(a.job.keep_alive_s)
        gone = [uid for uid, a in self._active.items() if a.job.cancelled]
        if not gone:
            return
        caches = self._bg.remove(gone, return_prompt_caches=True)
        self.cancelled += len(gone)
        for uid in gone:
            a = self._active.pop(uid)
            self._store_cache(a.job, caches.get(uid))
            self._touch(a.job.keep_alive_s)

    # ---- one at a time (caches that cannot be batched, or --no-batch) --------------------------------------
    def _run_single(self, job: Job, load_s: float) -> None:
        engine = self._engine
        session = self._sessions.checkout(job.session, engine.model) if job.session else None
        scanner = StopScanner(job.params.stop_strings)
        started = time.perf_counter()
        try:
            processors = job.processors() if job.processors else None
            gen = engine.stream(job.prompt_ids, job.params, session=session, logits_processors=processors)
            events = iter(gen)
            for ev in events:
                self._take_cancels()
                if job.cancelled or self._stopping:
                    self.cancelled += job.cancelled
                    events.close()
                    return
                self._post(job, Chunk(scanner.push(ev.text), [ev.token_id], [ev.logprob], [ev.top_logprobs]))
                self._flush()
        except ValueError as exc:
            self._post(job, Failed(400, str(exc)))
            return
        finally:
            if session is not None:
                self._sessions.checkin(job.session, session.cache, session.ids)
            self._touch(job.keep_alive_s)
        rest = scanner.flush()
        if rest:
            self._post(job, Chunk(rest, [], [], []))
        result = gen.result
        result.ttft_s += started - job.submitted
        self._post(job, Finished(result, load_s))

    def _take_cancels(self) -> None:
        """While one job runs alone, keep reading the inbox so new jobs queue and cancels land."""
        try:
            while True:
                self._handle(self._inbox.get_nowait())
        except queue.Empty:
            pass


def default_prefill_step() -> int:
    """Prompt tokens per prefill step. On the CPU a 2048-token step of a 0.6B model takes many seconds, during
    which every other stream waits, so 512; on a GPU 512-token steps cost a long cold prompt several times the
    time to first token (H100, 0.6B bf16: ~1.4 s vs ~0.25 s for ~1.1k tokens), so mlx-lm's 2048."""
    return 2048 if mx.default_device().type == mx.DeviceType.gpu else 512


@dataclass
class _SoloResponse:
    """What `_on_token` reads of a batch response, for the solo job (its cache comes from SoloRun.close)."""

    token: int
    finish_reason: str | None
