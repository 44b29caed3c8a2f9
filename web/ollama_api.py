"""The Ollama surface, on the same socket: GET / ("Ollama is running"), /api/version, /api/tags, /api/ps,
POST /api/show, /api/chat and /api/generate.

Chat and generate stream NDJSON lines by default (`"stream": false` for one JSON answer); tool calls come as
`message.tool_calls` with arguments as objects on the final `done` line (call text is never streamed as
content); `format` ("json" or a JSON schema) is enforced by the grammar; `keep_alive` sets how long the model
stays loaded after the request, and a request without messages (or prompt) only loads or, with keep_alive 0,
unloads it. An error after the stream has started is sent as an `{"error": ...}` line. Defaults follow
Ollama's (temperature 0.8, top_k 40, top_p 0.9). /api/tags lists every model the server can serve (its own,
then the store's bases and specialists), /api/ps the loaded ones with their bytes in memory, as the scheduler
measured them; each request names one (an unknown name is a 404 that lists them). Not here: the OpenAI
surface, the scheduler.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import AsyncIterator

import msgspec
from msgspec import UNSET
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from tinygpt.runtime.model_card import ModelCard
from tinygpt.runtime import tool_formats
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.runtime.tool_formats.split import CallStream, Content
from tinygpt.web import constraints, prompts, routing
from tinygpt.web import wire_ollama as w
from tinygpt.web.config import AUTO, ServerState, ollama_name
from tinygpt.web.errors import ApiError, decode
from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job
from tinygpt.runtime.penalties import penalties
from tinygpt.web.generation import Outcome, collect, events, sampling, start
from tinygpt.web.openapi import responses_of, body_of

router = APIRouter()
NDJSON = "application/x-ndjson"
OLLAMA_VERSION = "0.12.0"  # the Ollama API version this surface follows
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
MAX_KEEP_ALIVE_S = 100 * 365 * 86400.0
RANDOM_NOTE = "# random weights (tinygpt init-model), never trained: its answers are noise\n"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def state_of(request: Request) -> ServerState:
    return request.app.state.tg


def keep_alive_seconds(value: str | float | None) -> float | None:
    """Ollama's keep_alive: seconds as a number, or a Go duration ('5m', '1h30m'); negative = forever."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value != value:
            raise ApiError(400, "keep_alive is not a number", param="keep_alive")
        return -1.0 if value < 0 or value > MAX_KEEP_ALIVE_S else float(value)  # beyond 100 years: forever
    text = value.strip()
    try:
        return keep_alive_seconds(float(text))
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ApiError(400, f"keep_alive {value!r} is not a duration; use seconds or e.g. '5m', '1h', '-1'",
                       param="keep_alive")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return -1.0 if sign < 0 or seconds > MAX_KEEP_ALIVE_S else seconds


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


# ---- model listing ------------------------------------------------------------------------------------------
@router.get("/", response_class=PlainTextResponse, responses=responses_of(None, ollama=True, media="text/plain"))
async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


@router.head("/", include_in_schema=False)
async def root_head() -> PlainTextResponse:
    return PlainTextResponse("")


@router.get("/api/version", responses=responses_of("VersionResponse", ollama=True), response_class=Response)
async def version() -> Response:
    return _json(w.VersionResponse(version=OLLAMA_VERSION))


def _details(family: str, parameter_size: str, quantization: str) -> w.Details:
    return w.Details(parent_model="", format="safetensors", family=family, families=[family],
                     parameter_size=parameter_size, quantization_level=quantization)


def _card_details(c: ModelCard) -> w.Details:
    return _details(c.family, c.parameter_size, c.quantization)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _entry(s: ServerState, name: str) -> w.ModelEntry:
    """A model as /api/tags lists it: from its card once loaded, else from its files (nothing is loaded)."""
    info = s.catalog.info(name)
    card = s.scheduler.cards.get(name)
    details = _card_details(card) if card else _details(info.family, "", "")
    return w.ModelEntry(name=ollama_name(name), model=ollama_name(name), modified_at=info.modified_iso,
                        size=info.size_bytes, digest=_digest(f"{info.base}|{info.adapter}"), details=details)


@router.get("/api/tags", responses=responses_of("TagsResponse", ollama=True), response_class=Response)
async def tags(request: Request) -> Response:
    s = state_of(request)
    entries = await run_in_threadpool(lambda: [_entry(s, n) for n in s.names()])
    if s.router is not None:  # model "auto": the router picks a model or backend per request
        entries.append(w.ModelEntry(name=ollama_name(AUTO), model=ollama_name(AUTO), modified_at=now_iso(), size=0,
                                    digest=_digest(s.router.id), details=_details("router", "", "")))
    return _json(w.TagsResponse(models=entries))


