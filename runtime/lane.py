"""One model's share of the scheduler: its loaded model, prefix cache, sessions, batch and solo job.

A lane admits its model's jobs: it seeds each job's cache from its session (a server-side id or a caller-held
`Session`) or from the prefix cache (keyed by the model's identity, so two models never share an entry), and
runs them together in mlx-lm's `BatchGenerator` (continuous batching). A job that arrives to an idle lane is
decoded on its own with `generate_step` (solo.py), which is faster for one sequence, and joins the batch when a
second job arrives. A job that asks for its prompt's logprobs gets them from one forward pass at admission
(scoring.py). A model whose caches cannot be batched runs its jobs one at a time, solo. Every token goes through
`_on_token`: the one place output is assembled.
A job joining the batch with `stage_min` or more prompt ids to prefill is prefilled outside it first ("staged"):
one prompt at a time at full width, exactly as the solo path does (its chunks, its caches), up to one prefill step
of ids per scheduler step between batch steps; then it joins with its last id. Decoding rows wait at most one
chunk, and prompts of different lengths are never padded to one width (mlx-lm's own prompt processing does that;
it gets only prompts below `stage_min`). Prefix sharing: a job whose session holds nothing starts from the nearest
prefix-cache entry (a staged one when its turn comes), and a prompt the lane prefilled (solo or staged, SHARE_MIN
ids of its own work or more, not on its session's history) is stored there the moment it is done; so episodes
that share a long tool block prefill it once, one at a time or in flight alike (lane_work.py counts it all).
A shared lane (`multi=True`) serves a base and its specialists together: the base model gets
`multi_adapter.MultiAdapter`, every job's cache ends in an `AdapterRows` entry naming its adapter, so one
forward pass serves rows of different adapters (and the base) in one batch; prefix-cache entries and sessions
stay keyed by each model's own identity, so two specialists never share one.
Not here: threads, the inbox, fairness between models, loading (scheduler.py); HTTP (web/).
"""
from __future__ import annotations

import copy
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx
import numpy as np
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from tinygpt.runtime.job_sampler import make_job_sampler
from tinygpt.runtime.jobs import Chunk, Event, Failed, Finished, GenerationResult, Job, Scored
from tinygpt.runtime.kv_cache import Session
from tinygpt.runtime.lane_work import LaneWork
from tinygpt.runtime.logprob_row import HostRow, host_row
from tinygpt.runtime.models import LoadedModel
from tinygpt.runtime.multi_adapter import MultiAdapter
from tinygpt.runtime.prefill import bucketed, make_cache
from tinygpt.runtime.scoring import prompt_logprobs
from tinygpt.runtime.sessions import SessionStore
from tinygpt.runtime.solo import SoloRun
from tinygpt.runtime.stop_text import StopScanner

log = logging.getLogger("tinygpt.scheduler")
SOLO = -1  # the uid of the job decoded on its own (batch uids are >= 0)
SHARE_MIN = 256  # prompt ids a job must have prefilled itself for its prompt to be stored in the prefix cache


@dataclass
class LaneConfig:
    max_batch: int = 8              # sequences decoded together
    prefill_batch: int = 8          # prompts prefilled together
    prefill_step: int = 512         # prompt tokens per prefill step
    batching: bool = True           # False: one job at a time, solo
    solo: bool = True               # a lone job decodes outside the batch until a second one arrives
    solo_processors: bool = False   # jobs with logits processors may run solo (only one caller: no hand-off)
    stage_min: int = 1              # prompt ids (before the last) from which a job is prefilled outside the batch
    max_sessions: int = 16
    prefix_cache_bytes: int = 1 << 30


