"""A generation job as the HTTP side hands it to the worker, and the events the worker sends back.

The HTTP side builds a `Job` (exact prompt ids, sampling, a factory for logits processors that the worker calls
in its own thread, an optional session id) and awaits events on a `JobHandle`: `Chunk`s of released text with
their token ids and logprobs (after a `Scored`, the prompt's own logprobs, if the job asked), then one
`Finished` (the engine's `GenerationResult`) or one `Failed`. The worker posts events thread-safely into the
request's event loop and never blocks on a client; a slow reader only makes its own queue longer.
Not here: scheduling (worker.py) or wire formats (wire_*.py).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tinygpt.runtime.engine import GenerationResult
from tinygpt.runtime.sampling import SamplingParams


@dataclass
class Chunk:
    """Text that became safe to show, and the tokens sampled since the previous chunk."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]]


@dataclass
class Scored:
    """The prompt's logprobs (web/scoring.py), sent before any Chunk of a job that set `prompt_logprobs`."""

    logprobs: list[float | None]
    top_logprobs: list[list[tuple[int, float]] | None]


@dataclass
class Finished:
    result: GenerationResult
    load_s: float = 0.0


@dataclass
class Failed:
    status: int
    message: str


Event = Chunk | Scored | Finished | Failed


@dataclass
class Job:
    """One request to generate. `processors` is called once, in the worker thread, for fresh processors."""

    prompt_ids: list[int]
    params: SamplingParams
    processors: Callable[[], list[Any]] | None = None
    session: str | None = None
    prompt_logprobs: int | None = None  # score the prompt first, with this many alternatives per token
    score_only: bool = False  # generate nothing: finish (length) right after scoring
    keep_alive_s: float | None = None  # None: the server's default
    post: Callable[[Event], None] = lambda event: None
    handle: "JobHandle | None" = None  # set by JobHandle: lets the worker deliver a step's events in one wake-up
    cancelled: bool = False
    delivered: bool = False  # some event already reached the request (the worker may batch later ones)
    submitted: float = field(default_factory=time.perf_counter)


class JobHandle:
    """The HTTP side of a job: events arrive on an asyncio queue of the loop that created the handle."""

    def __init__(self, job: Job):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.job = job
        job.post = self._post
        job.handle = self
        self.done = False

    def _post(self, event: Event) -> None:  # called from the worker thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def next_events(self) -> list[Event]:
        """Wait for at least one event; return it and any others already queued (so slow readers catch up)."""
        events = [await self.queue.get()]
        while not self.queue.empty():
            events.append(self.queue.get_nowait())
        if any(isinstance(e, (Finished, Failed)) for e in events):
            self.done = True
        return events


def coalesce(events: list[Event]) -> list[Event]:
    """Merge runs of Chunks into one (a reader that fell behind sends fewer, larger pieces)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, Chunk) and out and isinstance(out[-1], Chunk):
            last = out[-1]
            out[-1] = Chunk(last.text + ev.text, last.token_ids + ev.token_ids, last.logprobs + ev.logprobs,
                            last.top_logprobs + ev.top_logprobs)
        else:
            out.append(ev)
    return out


def deliver(outbox: list[tuple[Job, Event]]) -> None:
    """Hand events to their requests' event loops: one thread-safe call per loop, not one per event."""
    by_loop: dict[Any, list[tuple[asyncio.Queue, Event]]] = {}
    for job, ev in outbox:
        if job.handle is None:
            job.post(ev)
        else:
            by_loop.setdefault(job.handle.loop, []).append((job.handle.queue, ev))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # that loop is closed: its clients are gone
            for job, _ in outbox:
                if job.handle is not None and job.handle.loop is loop:
                    job.cancelled = True


def _put_all(items: list[tuple[asyncio.Queue, Event]]) -> None:
    for queue, ev in items:
        queue.put_nowait(ev)
