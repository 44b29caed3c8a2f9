"""A model's synchronous face for one caller (the CLI, the agent loop): prompts, sessions with persistent KV, and
generation through the one scheduler (scheduler.py), driven inline in the caller's thread.

A call takes the full prompt as token ids. With a `Session`, only the suffix beyond the session's common prefix
is prefilled (divergence trims to the common prefix), in shape-bucketed chunks (prefill.py, on the solo path;
the last new id is `generate_step`'s first step). Without one, the nearest entry of the model's prefix cache
seeds the cache. Decoding, sampling, logprobs, stop strings and the prefix cache are the scheduler's (its lane
for this model); there is no second decode loop here. Every call reports the exact prompt ids consumed, how
many came from cache, the sampled ids with logprobs, the finish reason and timings.
An interrupted call (Ctrl-C, an exception, the consumer closing it) leaves its session consistent: every layer
of the cache is trimmed to the tokens all layers hold and the session's ids say exactly which (`settle`).
Not here: chat/agent logic (agent.py), grammars (grammar.py), batching and scheduling (scheduler.py, lane.py).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator

import mlx.core as mx

from tinygpt.runtime.jobs import Chunk, Failed, Finished, GenerationResult, Job, TokenEvent
from tinygpt.runtime.kv_cache import Session, load_session, save_session, settle_cache
from tinygpt.runtime.models import LoadedModel
from tinygpt.runtime.prefill import prefill
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.scheduler import Scheduler, SchedulerConfig, StaticModels

__all__ = ["Engine", "Generation", "GenerationResult", "TokenEvent"]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]
_DRAIN_ROUNDS = 1 << 16  # bound on rounds to finish a cancelled job (it leaves at the next one)


class Generation:
    """An in-flight call: iterate for `TokenEvent`s; `.result` is set once iteration ends.

    `run(gen)` returns the event iterator; it sets `gen.result` when it finishes."""

    def __init__(self, run: Callable[["Generation"], Iterator[TokenEvent]]):
        self.result: GenerationResult | None = None
        self._events = run(self)

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._events

    def close(self) -> None:
        """Stop early (e.g. on Ctrl-C): the session is settled at once, not whenever the generator is collected."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def finish(self) -> GenerationResult:
        """Consume remaining events and return the result."""
        for _ in self._events:
            pass
        assert self.result is not None
        return self.result