@router.get("/api/ps", responses=responses_of("PsResponse", ollama=True), response_class=Response)
async def ps(request: Request) -> Response:
    """The loaded models: `size` is the bytes of the weights each runs on in memory (a specialist: its base's and
    its adapter's; the base is in memory once however many specialists share it), `size_vram` the part of that
    in an accelerator's memory (all of it on a GPU, none on the CPU backend); `expires_at` is when its
    keep-alive ends (year 9999: kept until the memory budget needs the room)."""
    s = state_of(request)
    out = []
    for r in s.scheduler.resident():
        card = s.scheduler.cards.get(r.name)
        if card is None:
            continue
        wall = time.time() + (r.expires - time.monotonic()) if r.expires is not None else 253402300799.0  # 9999
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
        info = s.catalog.info(r.name)
        out.append(w.RunningModel(name=ollama_name(r.name), model=ollama_name(r.name), size=r.nbytes,
                                  digest=_digest(f"{info.base}|{info.adapter}"), details=_card_details(card),
                                  expires_at=expires, size_vram=r.nbytes if r.on_gpu else 0,
                                  context_length=card.context_length))
    return _json(w.PsResponse(models=out))


@router.post("/api/show", openapi_extra=body_of("ShowRequest"), responses=responses_of("ShowResponse", ollama=True),
             response_class=Response)
async def show(request: Request) -> Response:
    s = state_of(request)
    req = decode(await request.body(), w.ShowRequest)
    if req.model is None and req.name is None:
        raise ApiError(400, "name the model: send {\"model\": \"<name>\"}", param="model")
    if s.router is not None and routing.is_auto(req.model or req.name):  # listed in /api/tags: shown too
        r = s.router
        return _json(w.ShowResponse(
            modelfile=f"# served by tinygpt serve: the router {r.directory} ({r.id}) picks a model per request\n",
            parameters="", template="", details=_details("router", "", ""),
            model_info={"general.architecture": "router", "tinygpt.router": r.id,
                        "tinygpt.router.domains": list(r.model.domains), "tinygpt.router.generalist":
                        r.registry.generalist}, capabilities=["completion", "tools"], modified_at=now_iso()))
    c = await s.card(req.model or req.name, ollama=True)
    fam = c.family
    info = {"general.architecture": fam, "general.parameter_count": c.parameter_count,
            f"{fam}.context_length": c.context_length,
            f"{fam}.embedding_length": c.config.get("hidden_size"),
            f"{fam}.block_count": c.config.get("num_hidden_layers"),
            f"{fam}.attention.head_count": c.config.get("num_attention_heads"),
            f"{fam}.attention.head_count_kv": c.config.get("num_key_value_heads"),
            "tokenizer.vocab_size": c.vocab_size, "tinygpt.random_init": c.random_init}
    stops = "".join(f'stop "{c.tokenizer.decode([i])}"\n' for i in c.eos_token_ids)
    caps = ["completion"] + (["tools"] if "tools" in c.chat_template else [])
    note = RANDOM_NOTE if c.random_init else ""
    return _json(w.ShowResponse(
        modelfile=f"# served by tinygpt serve\n{note}FROM {c.path}\n"
        + (f"ADAPTER {c.adapter_path}\n" if c.adapter_path else ""), parameters=stops + "temperature 0.8\n"
        "top_k 40\ntop_p 0.9", template=c.chat_template, details=_card_details(c), model_info=info, capabilities=caps,
        modified_at=c.modified_iso))


