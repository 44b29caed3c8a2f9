"""The HTTP side of a scheduler job: its events arrive on an asyncio queue of the request's event loop.

The scheduler (runtime/scheduler.py) posts events from its own thread; a `LoopSink` per event loop takes all of
a hand-over's events in one thread-safe call (one wake-up per loop, not one per event), and a slow reader only
makes its own queue longer. A loop that has closed means its clients are gone: their jobs are cancelled.
Not here: the job and event types (runtime/jobs.py), wire formats (wire_*.py).
"""
from __future__ import annotations

import asyncio
import weakref

from tinygpt.runtime.jobs import Chunk, Event, Failed, Finished, Job

_SINKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSink]" = weakref.WeakKeyDictionary()


class LoopSink:
    """Delivers events to the queues of one event loop's jobs."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop

    def put_many(self, items: list[tuple[Job, Event]]) -> None:  # called from the scheduler's thread
        try:
            self.loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # that loop is closed: its clients are gone
            for job, _ in items:
                job.cancelled = True


def _put_all(items: list[tuple[Job, Event]]) -> None:
    for job, ev in items:
        handle = job.context
        if handle is not None:
            handle.queue.put_nowait(ev)


class JobHandle:
    """A job and the queue its events arrive on, in the loop that created the handle."""

    def __init__(self, job: Job):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.job = job
        sink = _SINKS.get(self.loop)
        if sink is None:
            sink = _SINKS[self.loop] = LoopSink(self.loop)
        job.sink = sink
        job.context = self  # read by _put_all in the loop's thread
        job.post = self._post
        self.done = False

    def _post(self, event: Event) -> None:  # called from the scheduler's thread
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