class Engine:
    """One model for one caller: prompts, sessions, and generation through an inline scheduler."""

    def __init__(self, loaded: LoadedModel, prefix_cache_bytes: int = 2 << 30, prefill_step_size: int = 2048,
                 solo_processors: bool = True):
        """`solo_processors` False: a grammar job on an idle lane goes into the batch, not solo (a solo job with a
        logits processor cannot be handed over, so a caller with several calls in flight would wait for it)."""
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prefill_step_size = prefill_step_size
        self.name = loaded.name
        config = SchedulerConfig(prefix_cache_bytes=prefix_cache_bytes, prefill_step=prefill_step_size,
                                 solo_processors=solo_processors)
        self.scheduler = Scheduler(StaticModels({self.name: loaded}), config, default=self.name)
        self._lane = self.scheduler.lane(self.name)
        self.prefix_cache = self._lane.prefix_cache
        self.cache_key = self._lane.cache_key  # prefix-cache key: entries are only reused by the same model

    # ---- prompts -------------------------------------------------------------------------------------
    def render(self, messages: list[dict], tools: list[dict] | None = None,
               add_generation_prompt: bool = True, **template_kwargs: Any) -> str:
        """The chat template applied to `messages` (and `tools`), as text."""
        return self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=add_generation_prompt, tokenize=False,
            **template_kwargs)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token text such as <|im_start|> maps to its single id. No BOS is added."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: list[dict], tools: list[dict] | None = None, **kw: Any) -> list[int]:
        return self.encode(self.render(messages, tools, **kw))

    # ---- sessions --------------------------------------------------------------------------------------
    def new_session(self) -> Session:
        return Session.new(self.model)

    def save_session(self, session: Session, path) -> Any:
        return save_session(session, path, fingerprint=self.loaded.fingerprint,
                            tokenizer_hash=self.loaded.tokenizer_hash, model=self.model)

    def load_session(self, path, how: str = "auto") -> Session:
        """A saved session, read from its file or recomputed from its ids, whichever is cheaper (kv_cache.py)."""
        return load_session(path, fingerprint=self.loaded.fingerprint, tokenizer_hash=self.loaded.tokenizer_hash,
                            model=self.model, prefill_step=self.prefill_step_size, how=how)

    def settle(self, session: Session, ids: list[int]) -> None:
        """Make `session` hold exactly the longest prefix of `ids` that every cache layer holds.

        After an interruption the layers may disagree (one layer fed a token the next had not) or hold more than
        was recorded; trimming all of them to the shortest keeps cache and ids in step. Un-trimmable caches reset."""
        session.cache, session.ids = settle_cache(session.cache, ids, self.model)

    def rewind(self, session: Session, ids: list[int]) -> None:
        """Trim `session` back to its common prefix with `ids` (e.g. after a cancelled turn was dropped)."""
        common = 0
        for a, b in zip(session.ids, ids):
            if a != b:
                break
            common += 1
        self.settle(session, session.ids[:common])

    def _prepare(self, prompt_ids: list[int], session: Session | None) -> tuple[Session, list[int], bool]:
        """The session to run in and the suffix to prefill. Without a session, seed from the prefix cache."""
        self._check_ids(prompt_ids)
        if session is not None:
            return session, session.sync(prompt_ids, self.model), False
        cache, rest = self.prefix_cache.fetch_nearest_cache(self.cache_key, list(prompt_ids))
        if cache is None:
            return self.new_session(), list(prompt_ids), True
        held = list(prompt_ids[: len(prompt_ids) - len(rest)])
        temp = Session(cache=cache, ids=held)
        temp.commit(held)
        return temp, temp.sync(prompt_ids, self.model), True

    def prefill(self, prompt_ids: list[int], session: Session | None = None) -> mx.array:
        """Consume `prompt_ids` (only the uncached suffix) and return the logits for the next token."""
        sess, rest, _ = self._prepare(prompt_ids, session)
        try:
            logits = prefill(self.model, sess.cache, rest, self.prefill_step_size)[0]
        except BaseException:
            self.settle(sess, list(prompt_ids))
            raise
        sess.commit(list(prompt_ids))
        return logits

    # ---- generation ----------------------------------------------------------------------------------
    def stream(self, prompt_ids: list[int], params: SamplingParams = SamplingParams(), *,
               session: Session | None = None, logits_processors: list[LogitsProcessor] | None = None,
               ) -> Generation:
        """Start generating from `prompt_ids`. Iterate the returned Generation for tokens."""
        params.check()
        prompt_ids = list(prompt_ids)
        self._check_ids(prompt_ids)
        procs = list(logits_processors) if logits_processors else None
        events: deque = deque()
        job = Job(prompt_ids=prompt_ids, params=params, model=self.name, session=session,
                  processors=(lambda: procs) if procs else None, post=events.append)
        return Generation(lambda gen: self._run(gen, job, events))

    def generate(self, prompt_ids: list[int], params: SamplingParams = SamplingParams(), **kw: Any
                 ) -> GenerationResult:
        return self.stream(prompt_ids, params, **kw).finish()

    def _check_ids(self, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise ValueError("prompt is empty: give at least one token")
        vocab = self.loaded.vocab_size
        if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
            raise ValueError(f"prompt has token ids outside [0, {vocab})")

    def _run(self, gen: Generation, job: Job, events: deque) -> Iterator[TokenEvent]:
        """The job's events as tokens, pumping the scheduler while none is ready. Stopped early (closed, Ctrl-C),
        the job is cancelled and finished at once, so its session is settled before this returns."""
        self.scheduler.submit(job)  # on first iteration, as a generator would start
        try:
            while True:
                while not events:
                    self.scheduler.pump()
                ev = events.popleft()
                if isinstance(ev, Chunk):
                    last = len(ev.token_ids) - 1
                    for i, (t, lp, top) in enumerate(zip(ev.token_ids, ev.logprobs, ev.top_logprobs)):
                        yield TokenEvent(t, lp, ev.text if i == last else "", top)
                elif isinstance(ev, Finished):
                    gen.result = ev.result
                    return
                elif isinstance(ev, Failed):
                    raise (ValueError if ev.status == 400 else RuntimeError)(ev.message)
        finally:
            if gen.result is None:
                self.scheduler.cancel(job)
                self._drain(gen, events)

    def _drain(self, gen: Generation, events: deque) -> None:
        for _ in range(_DRAIN_ROUNDS):
            while events:
                ev = events.popleft()
                if isinstance(ev, Finished):
                    gen.result = ev.result
                    return
                if isinstance(ev, Failed):
                    return
            self.scheduler.pump()