def _json(value, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json", headers=headers)


# ---- chat and generate --------------------------------------------------------------------------------------
class Plan:
    """An Ollama request made concrete: prompt ids, sampling, grammar, tools."""

    def __init__(self, state: ServerState, card: ModelCard, req: w.ChatRequest | w.GenerateRequest,
                 prompt_ids: list[int], tools: list[dict]):
        self.card = card
        self.tools = tools
        self.format = tool_formats.resolve(state.config.tool_format or None, card.tokenizer)
        self.prompt_ids = prompts.check_ids(card, prompt_ids)
        self.grammar = self._grammar(state, req)
        o = req.options or w.Options()
        self.params = sampling(
            state, card, len(self.prompt_ids), max_tokens=o.num_predict, temperature=_or(o.temperature, 0.8),
            top_p=_or(o.top_p, 0.9), top_k=_or(o.top_k, 40), min_p=_or(o.min_p, 0.0), seed=o.seed, stop=o.stop,
            top_logprobs=req.top_logprobs if req.logprobs else 0)
        extra = penalties(presence=o.presence_penalty, frequency=o.frequency_penalty, repetition=o.repeat_penalty,
                          repetition_context=o.repeat_last_n)
        self.processors = constraints.processor_factory(self.grammar, extra)

    def _grammar(self, state: ServerState, req):
        backend = state.config.grammar_backend
        fmt = req.format
        if fmt in (None, ""):
            return constraints.tools_grammar(self.card.tokenizer, self.tools, "auto", True, backend,
                                             tool_format=self.format) if self.tools else None
        if self.tools:
            raise ApiError(400, "format together with tools is not supported; drop one of them", param="format")
        if isinstance(fmt, str) and fmt != "json":
            raise ApiError(400, f"format must be 'json' or a JSON schema object, got {fmt!r}", param="format")
        return constraints.json_grammar(self.card.tokenizer, fmt if isinstance(fmt, dict) else None, backend,
                                        param="format")


def _or(value, default):
    return default if value is None else value


def chat_plan(state: ServerState, card: ModelCard, req: w.ChatRequest) -> Plan:
    tools = [msgspec.to_builtins(t) for t in req.tools] if req.tools else []
    text = prompts.render(card, prompts.ollama_messages(req.messages), tools)
    return Plan(state, card, req, prompts.encode(card, text), tools)


def generate_plan(state: ServerState, card: ModelCard, req: w.GenerateRequest) -> Plan:
    for name in ("suffix", "template", "images"):
        if getattr(req, name):
            raise ApiError(400, f"{name} is not supported by this server", param=name)
    if req.raw:
        ids = prompts.encode(card, req.prompt)
    else:
        msgs = ([{"role": "system", "content": req.system}] if req.system else []) + [
            {"role": "user", "content": req.prompt}]
        ids = prompts.encode(card, prompts.render(card, msgs, None))
    return Plan(state, card, req, list(req.context or []) + ids, [])


@router.post("/api/chat", openapi_extra=body_of("ChatRequest"),
             responses=responses_of("ChatChunk", stream=NDJSON, ollama=True), response_class=Response)
async def chat(request: Request) -> Response:
    """Chat (Ollama); streams NDJSON unless `"stream": false`."""
    s = state_of(request)
    req = decode(await request.body(), w.ChatRequest)
    keep = keep_alive_seconds(req.keep_alive)
    if not req.messages:
        return await _load_or_unload(s, req.model, keep, chat=True)
    routed = None
    if routing.is_auto(req.model):  # the router picks the model or backend (web/routing.py)
        if s.router is None:
            raise s.unknown(req.model, ollama=True)
        tools = [msgspec.to_builtins(t) for t in req.tools] if req.tools else []
        messages = prompts.ollama_messages(req.messages)
        routed = routing.route(s, messages, tools)
        if routed.policy is not None:
            return await _remote(s, req, routed, routing.ollama_to_openai(messages), tools, chat=True)
    card = await s.card(routed.model if routed else req.model, ollama=True)
    plan = await run_in_threadpool(chat_plan, s, card, req)
    return await _run(s, request, req, plan, keep, chat=True, routed=routed)


@router.post("/api/generate", openapi_extra=body_of("GenerateRequest"),
             responses=responses_of("GenerateChunk", stream=NDJSON, ollama=True), response_class=Response)
async def generate(request: Request) -> Response:
    """Completion of a prompt (Ollama); streams NDJSON unless `"stream": false`."""
    s = state_of(request)
    req = decode(await request.body(), w.GenerateRequest)
    keep = keep_alive_seconds(req.keep_alive)
    if not req.prompt and not req.context:
        return await _load_or_unload(s, req.model, keep, chat=False)
    routed = None
    if routing.is_auto(req.model):  # routed as a chat of the system text and the prompt
        if s.router is None:
            raise s.unknown(req.model, ollama=True)
        if req.raw or req.context:
            raise ApiError(400, "raw and context continue one model's token sequence; with model auto send a "
                                "plain prompt, or name the model", param="raw" if req.raw else "context")
        messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
            {"role": "user", "content": req.prompt}]
        routed = routing.route(s, messages, [])
        if routed.policy is not None:
            return await _remote(s, req, routed, messages, [], chat=False)
    card = await s.card(routed.model if routed else req.model, ollama=True)
    plan = await run_in_threadpool(generate_plan, s, card, req)
    return await _run(s, request, req, plan, keep, chat=False, routed=routed)


