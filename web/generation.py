"""What both API surfaces share between a decoded request and the scheduler: sampling parameters with the
server's limits applied, logit-bias ids, submitting a job, and waiting for its
events while watching for the client to go away (a gone client cancels its job at once).

Not here: wire formats or the shape of answers (openai_api.py, ollama_api.py).
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import AsyncIterator

from starlette.requests import Request

from tinygpt.runtime.jobs import Chunk, Failed, Finished, GenerationResult, Job, Scored
from tinygpt.runtime.model_card import ModelCard
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.scheduler import QueueFull, ShuttingDown, UnknownModel
from tinygpt.web.config import ServerState
from tinygpt.web.errors import ApiError
from tinygpt.web.jobs import JobHandle, coalesce

DISCONNECT_POLL_S = 0.5
_TOKEN_ID = re.compile(r"[0-9]+")


def sampling(state: ServerState, card: ModelCard, prompt_len: int, *, max_tokens: int | None, temperature: float,
             top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0, seed: int | None = None,
             stop: str | list[str] | None = None, top_logprobs: int = 0) -> SamplingParams:
    """SamplingParams for a request: new tokens capped by the server limit and the context left.
    top_p 0 keeps the nucleus of the most likely token alone (top_k 1), as OpenAI and llama.cpp read it."""
    if top_p <= 0:
        top_p, top_k = 1.0, 1
    room = card.context_length - prompt_len
    limit = min(state.config.max_tokens, room)
    n = limit if max_tokens is None or max_tokens <= 0 else min(max_tokens, limit)
    stops = tuple(s for s in ((stop,) if isinstance(stop, str) else (stop or ())) if s)  # "" stops nothing
    params = SamplingParams(
        temperature=float(temperature), top_p=float(top_p),
        top_k=int(top_k) if 0 < top_k < card.vocab_size else 0, min_p=float(min_p), max_tokens=max(1, n),
        seed=seed, stop_strings=stops, top_logprobs=int(top_logprobs))
    try:
        params.check()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return params


def logit_bias_ids(card: ModelCard, bias: dict[str, float] | None) -> dict[int, float] | None:
    if not bias:
        return None
    out = {}
    for key, value in bias.items():
        if not _TOKEN_ID.fullmatch(key) or not 0 <= int(key) < card.vocab_size:  # ASCII digits only
            raise ApiError(400, f"logit_bias key {key!r} is not a token id of this model "
                                f"(0..{card.vocab_size - 1})", param="logit_bias")
        out[int(key)] = float(value)
    return out


@dataclass
class Outcome:
    """Everything a finished job sent: its chunks and result."""

    chunks: list[Chunk] = field(default_factory=list)
    scored: Scored | None = None
    result: GenerationResult | None = None
    load_s: float = 0.0


def start(state: ServerState, job: Job) -> JobHandle:
    """Submit `job` (its `model` already resolved by `ServerState.card`); scheduler refusals become HTTP errors."""
    handle = JobHandle(job)
    try:
        state.scheduler.submit(job)
    except UnknownModel as exc:
        raise state.unknown(exc.name) from exc
    except QueueFull as exc:
        raise ApiError(429, str(exc), code="rate_limit_exceeded") from exc
    except ShuttingDown as exc:
        raise ApiError(503, "the server is shutting down; retry against a running server") from exc
    return handle


async def events(state: ServerState, handle: JobHandle, request: Request) -> AsyncIterator[list]:
    """Batches of events until Finished/Failed; the job is cancelled if the client leaves or we stop early."""
    loop = asyncio.get_running_loop()
    checked = loop.time()
    try:
        while not handle.done:
            try:
                async with asyncio.timeout(DISCONNECT_POLL_S):
                    batch = await handle.next_events()
            except TimeoutError:
                batch = []
            if loop.time() - checked >= DISCONNECT_POLL_S:  # events may never pause: check on a clock
                checked = loop.time()
                if await request.is_disconnected():
                    return
            if batch:
                yield coalesce(batch)
    finally:
        if not handle.done:
            state.scheduler.cancel(handle.job)


async def collect(state: ServerState, handle: JobHandle, request: Request) -> Outcome:
    """Wait for the whole answer (non-streaming requests); a Failed event becomes its ApiError."""
    out = Outcome()
    async for batch in events(state, handle, request):
        for ev in batch:
            if isinstance(ev, Chunk):
                out.chunks.append(ev)
            elif isinstance(ev, Scored):
                out.scored = ev
            elif isinstance(ev, Finished):
                out.result, out.load_s = ev.result, ev.load_s
            elif isinstance(ev, Failed):
                raise ApiError(ev.status, ev.message)
    if out.result is None:
        raise ApiError(400, "the client disconnected before the answer was ready")
    return out
