"""The generation engine every part of tinygpt shares: one loaded model, sessions with persistent KV, and a
cross-request prefix cache.

A call takes the full prompt as token ids. With a `Session`, only the suffix beyond the session's common prefix
is prefilled (divergence trims to the common prefix), in shape-bucketed chunks (prefill.py). Without one, the nearest entry of mlx-lm's
`LRUPromptCache` (bounded by bytes) seeds the cache. Decoding is mlx-lm's `generate_step` with its samplers and
logits processors (grammar constraints plug in there). Every call reports the exact prompt ids consumed, how
many came from cache, the sampled ids with logprobs, the finish reason and timings.
An interrupted call (Ctrl-C, an exception, the consumer closing it) leaves its session consistent: every layer
of the cache is trimmed to the tokens all layers hold and the session's ids say exactly which (`settle`).
Not here: chat/agent logic (agent.py), grammars (grammar.py), batching across requests (web/).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import LRUPromptCache

from tinygpt.runtime.kv_cache import Session, load_session, save_session
from tinygpt.runtime.models import LoadedModel
from tinygpt.runtime.prefill import prefill
from tinygpt.runtime.sampling import CapturingSampler, SamplingParams

LogitsProcessor = Callable[[mx.array, mx.array], mx.array]


@dataclass
class TokenEvent:
    """One sampled token as it streams out."""

    token_id: int
    logprob: float
    text: str  # printable text completed by this token (may be "")
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class GenerationResult:
    """Everything about one call: exact ids in and out, logprobs, why it stopped, and timings (seconds)."""

    prompt_ids: list[int]
    cached_tokens: int
    output_ids: list[int]
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]]
    text: str
    finish_reason: str  # "stop" (EOS / stop string) | "length"
    ttft_s: float
    decode_s: float
    prefill_tokens: int

    @property
    def decode_tps(self) -> float:
        n = len(self.output_ids) - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0


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
    """One model, shared: sessions, the prefix cache, and generation."""

    def __init__(self, loaded: LoadedModel, prefix_cache_bytes: int = 2 << 30, prefill_step_size: int = 2048):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prefix_cache = LRUPromptCache(max_size=64, max_bytes=prefix_cache_bytes)
        self.prefill_step_size = prefill_step_size
        self.cache_key = loaded.fingerprint  # prefix-cache key: entries are only reused by the same model

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
                            tokenizer_hash=self.loaded.tokenizer_hash)

    def load_session(self, path) -> Session:
        return load_session(path, fingerprint=self.loaded.fingerprint, tokenizer_hash=self.loaded.tokenizer_hash)

    def settle(self, session: Session, ids: list[int]) -> None:
        """Make `session` hold exactly the longest prefix of `ids` that every cache layer holds.

        After an interruption the layers may disagree (one layer fed a token the next had not) or hold more than
        was recorded; trimming all of them to the shortest keeps cache and ids in step. Un-trimmable caches reset."""
        held = min((c.offset for c in session.cache), default=0)
        target = min(held, len(ids))
        if any(c.offset != target for c in session.cache):
            if target == 0 or not all(c.is_trimmable() for c in session.cache):
                session.reset(self.model)
                return
            for c in session.cache:
                c.trim(c.offset - target)
        session.ids = list(ids[:target])

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
        if not prompt_ids:
            raise ValueError("prompt is empty: give at least one token")
        vocab = self.loaded.vocab_size
        if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
            raise ValueError(f"prompt has token ids outside [0, {vocab})")
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
        sess, rest, pooled = self._prepare(prompt_ids, session)
        return Generation(lambda gen: self._run(gen, prompt_ids, sess, rest, pooled, params, logits_processors))

    def generate(self, prompt_ids: list[int], params: SamplingParams = SamplingParams(), **kw: Any
                 ) -> GenerationResult:
        return self.stream(prompt_ids, params, **kw).finish()

    def _run(self, gen: Generation, prompt_ids, sess: Session, rest, pooled: bool, params: SamplingParams,
             processors) -> Iterator[TokenEvent]:
        if params.seed is not None:
            mx.random.seed(params.seed)
        stops = set(params.stop_token_ids if params.stop_token_ids is not None else self.tokenizer.eos_token_ids)
        sampler = CapturingSampler(params)
        detok = self.tokenizer.detokenizer
        out: list[int] = []
        lps: list[float] = []
        tops: list[list[tuple[int, float]]] = []
        finish = "length"
        t0 = time.perf_counter()
        ttft = 0.0
        steps = None
        completed = False
        try:
            # all but the last new id through the shape-bucketed prefill; the last one is generate_step's first
            # step, a one-query step like every decode step after it (see prefill.py)
            prefill(self.model, sess.cache, rest[:-1], self.prefill_step_size)
            steps = generate_step(mx.array(rest[-1:]), self.model, max_tokens=params.max_tokens, sampler=sampler,
                                  logits_processors=processors, prompt_cache=sess.cache)
            for n, (token, _) in enumerate(steps):
                if n == 0:
                    ttft = time.perf_counter() - t0
                lp, top = sampler.pop(n)
                out.append(token)
                lps.append(lp)
                tops.append(top)
                if token in stops:
                    finish = "stop"
                    detok.finalize()
                    yield TokenEvent(token, lp, detok.last_segment, top)
                    break
                detok.add_token(token)
                seg = detok.last_segment
                yield TokenEvent(token, lp, seg, top)
                if params.stop_strings and any(s in detok.text for s in params.stop_strings):
                    finish = "stop"
                    break
            completed = True
        finally:
            if steps is not None:
                steps.close()
            if completed:
                sess.commit(prompt_ids + out)
            else:  # interrupted anywhere (even between two layers): realign every layer to what they all hold
                self.settle(sess, prompt_ids + out)
            if pooled and sess.ids:
                self.prefix_cache.insert_cache(self.cache_key, list(sess.ids), sess.cache)
            text = detok.text
            for s in params.stop_strings:
                if s in text:
                    text = text[: text.index(s)]
            gen.result = GenerationResult(
                prompt_ids=prompt_ids, cached_tokens=len(prompt_ids) - len(rest), output_ids=out,
                logprobs=lps, top_logprobs=tops, text=text, finish_reason=finish, ttft_s=ttft,
                decode_s=time.perf_counter() - t0 - ttft, prefill_tokens=len(rest))