class _CacheMaker:
    """What mlx-lm's `make_prompt_cache` reads for one model of a shared lane: caches ending in its AdapterRows."""

    def __init__(self, multi: MultiAdapter, adapter: str | None):
        self.multi, self.adapter = multi, adapter

    def make_cache(self) -> list:
        return self.multi.make_cache(self.adapter)


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
    last: float | None = None  # when the latest token was sampled: decode time ends there, not after bookkeeping
    load_s: float = 0.0
    sampler: Any = None
    origin: str = ""  # where the seeded cache came from: "session", "prefix" (cache) or "" (nothing)
    computed: int = 0  # prompt ids this job prefilled itself outside the batch (solo or staged)


@dataclass(eq=False)  # compared by identity (deque.remove)
class _Staged:
    """A job waiting for (or in) its prefill outside the batch; `run` is made when its turn comes."""

    a: _Active
    cache: list
    rest: list[int]
    held: list[int]
    max_tokens: int
    processors: list
    reseed: bool  # may start from the prefix cache when its turn comes (its cache is not its session's history)
    run: SoloRun | None = None

    def state(self):
        """(cache, the ids it holds) once it has started, else None (nothing changed)."""
        return self.run.close() if self.run is not None else None


class Lane:
    """The jobs of one loaded model. Only the scheduler's thread calls it; events go out through `post`."""

    def __init__(self, name: str, loaded: LoadedModel, config: LaneConfig, post: Callable[[Job, Event], None],
                 touch: Callable[[Job], None], *, multi: bool = False):
        self.name = name
        self.loaded = loaded
        self.multi = MultiAdapter.attach(loaded.model) if multi else None
        self.model = self.multi.model if multi else loaded.model  # what the forward passes call
        self.tokenizer = loaded.tokenizer
        self.config = config
        self.keys = {name: loaded.fingerprint}  # prefix-cache key per model: its identity (base, adapter)
        self.adapters: dict[str, str | None] = {name: None}
        self.prefix_cache = LRUPromptCache(max_size=64, max_bytes=config.prefix_cache_bytes)
        self.sessions = SessionStore(config.max_sessions)
        self.pending: deque[Job] = deque()
        self.active: dict[int, _Active] = {}
        self.solo: tuple[SoloRun, _Active] | None = None
        self.staged: deque[_Staged] = deque()  # prompts prefilled outside the batch, oldest first
        self.work = LaneWork()
        self._post, self._touch = post, touch
        self._busy_objects: set[int] = set()  # caller-held Sessions in use (by id)
        self.peak_active = self.cancelled = self.solo_jobs = self.handoffs = 0
        caches = make_prompt_cache(loaded.model)
        self._trimmable = can_trim_prompt_cache(caches)
        self.bg: BatchGenerator | None = None
        if config.batching and all(hasattr(c, "merge") for c in caches):
            self.new_batch()

    # ---- models -------------------------------------------------------------------------------------------
    @property
    def cache_key(self) -> str:
        return self.keys[self.name]

    def add_model(self, name: str, loaded: LoadedModel) -> None:
        """Serve `name` in this shared lane too: the base under another name, or a specialist of the base."""
        if self.multi is None:
            raise RuntimeError(f"lane {self.name!r} serves one model; {name!r} needs a lane of its own")
        if name in self.keys:
            return
        if loaded.adapter_path is not None:
            self.multi.add(name, loaded.adapter_path)
        self.adapters[name] = name if loaded.adapter_path is not None else None
        self.keys[name] = loaded.fingerprint

    def remove_model(self, name: str) -> None:
        """Stop serving `name` in this shared lane (its adapter and sessions go; the base and the others stay)."""
        if name == self.name or name not in self.keys:
            return
        if self.adapters.pop(name) is not None:
            self.multi.remove(name)
        del self.keys[name]
        self.sessions.drop(lambda sid: sid.startswith(f"{name}\x00"))

    def models(self) -> list[str]:
        return list(self.keys)

    def _maker(self, job: Job):
        """What caches of `job`'s model are made from (its adapter's AdapterRows in a shared lane)."""
        return _CacheMaker(self.multi, self.adapters[job.model or self.name]) if self.multi else self.model

    def _key(self, job: Job) -> str:
        return self.keys[job.model or self.name]

    # ---- state ----------------------------------------------------------------------------------------
    @property
    def n_active(self) -> int:
        return len(self.active) + (self.solo is not None) + len(self.staged)

    @property
    def busy(self) -> bool:
        return bool(self.n_active) or self.runnable()

    def runnable(self) -> bool:
        return any(not self._session_busy(j) for j in self.pending)

    def _session_busy(self, job: Job) -> bool:
        s = job.session
        if s is None:
            return False
        return self.sessions.is_busy(self._sid(job)) if isinstance(s, str) else id(s) in self._busy_objects

    @staticmethod
    def _sid(job: Job) -> str:
        """A server-side session's key: the model and the client's id (a shared lane's specialists never share)."""
        return f"{job.model}\x00{job.session}"

    def new_batch(self) -> None:
        if self.bg is not None:
            self.bg.close()
        c = self.config
        self.bg = BatchGenerator(self.model, completion_batch_size=c.max_batch,
                                 prefill_batch_size=min(c.prefill_batch, c.max_batch),
                                 prefill_step_size=c.prefill_step, stream=mx.default_stream(mx.default_device()))

    def close(self) -> None:
        self.solo = None
        if self.bg is not None:
            self.bg.close()
        self.bg = None
        self.sessions.clear()
        if self.multi is not None:  # the base model object is the provider's: give it back its plain layers
            self.multi.detach()

    def fail_active(self, status: int, message: str) -> None:
        if self.solo is not None:  # its cache was changed in place: keep what it consistently holds
            run, a = self.solo
            self.solo = None
            self._post(a.job, Failed(status, message))
            self._release_session(a.job, run.close())
        while self.staged:
            st = self.staged.popleft()
            self._post(st.a.job, Failed(status, message))
            self._release_session(st.a.job, st.state())
        for a in self.active.values():
            self._post(a.job, Failed(status, message))
            self._release_session(a.job, None)
        self.active.clear()

    def fail_all(self, status: int, message: str) -> None:
        self.fail_active(status, message)
        while self.pending:
            self._post(self.pending.popleft(), Failed(status, message))

    # ---- admission ------------------------------------------------------------------------------------
    def admit(self, load_s: float) -> None:
        waiting: deque[Job] = deque()
        while self.pending:
            job = self.pending.popleft()
            if job.cancelled:
                continue
            if self._session_busy(job):
                waiting.append(job)
            elif (job.prompt_logprobs is not None or job.score_only) and self._score(job, load_s):
                pass  # scored and done (generates nothing)
            elif self.solo is not None and not (self.bg is not None and self.solo[0].handoff_ok):
                waiting.append(job)  # the solo job cannot be handed over: wait for it
            elif (self.solo is None and not self.active and not self.staged and self._may_run_solo(job)
                  and (self.bg is None or not self.runnable())):
                self._start_solo(job, load_s)
            elif self.bg is None or len(self.active) + len(self.staged) >= self.config.max_batch:
                waiting.append(job)
            else:
                if self.solo is not None:
                    self._handoff()
                self._insert(job, load_s)
            load_s = 0.0
        self.pending = waiting

    def _may_run_solo(self, job: Job) -> bool:
        if self.bg is None:
            return True  # a model that cannot batch runs every job alone
        return self.config.solo and self._trimmable and (job.processors is None or self.config.solo_processors)

    def _score(self, job: Job, load_s: float) -> bool:
        """Send the job its prompt's logprobs (scoring.py); True if that was all it asked for (it is finished)."""
        k, job.prompt_logprobs = job.prompt_logprobs, None  # a job that waits for a batch slot is scored once
        if k is not None:
            try:
                lps, tops = prompt_logprobs(self.model, job.prompt_ids, k, cache=make_prompt_cache(self._maker(job)))
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
        self._touch(job)
        return True

    def _checkout(self, job: Job) -> Session | None:
        s = job.session
        if s is None:
            return None
        if isinstance(s, str):
            return self.sessions.checkout(self._sid(job), self._maker(job))
        self._busy_objects.add(id(s))
        return s

    def _release_session(self, job: Job, cache) -> None:
        """End the job's hold on its session, storing `cache` ((kv, ids), or None: the state did not change)."""
        kv, ids = cache if cache else (None, None)
        s = job.session
        if isinstance(s, str):
            self.sessions.checkin(self._sid(job), kv, ids)
        elif s is not None:
            self._busy_objects.discard(id(s))
            if kv is not None and ids is not None:
                s.cache, s.ids = kv, list(ids)

    def _seed_cache(self, job: Job, prefix: bool = True) -> tuple[list, list[int], list[int], str]:
        """(cache, ids still to prefill, ids already in the cache, their origin) for a job: its session's history,
        else (`prefix`) the nearest prefix-cache entry ("prefix"; for an empty session only one worth SHARE_MIN
        ids), else nothing ("")."""
        prompt = job.prompt_ids
        sess = self._checkout(job)
        if sess is not None:
            rest = sess.sync(prompt, self._maker(job))
            if sess.ids:  # a cache back from the batch has plain layers: prefill it shape-bucketed as a new one
                sess.cache = bucketed(sess.cache)  # (prefill.py: a GPU reuses its attention kernels turn to turn)
                return sess.cache, rest, list(sess.ids), "session"
        got = self._from_prefix_cache(job) if prefix else None
        if got is not None:
            return (*got, "prefix")
        return (sess.cache if sess is not None else make_prompt_cache(self._maker(job))), list(prompt), [], ""

    def _from_prefix_cache(self, job: Job) -> tuple[list, list[int], list[int]] | None:
        """(a copy of the nearest prefix-cache entry, ids still to prefill, ids in it), or None. A session takes
        only an entry that saves it SHARE_MIN ids; its copy is shape-bucketed like a new session's cache
        (prefill.py), so it prefills as one that started empty."""
        prompt = job.prompt_ids
        cache, rest = self.prefix_cache.fetch_nearest_cache(self._key(job), list(prompt))
        if cache is None or (job.session is not None and len(prompt) - len(rest) < SHARE_MIN):
            return None
        if not rest:  # exact hit: re-feed the last prompt token to get its logits
            if not can_trim_prompt_cache(cache):
                return None
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        if job.session is not None:
            cache = bucketed(cache)
        return cache, list(rest), list(prompt[: len(prompt) - len(rest)])

    def _prepare(self, job: Job, load_s: float, prefix: bool = True) -> tuple[_Active, list, list[int], list[int]]:
        """The job's bookkeeping and its seeded cache: (active, cache, ids to prefill, ids in the cache)."""
        cache, rest, held, origin = self._seed_cache(job, prefix)
        p = job.params
        stop_ids = set(p.stop_token_ids if p.stop_token_ids is not None else self.tokenizer.eos_token_ids)
        a = _Active(job=job, detok=self.tokenizer.detokenizer, scanner=StopScanner(p.stop_strings),
                    stop_ids=stop_ids, cached=len(job.prompt_ids) - len(rest), prefill=len(rest), load_s=load_s,
                    sampler=make_job_sampler(p), origin=origin)
        self._count_seed(a, +1)
        return a, cache, rest, held

    def _count_seed(self, a: _Active, sign: int) -> None:
        if a.origin == "session":
            self.work.session_tokens += sign * a.cached
        elif a.origin == "prefix":
            self.work.prefix_cache_tokens += sign * a.cached

    def _share(self, a: _Active, cache: list, ids: list[int]) -> None:
        """Store a prompt's cache the moment its prefill is done (all ids but the last), for other jobs that start
        the same way: only one that did not come from the job's own session, with SHARE_MIN ids of its own work.
        The entry shares the cache's arrays (MLX arrays are values: the job's later writes copy, never alter)."""
        if a.origin == "session" or a.computed < SHARE_MIN or not ids:
            return
        self.prefix_cache.insert_cache(self._key(a.job), list(ids), copy.deepcopy(cache))
        self.work.prefix_cache_stores += 1

    def _processors(self, job: Job) -> list | None:
        try:
            return job.processors() if job.processors else []
        except ValueError as exc:
            self._post(job, Failed(400, str(exc)))
            return None

    def _insert(self, job: Job, load_s: float) -> None:
        processors = self._processors(job)
        if processors is None:
            return
        # a prompt that will be staged looks in the prefix cache once, when its turn comes
        a, cache, rest, held = self._prepare(job, load_s, prefix=not self._stages(job.prompt_ids))
        self._join(a, cache, rest, held, job.params.max_tokens, processors, reseed=a.origin != "session")

    def _stages(self, rest: list[int]) -> bool:
        """Whether a prompt with `rest` ids to prefill is prefilled outside the batch before it joins."""
        return self.config.stage_min > 0 and len(rest) - 1 >= self.config.stage_min

    def _join(self, a: _Active, cache, rest: list[int], held: list[int], max_tokens: int, processors: list, *,
              reseed: bool) -> None:
        """Into the batch: at once, or after a prefill outside it (staged) when the prompt is long enough."""
        if self._stages(rest):
            if cache is None:
                cache = (make_cache if a.job.session is not None else make_prompt_cache)(self._maker(a.job))
            self.staged.append(_Staged(a, cache, rest, held, max_tokens, processors, reseed))
        else:
            self._bg_insert(a, cache, rest, held, max_tokens, processors)

    def _bg_insert(self, a: _Active, cache, rest: list[int], held: list[int], max_tokens: int,
                   processors: list) -> None:
        if cache is None:  # the batch would make the base's own; a specialist's row needs its AdapterRows
            cache = make_prompt_cache(self._maker(a.job))
        (uid,) = self.bg.insert(
            [rest], max_tokens=[max_tokens], caches=[cache], all_tokens=[held], samplers=[a.sampler],
            logits_processors=[processors], stop_sequences=[StopSequences([[t] for t in sorted(a.stop_ids)])])
        self.active[uid] = a
        self.peak_active = max(self.peak_active, len(self.active))

    # ---- a lone job, outside the batch (solo.py) --------------------------------------------------------
    def _start_solo(self, job: Job, load_s: float) -> None:
        processors = self._processors(job)
        if processors is None:
            return
        a, cache, rest, held = self._prepare(job, load_s)
        run = SoloRun(self.model, cache, rest, held, job.params.max_tokens, a.sampler, self.config.prefill_step,
                      processors)
        run.handoff_ok = self.bg is not None and self._trimmable and not processors
        self.solo = (run, a)
        self.solo_jobs += 1

    def _solo_step(self) -> None:
        run, a = self.solo
        left, t0 = len(run.rest), time.perf_counter()
        got = run.advance()
        seconds = time.perf_counter() - t0
        if got is None:  # a prefill chunk
            a.computed += left - len(run.rest)
            self.work.solo_prefill_tokens += left - len(run.rest)
            self.work.solo_prefill_s += seconds
            if len(run.rest) <= 1:
                self._share(a, run.cache, run.ids)
            return
        self.work.solo_decode_tokens += 1
        self.work.solo_decode_s += seconds
        tok, logprobs, lp = got
        finish = None
        if tok in a.stop_ids:
            finish = "stop"
        elif len(run.out) >= run.max_tokens:
            finish = "length"
        self._on_token(SOLO, a, tok, finish, None, logprobs, lp)

    def _handoff(self) -> None:
        """A second job is runnable: move the solo job into the batch, where it goes on from where it is."""
        run, a = self.solo
        self.solo = None
        cache, rest, held, left = run.handoff()
        self._join(a, cache, rest, held, left, [], reseed=False)  # mid-prefill: it goes on outside the batch
        self.handoffs += 1

    # ---- prompts prefilled outside the batch ----------------------------------------------------------
    def _stage_round(self) -> None:
        """Prefill staged prompts, oldest first, up to one prefill step of ids this round (one chunk of a long
        prompt, or several short ones), each in the solo path's chunks; a prompt that is done joins the batch."""
        done = 0
        while self.staged:
            st = self.staged[0]
            if st.run is None:
                self._start_staged(st)
            run = st.run
            size = min(run.step, len(run.rest) - 1)
            if size > 0 and done and done + size > self.config.prefill_step:
                return
            if size > 0:
                t0 = time.perf_counter()
                try:
                    run.advance()
                except Exception as exc:  # noqa: BLE001 — the model failed: fail this job, keep serving
                    log.exception("a prefill outside the batch failed")
                    self.staged.popleft()
                    self._post(st.a.job, Failed(500, f"generation failed: {type(exc).__name__}: {exc}"))
                    self._release_session(st.a.job, st.state())
                    continue
                self.work.staged_prefill_s += time.perf_counter() - t0
                self.work.staged_prefill_tokens += size
                st.a.computed += size
                done += size
            if len(run.rest) <= 1:
                self.staged.popleft()
                cache, rest, held, left = run.handoff()
                self._share(st.a, cache, held)
                self._bg_insert(st.a, cache, rest, held, left, st.processors)

    def _start_staged(self, st: _Staged) -> None:
        """Its turn: start from the prefix cache if that now holds more of its prompt (a prompt staged before it
        may have stored a shared start meanwhile), then prefill in the solo path's chunks."""
        a = st.a
        if st.reseed:
            got = self._from_prefix_cache(a.job)
            if got is not None and len(got[2]) > len(st.held):
                self._count_seed(a, -1)
                st.cache, st.rest, st.held = got
                a.origin, a.cached, a.prefill = "prefix", len(got[2]), len(got[1])
                self._count_seed(a, +1)
        st.run = SoloRun(self.model, st.cache, st.rest, st.held, st.max_tokens, a.sampler, self.config.prefill_step)

    # ---- decoding -------------------------------------------------------------------------------------
    def step(self) -> None:
        """One step: a prefill chunk or a token for the solo job, or staged prefill then one batch step."""
        if self.solo is not None:
            try:
                self._solo_step()
            except Exception as exc:  # noqa: BLE001 — the model failed: fail this job, keep serving
                log.exception("a solo step failed")
                self.fail_active(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        if self.staged:
            self._stage_round()
        if not self.active:
            return
        try:
            with self.bg.stats() as stats:
                _, responses = self.bg.next()
        except Exception as exc:  # noqa: BLE001 — a processor or the model failed: end the batch, keep serving
            log.exception("a batch step failed")
            self.fail_active(500, f"generation failed: {type(exc).__name__}: {exc}")
            self.new_batch()
            return
        self.work.add_batch(stats)
        for r in responses or ():
            a = self.active.get(r.uid)
            if a is not None:
                self._on_token(r.uid, a, r.token, r.finish_reason, r, r.logprobs)

    @staticmethod
    def _top(host: HostRow, k: int) -> list[tuple[int, float]]:
        row = host.full()
        idx = np.argpartition(-row, k - 1)[:k]
        return sorted(zip(idx.tolist(), row[idx].tolist()), key=lambda p: -p[1])

    def _on_token(self, uid: int, a: _Active, tok: int, finish: str | None, r, logprobs: mx.array,
                  lp: float | None = None) -> None:
        """`lp`: the token's logprob when the step already gave it (solo); else it is read from the row."""
        now = time.perf_counter()
        a.first = a.first or now
        a.last = now
        k = a.job.params.top_logprobs
        row = host_row(logprobs) if lp is None or k > 0 else None  # the whole row only when needed
        if lp is None:
            lp = row[tok]
        a.out.append(tok)
        a.lps.append(lp)
        top = self._top(row, k) if k > 0 else []
        a.tops.append(top)
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
                cache = self.bg.remove([uid], return_prompt_caches=True).get(uid)
        elif finish and uid != SOLO:
            cache = (r.prompt_cache, r.all_tokens)
        if finish and uid == SOLO:
            cache = self.solo[0].close()
        if finish:
            text += a.scanner.flush()
        self._post(a.job, Chunk(text, [tok], [lp], [top]))
        if finish:
            self._finish(uid, a, finish, cache)

    def _finish(self, uid: int, a: _Active, finish: str, cache) -> None:
        if uid == SOLO:
            self.solo = None
        else:
            del self.active[uid]
        self._store_cache(a.job, cache)
        self._post(a.job, Finished(self._result(a, finish), a.load_s))
        self._touch(a.job)

    def _result(self, a: _Active, finish: str) -> GenerationResult:
        now = time.perf_counter()
        job, first = a.job, a.first or now
        # decode time spans first to last token (as decode_tps counts it), not the cache bookkeeping after the
        # last one (closing the solo run waits for generate_step's step ahead: one more forward pass)
        return GenerationResult(
            prompt_ids=list(job.prompt_ids), cached_tokens=a.cached, output_ids=list(a.out), logprobs=list(a.lps),
            top_logprobs=list(a.tops), text=a.scanner.text, finish_reason=finish, ttft_s=first - job.submitted,
            decode_s=(a.last or now) - first, prefill_tokens=a.prefill)

    def _store_cache(self, job: Job, cache) -> None:
        if job.session is not None:
            self._release_session(job, cache)
        elif cache and cache[0] is not None and cache[1]:
            self.prefix_cache.insert_cache(self._key(job), list(cache[1]), cache[0])

    def reap_cancelled(self) -> None:
        """Jobs whose caller went away leave now; their caches are kept (session or prefix cache)."""
        if self.solo is not None and self.solo[1].job.cancelled:
            run, a = self.solo
            self.solo = None
            self.cancelled += 1
            self._store_cache(a.job, run.close())
            self._post(a.job, Finished(self._result(a, "cancelled"), a.load_s))
            self._touch(a.job)
        for st in [st for st in self.staged if st.a.job.cancelled]:
            self.staged.remove(st)
            self.cancelled += 1
            self._store_cache(st.a.job, st.state())
            self._post(st.a.job, Finished(self._result(st.a, "cancelled"), st.a.load_s))
            self._touch(st.a.job)
        gone = [uid for uid, a in self.active.items() if a.job.cancelled]
        if not gone:
            return
        caches = self.bg.remove(gone, return_prompt_caches=True)
        self.cancelled += len(gone)
        for uid in gone:
            a = self.active.pop(uid)
            self._store_cache(a.job, caches.get(uid))
            self._post(a.job, Finished(self._result(a, "cancelled"), a.load_s))
            self._touch(a.job)

    def interrupted(self) -> None:
        """The caller's thread was interrupted inside a step (Ctrl-C while the scheduler runs inline): settle
        every running job's cache to what all its layers hold and finish it with what it has so far."""
        if self.solo is not None:
            run, a = self.solo
            self.solo = None
            self._store_cache(a.job, run.close())
            self._post(a.job, Finished(self._result(a, "cancelled"), a.load_s))
        while self.staged:
            st = self.staged.popleft()
            self._store_cache(st.a.job, st.state())
            self._post(st.a.job, Finished(self._result(st.a, "cancelled"), st.a.load_s))
        if self.active:  # the batch may be mid-step: drop it; caller-held sessions start over
            for a in self.active.values():
                s = a.job.session
                if s is not None and not isinstance(s, str):
                    s.reset(self._maker(a.job))
                self._release_session(a.job, None)
                self._post(a.job, Finished(self._result(a, "cancelled"), a.load_s))
            self.active.clear()
            self.new_batch()
