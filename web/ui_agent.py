"""The chat playground's agent: the runtime's own agent loop (runtime/agent.py), generating through the server's
scheduler, recorded by the runtime's own recorder (runtime/recording.py).

The agent loop takes an engine-like model (its tokenizer, chat template and identity) and a policy that samples.
In the server the one MLX owner is the scheduler, so `ServedModel` is a served model's face for the loop (its
card's tokenizer, the provider's LoadedModel for the identity, and server-side KV sessions by id) and
`SchedulerPolicy` samples by submitting the loop's exact prompt ids, grammar processor and session as a scheduler
`Job`, turning its Chunks back into the loop's TokenEvents. No second agent loop, decode loop or recorder here.
`ChatRun` runs one chat session's turns on a worker thread and appends what happens to an `EventLog` (JSON-ready
dicts with a sequence number) that any number of HTTP readers follow from any point: a reloaded page re-attaches
by reading from the start. `VisibleText` holds back a tool call's raw text (from the format's trigger on), so
calls are shown as calls. Not here: HTTP (ui_chat.py), tool worlds (injected by tinygpt serve).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable

import msgspec

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.engine import Generation
from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job, TokenEvent
from tinygpt.runtime.recording import ConversationRecorder
from tinygpt.runtime.transcript import TemplateError
from tinygpt.traces.atraj import Message, ModelCall, ToolCall, ToolResult
from tinygpt.traces.errors import TraceError, TraceWriteError

log = logging.getLogger("tinygpt.serve")


class GenerationFailed(RuntimeError):
    """The scheduler could not run a model call (queue full, shutting down, prompt too long, ...)."""


class ServedModel:
    """A served model as the agent loop sees an engine: tokenizer, chat template, identity, and KV sessions that
    are the scheduler's own (by id), so the conversation's cache stays in the one MLX owner."""

    def __init__(self, card, loaded):
        self.card, self.loaded = card, loaded
        self.tokenizer, self.name = card.tokenizer, card.name

    def render(self, messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True,
               **template_kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **template_kwargs)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def new_session(self) -> str:
        """A fresh server-side session id (unguessable: API clients name sessions too)."""
        return f"ui-{uuid.uuid4().hex}"


class SchedulerPolicy:
    """The agent loop's policy on the server: each model call is one scheduler job."""

    def __init__(self, scheduler, model: str):
        self.scheduler, self.model = scheduler, model

    def stream(self, ids, params, session, processor) -> Generation:
        return Generation(lambda gen: self._events(gen, list(ids), params, session, processor))

    def _events(self, gen: Generation, ids: list[int], params, session, processor):
        events: queue.Queue = queue.Queue()
        job = Job(prompt_ids=ids, params=params, model=self.model, session=session, post=events.put,
                  processors=(lambda: [processor]) if processor is not None else None)
        self.scheduler.submit(job)
        try:
            while True:
                item = events.get()
                if isinstance(item, Chunk):
                    last = len(item.token_ids) - 1
                    for i, (tid, lp) in enumerate(zip(item.token_ids, item.logprobs)):
                        yield TokenEvent(tid, lp, item.text if i == last else "")
                elif isinstance(item, Finished):
                    gen.result = item.result
                    return
                elif isinstance(item, Failed):
                    raise GenerationFailed(item.message)
        finally:
            if gen.result is None:  # stopped early or failed: the scheduler drops the job at its next round
                self.scheduler.cancel(job)


class VisibleText:
    """A step's streamed text with a tool call's raw text held back: from the format's `trigger` on, nothing more
    is shown (the call is shown as a call). A trigger "" (a remote model's calls come apart) holds nothing."""

    def __init__(self, trigger: str):
        self.trigger = trigger
        self.reset()

    def reset(self) -> None:
        self._text, self._shown, self._in_call = "", 0, False

    def add(self, piece: str) -> str:
        """What may be shown now of the step's text after `piece`."""
        if self._in_call:
            return ""
        self._text += piece
        at = self._text.find(self.trigger, self._shown) if self.trigger else -1
        if at >= 0:
            self._in_call = True
            out, self._shown = self._text[self._shown:at], at
            return out
        hold = next((k for k in range(len(self.trigger) - 1, 0, -1) if self._text.endswith(self.trigger[:k])), 0)
        out = self._text[self._shown:len(self._text) - hold]
        self._shown = len(self._text) - hold
        return out

    def finish(self) -> str:
        """The held-back rest of a step that turned out to hold no call."""
        out = "" if self._in_call else self._text[self._shown:]
        self.reset()
        return out


