"""A generation job as any caller hands it to the scheduler, and the events the scheduler sends back.

A caller builds a `Job` (the model's name, exact prompt ids, sampling, a factory for logits processors that the
scheduler calls in its own thread, an optional session: a server-side id or a caller-held `Session`) and reads
events: `Chunk`s of released text with their token ids and logprobs (after a `Scored`, the prompt's own
logprobs, if the job asked), then one `Finished` (a `GenerationResult`) or one `Failed`. The scheduler never
blocks on a caller: it posts events through the job's `post`, or, for jobs that share a `sink`, in one call
per sink per hand-over (the server's sink is an event loop: one wake-up per loop, not one per event).
Not here: scheduling (scheduler.py, lane.py), HTTP (web/).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from tinygpt.runtime.sampling import SamplingParams


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


@dataclass
class Chunk:
    """Text that became safe to show, and the tokens sampled since the previous chunk."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]]


@dataclass
class Scored:
    """The prompt's logprobs (scoring.py), sent before any Chunk of a job that set `prompt_logprobs`."""

    logprobs: list[float | None]
    top_logprobs: list[list[tuple[int, float]] | None]


@dataclass
class Finished:
    result: GenerationResult
    load_s: float = 0.0


@dataclass
class Failed:
    """The job could not run. `status` is HTTP-like (400: the request's fault, 404: no such model, 429: too
    many queued, 503: shutting down or the model failed to load, 500: a bug); callers map it to their own."""

    status: int
    message: str


Event = Chunk | Scored | Finished | Failed


class Sink(Protocol):
    def put_many(self, items: list[tuple["Job", Event]]) -> None: ...


@dataclass
class Job:
    """One request to generate. `processors` is called once, in the scheduler thread, for fresh processors.

    `session` is a server-side session id (str) or a caller-held `kv_cache.Session` whose cache and ids the
    scheduler updates in place when the job ends (however it ends)."""

    prompt_ids: list[int]
    params: SamplingParams
    model: str = ""  # "" means the scheduler's default model
    processors: Callable[[], list[Any]] | None = None
    session: Any = None
    prompt_logprobs: int | None = None  # score the prompt first, with this many alternatives per token
    score_only: bool = False  # generate nothing: finish (length) right after scoring
    keep_alive_s: float | None = None  # None: the scheduler's default
    post: Callable[[Event], None] = lambda event: None
    sink: Sink | None = None  # jobs sharing a sink get their events in one call per hand-over
    context: Any = None  # the caller's own (e.g. the HTTP handle); the scheduler never reads it
    cancelled: bool = False
    delivered: bool = False  # some event already reached the caller (the scheduler may batch later ones)
    submitted: float = field(default_factory=time.perf_counter)


def deliver(outbox: list[tuple[Job, Event]]) -> None:
    """Hand events to their callers: one call per sink, `post` for jobs without one."""
    by_sink: dict[int, tuple[Sink, list[tuple[Job, Event]]]] = {}
    for job, ev in outbox:
        if job.sink is None:
            job.post(ev)
        else:
            by_sink.setdefault(id(job.sink), (job.sink, []))[1].append((job, ev))
    for sink, items in by_sink.values():
        sink.put_many(items)