async def _load_or_unload(s: ServerState, requested: str, keep: float | None, *, chat: bool) -> Response:
    model = s.lookup(requested)
    if model is None:
        raise s.unknown(requested, ollama=True)
    op = "unload" if keep == 0 else "load"
    if op == "load":
        await s.card(model, ollama=True)
    await asyncio.wrap_future(s.scheduler.control(op, model, keep))
    name = ollama_name(model)
    if chat:
        body = w.ChatChunk(model=name, created_at=now_iso(), message=w.OutMessage(content=""), done=True,
                           done_reason=op)
    else:
        body = w.GenerateChunk(model=name, created_at=now_iso(), response="", done=True, done_reason=op)
    return _json(body)


async def _run(s: ServerState, request: Request, req, plan: Plan, keep: float | None, *, chat: bool,
               routed: routing.Routed | None = None) -> Response:
    job = Job(prompt_ids=plan.prompt_ids, params=plan.params, model=plan.card.name, processors=plan.processors,
              session=req.session, keep_alive_s=keep)
    handle = start(s, job)
    headers = routed.headers if routed else None
    if req.stream:
        return StreamingResponse(_stream(s, handle, request, req, plan, chat, routed), media_type=NDJSON,
                                 headers=headers)
    out = await collect(s, handle, request)
    return _json(_final(s, req, plan, out, chat, whole=True, routed=routed), headers)


async def _stream(s: ServerState, handle, request: Request, req, plan: Plan, chat: bool,
                  routed: routing.Routed | None = None) -> AsyncIterator[bytes]:
    splitter = CallStream(plan.format) if plan.tools else None
    out = Outcome()
    async for batch in events(s, handle, request):
        for ev in batch:
            if isinstance(ev, Chunk):
                pieces = splitter.feed(ev.text) if splitter else [Content(ev.text)]
                text = "".join(p.text for p in pieces if isinstance(p, Content))
                lps = _logprobs(plan.card, ev.token_ids, ev.logprobs, ev.top_logprobs) if req.logprobs else None
                if text or lps:
                    yield _line(_piece(plan.card, text, chat, lps))
            elif isinstance(ev, Failed):
                yield _line(w.OllamaError(error=ev.message))
                return
            elif isinstance(ev, Finished):
                out.result, out.load_s = ev.result, ev.load_s
    if out.result is None:
        return
    if splitter is not None:
        rest = "".join(p.text for p in splitter.finish(out.result.finish_reason == "stop") if isinstance(p, Content))
        if rest:
            yield _line(_piece(plan.card, rest, chat, None))
    yield _line(_final(s, req, plan, out, chat, whole=False, routed=routed))


def _line(value) -> bytes:
    return msgspec.json.encode(value) + b"\n"


def _piece(card: ModelCard, text: str, chat: bool, lps):
    name = card.ollama_name
    lps = UNSET if lps is None else lps
    if chat:
        return w.ChatChunk(model=name, created_at=now_iso(), message=w.OutMessage(content=text), done=False,
                           logprobs=lps)
    return w.GenerateChunk(model=name, created_at=now_iso(), response=text, done=False, logprobs=lps)


def _logprobs(card: ModelCard, ids, lps, tops) -> list[w.Logprob]:
    dec = card.tokenizer.decode
    return [w.Logprob(token=dec([i]), logprob=lp, top_logprobs=[w.OllamaTopLogprob(token=dec([t]), logprob=v)
                                                                for t, v in top])
            for i, lp, top in zip(ids, lps, tops)]