class EventLog:
    """A chat session's events, in order, each a dict with its `seq`; `busy` while a turn runs. Written by the
    turn's thread, followed by HTTP readers on event loops (woken through their loops, never polled)."""

    def __init__(self):
        self.items: list[dict] = []
        self.busy = False
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def append(self, item: dict, *, busy: bool | None = None) -> None:
        with self._lock:
            item["seq"] = len(self.items)
            self.items.append(item)
            if busy is not None:
                self.busy = busy
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that reader's loop is gone
                pass

    def begin(self) -> bool:
        """Mark a turn as running; False if one already is."""
        with self._lock:
            if self.busy:
                return False
            self.busy = True
            return True

    def since(self, after: int) -> tuple[list[dict], bool]:
        """The events after seq `after`, and whether a turn was still running when they were taken."""
        with self._lock:
            return self.items[max(after + 1, 0):], self.busy

    async def wait(self, after: int, timeout: float) -> None:
        """Until an event after `after` exists, no turn runs, or `timeout` seconds pass."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if len(self.items) - 1 > after or not self.busy:
                return
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def event_json(event) -> dict | None:
    """An agent event as the page gets it (None: not shown; tokens arrive as `text`, see ChatRun)."""
    if isinstance(event, Message):
        return {"type": "message", "role": event.role, "content": event.content}
    if isinstance(event, ModelCall):
        return {"type": "call", "content": event.content if event.content is not None else event.text,
                "finish_reason": event.finish_reason, "tool_calls": len(event.tool_calls),
                "tokens": len(event.output_token_ids or ()), "latency_s": round(event.latency_s, 3),
                "model": event.model}
    if isinstance(event, ToolCall):
        return {"type": "tool_call", "id": event.id, "name": event.name, "arguments": event.arguments}
    if isinstance(event, ToolResult):
        return {"type": "tool_result", "call_id": event.call_id, "name": event.name, "content": event.content,
                "is_error": event.is_error, "truncated": event.truncated}
    if isinstance(event, ev.Error):
        return {"type": "error", "message": event.message}
    if isinstance(event, ev.TurnEnd):
        return {"type": "turn_end", "reason": event.reason, "steps": event.steps}
    return None


class ChatRun:
    """One chat session's conversation: its agent, its episode recorder and its event log. `start(text)` runs a
    turn on a worker thread; `end(status)` finishes the episode (the conversation is over)."""

    def __init__(self, agent, engine, recorder: ConversationRecorder, log: EventLog,
                 episode_url: Callable[[Any], str | None]):
        self.agent, self.engine, self.recorder, self.episode_url = agent, engine, recorder, episode_url
        self.log = log
        self.used = time.monotonic()
        self.recording = True
        self._thread: threading.Thread | None = None

    def start(self, text: str) -> None:
        """Run one user turn in the background (the caller has `log.begin()`-ed it and logged the message)."""
        self.used = time.monotonic()
        self._thread = threading.Thread(target=self._turn, args=(text,), name="tinygpt-ui-chat", daemon=True)
        self._thread.start()

    def _turn(self, text: str) -> None:
        trigger = "" if self.agent.grammar is None else self.agent.grammar.format.trigger
        visible = VisibleText(trigger)
        try:
            events = self.agent.run(text)
            stream = self.recorder.record(events) if self.recording else events
            self._follow(stream, events, visible)
        except (GenerationFailed, TemplateError, TraceError, ValueError) as exc:
            self.log.append({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # noqa: BLE001 — a bug: logged, and the page is told instead of left waiting
            log.exception("chat session turn failed")
            self.log.append({"type": "error", "message": f"internal error ({type(exc).__name__}: {exc}); this is a "
                                                          "bug in tinygpt serve, please report it"})
        finally:
            self.used = time.monotonic()
            self.log.append({"type": "idle", "episode": self.episode()}, busy=False)

    def _follow(self, stream, events, visible: VisibleText) -> None:
        try:
            for event in stream:
                if isinstance(event, (ev.Token, ev.TextDelta)):
                    shown = visible.add(event.text)
                    if shown:
                        self.log.append({"type": "text", "text": shown})
                    continue
                if isinstance(event, ModelCall):
                    rest = visible.finish()
                    if rest:
                        self.log.append({"type": "text", "text": rest})
                body = event_json(event)
                if body is not None:
                    self.log.append(body)
        except TraceWriteError as exc:  # the conversation goes on unrecorded, as in `tinygpt agent`
            self.recording = False
            self.log.append({"type": "error", "message": f"recording stopped: {exc}"})
            self._follow(events, events, visible)

    def episode(self) -> str | None:
        """The viewer URL of the conversation's open episode (None before its first turn)."""
        path = self.recorder.path
        return self.episode_url(path) if path is not None else None

    def end(self, status: str) -> str | None:
        """Finish the conversation's episode (status: why it ended); the viewer URL of the finished file."""
        if self._thread is not None:
            self._thread.join(5.0)  # the log says "idle" as the turn's thread's last act: it is ending
            if self._thread.is_alive():
                raise RuntimeError("a turn is still running")
        try:
            path = self.recorder.end(status)
        except (TraceError, TraceWriteError, OSError) as exc:
            log.warning("could not finish a chat episode: %s", exc)
            return None
        return self.episode_url(path) if path is not None else None


def route_json(decision) -> dict:
    """The router's decision as the page shows it."""
    return {"type": "route", **msgspec.to_builtins(decision)}