def _final(s: ServerState, req, plan: Plan, out: Outcome, chat: bool, *, whole: bool,
           routed: routing.Routed | None = None):
    """The `done` answer: in a stream, counts and timings only (plus tool calls); else the whole text too; a
    routed request's decision in `tinygpt`."""
    r = out.result
    text, calls = (r.text if whole else ""), UNSET
    if plan.tools:
        parsed = parse_tool_calls(r.output_ids, plan.card.tokenizer, plan.tools, tool_format=plan.format,
                                  finish_reason=r.finish_reason)
        if parsed.calls:
            calls = [w.OllamaOutToolCall(id=c.id, function=w.OutCallFunction(name=c.name, arguments=c.arguments,
                                                                              index=i))
                     for i, c in enumerate(parsed.calls)]
            text = parsed.content if whole else ""
    ns = lambda sec: int(sec * 1e9)  # noqa: E731
    common = dict(
        model=plan.card.ollama_name, created_at=now_iso(), done=True, done_reason=r.finish_reason,
        total_duration=ns(r.ttft_s + r.decode_s), load_duration=ns(out.load_s),
        prompt_eval_count=len(r.prompt_ids), prompt_eval_duration=ns(r.ttft_s), eval_count=len(r.output_ids),
        eval_duration=ns(r.decode_s), tinygpt=routed.extension() if routed else UNSET,
        logprobs=_logprobs(plan.card, r.output_ids, r.logprobs, r.top_logprobs) if req.logprobs and whole else UNSET)
    if req.return_token_ids:
        common.update(prompt_token_ids=list(r.prompt_ids), token_ids=list(r.output_ids),
                      cached_tokens=r.cached_tokens)
    if chat:
        return w.ChatChunk(message=w.OutMessage(content=text, tool_calls=calls), **common)
    return w.GenerateChunk(response=text, context=list(r.prompt_ids) + list(r.output_ids), **common)


# ---- a request routed to a remote or cloud backend (model "auto") ------------------------------------------
def _remote_refused(req) -> str | None:
    asked = {"format": req.format not in (None, ""), "logprobs": req.logprobs, "return_token_ids": req.return_token_ids,
             "session": req.session is not None}
    return next((name for name, on in asked.items() if on), None)


async def _remote(s: ServerState, req, routed: routing.Routed, messages: list[dict], tools: list[dict], *,
                  chat: bool) -> Response:
    """The backend's reply in Ollama's shapes: text lines, then the `done` line with its tool calls."""
    refused = _remote_refused(req)
    if refused:
        raise ApiError(400, f"{refused} is not available when model auto routes to the {routed.decision.kind} "
                            f"backend {routed.decision.route}; send the request without it, or name a model",
                       param=refused)
    o = req.options or w.Options()
    params = routing.remote_params(s, max_tokens=o.num_predict, temperature=_or(o.temperature, 0.8),
                                   top_p=_or(o.top_p, 0.9), seed=o.seed, stop=o.stop)
    ask = dict(tool_choice="auto" if tools else "none", parallel=True, params=params)
    t0 = time.perf_counter()
    if req.stream:
        stream = await routing.RemoteStream(routed, messages, tools, **ask).start()
        return StreamingResponse(_remote_lines(stream, stream.routed, chat, t0), media_type=NDJSON,
                                 headers=stream.routed.headers)
    r = await routing.remote_reply(routed, messages, tools, **ask)
    routed = routing.answered(routed, r)
    return _json(_remote_done(r, routed, chat, r.content, t0), routed.headers)


async def _remote_lines(stream: routing.RemoteStream, routed: routing.Routed, chat: bool, t0: float
                        ) -> AsyncIterator[bytes]:
    name = ollama_name(routed.policy.model)
    async for text in stream.deltas():
        if text:
            yield _line(w.ChatChunk(model=name, created_at=now_iso(), message=w.OutMessage(content=text), done=False)
                        if chat else w.GenerateChunk(model=name, created_at=now_iso(), response=text, done=False))
    try:
        if stream.error is not None:
            raise stream.error
        yield _line(_remote_done(stream.result, routed, chat, "", t0))
    except ApiError as exc:  # the stream has started: the error goes in-band
        yield _line(w.OllamaError(error=exc.message))


def _remote_done(r, routed: routing.Routed, chat: bool, text: str, t0: float):
    calls = [w.OllamaOutToolCall(id=c.id or f"call_{i}", function=w.OutCallFunction(
        name=c.name, arguments=routing.call_arguments(c), index=i)) for i, c in enumerate(r.calls)]
    u = r.usage
    common = dict(model=ollama_name(routed.policy.model), created_at=now_iso(), done=True,
                  done_reason="length" if r.finish_reason == "length" else "stop",
                  total_duration=int((time.perf_counter() - t0) * 1e9),
                  prompt_eval_count=u.input_tokens if u and u.input_tokens is not None else UNSET,
                  eval_count=u.output_tokens if u and u.output_tokens is not None else UNSET,
                  tinygpt=routed.extension())
    if chat:
        return w.ChatChunk(message=w.OutMessage(content=text, tool_calls=calls or UNSET), **common)
    return w.GenerateChunk(response=text, **common)
