"""The OpenAI surface: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}].

Bodies are decoded with msgspec (wire_openai.py) from the raw request, so a bad field is a 400 in OpenAI's
error shape. Tools and `response_format` are enforced by the grammar; streamed answers are SSE chunks with
content deltas and tool-call deltas (id, type and name first, then argument fragments), then an optional
usage chunk and `[DONE]`. Prompt logprobs (`echo` + `logprobs` on completions) come from the scheduler
(`Scored`, runtime/scoring.py). The deprecated `functions`/`function_call` are served as tools, answered in
their own form. Extensions: `session` (server-side KV across calls) and `return_token_ids`
(`prompt_token_ids` on the response, `token_ids` on the choice; in a stream, on the finishing chunk).
Each request names its model (any the catalog lists; GET /v1/models); an unknown name is a 404 listing them.
Not here: the scheduler, the Ollama surface, auth/limits (guard.py).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter
import msgspec
from msgspec import UNSET
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tinygpt.runtime.model_card import ModelCard
from tinygpt.runtime import tool_formats
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.runtime.tool_formats.split import CallArgs, CallStart, CallStream, Content
from tinygpt.web import constraints, prompts, routing
from tinygpt.web import wire_openai as w
from tinygpt.web.config import AUTO, ServerState
from tinygpt.web.errors import ApiError, decode, error_body
from tinygpt.web.guard import KEYLESS
from tinygpt.runtime.penalties import penalties
from tinygpt.web.generation import Outcome, collect, events, logit_bias_ids, sampling, start
from tinygpt.runtime.jobs import Chunk, Failed, Finished, Job, Scored
from tinygpt.web.openapi import body_of, responses_of

router = APIRouter()
SSE = "text/event-stream"


def state_of(request: Request) -> ServerState:
    return request.app.state.tg


class ChatPlan:
    """A chat request made concrete: prompt ids, sampling, grammar, and how to read the output.

    The deprecated `functions` / `function_call` map onto tools / tool_choice (one call at most, as that form
    allows), and `legacy` makes the answer carry `function_call` instead of `tool_calls`. The chat template gets
    the tools as sent (`sent`); the grammar and the parser read the fields tinygpt models (`tools`)."""

    def __init__(self, state: ServerState, card: ModelCard, req: w.ChatCompletionRequest,
                 sent: w.SentTools = w.SentTools()):
        self.card = card
        if (req.n or 1) != 1:
            raise ApiError(400, "n > 1 is not supported; send n requests (they are batched)", param="n")
        self.legacy = req.functions is not None or req.function_call is not None
        self.tools, self.choice, parallel = self._tools(req)
        if not self.tools and self.choice != "none":
            param = "function_call" if self.legacy else "tool_choice"
            raise ApiError(400, f"{param} needs {'functions' if self.legacy else 'tools'}; pass them or leave "
                                f"{param} out", param=param)
        self.calls_enabled = bool(self.tools) and self.choice != "none"
        self.format = tool_formats.resolve(state.config.tool_format or None, card.tokenizer)
        messages = prompts.openai_messages(req.messages)
        as_sent = sent.tools if not self.legacy else [{"type": "function", "function": f} for f in sent.functions or []]
        self.prompt_ids = prompts.check_ids(card, prompts.encode(
            card, prompts.render(card, messages, as_sent)), "messages")
        self.grammar = self._grammar(state, req, parallel)
        top = (req.top_logprobs or 0) if req.logprobs else 0
        self.params = sampling(
            state, card, len(self.prompt_ids), max_tokens=req.max_completion_tokens or req.max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p, top_k=req.top_k or 0, min_p=req.min_p or 0.0,
            seed=req.seed, stop=req.stop, top_logprobs=top)
        extra = penalties(presence=req.presence_penalty, frequency=req.frequency_penalty,
                          logit_bias=logit_bias_ids(card, req.logit_bias))
        self.processors = constraints.processor_factory(self.grammar, extra)

    def _tools(self, req: w.ChatCompletionRequest) -> tuple[list[dict], str | dict, bool]:
        """(tools, tool_choice, parallel) from the request's tools or its legacy functions."""
        if not self.legacy:
            tools = [msgspec_to_dict(t) for t in req.tools] if req.tools else []
            choice = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
            parallel = True if req.parallel_tool_calls is None else req.parallel_tool_calls
            return tools, choice if isinstance(choice, str) else msgspec_to_dict(choice), parallel
        if req.tools or req.tool_choice is not None:
            raise ApiError(400, "functions/function_call and tools/tool_choice cannot be mixed; use tools (the "
                                "current form)", param="functions")
        tools = [{"type": "function", "function": msgspec_to_dict(f)} for f in req.functions or []]
        fc = req.function_call if req.function_call is not None else ("auto" if tools else "none")
        choice = fc if isinstance(fc, str) else {"type": "function", "function": {"name": fc.name}}
        return tools, choice, False

    def _grammar(self, state: ServerState, req: w.ChatCompletionRequest, parallel: bool):
        """The tools grammar, the JSON grammar, or (response_format with callable tools under "auto") their
        union: the answer is then either calls or one JSON value that follows the format."""
        fmt = req.response_format
        backend = state.config.grammar_backend
        param = "functions" if self.legacy else "tools"
        json_g = None
        if fmt is not None and fmt.type != "text":
            schema = None
            if fmt.type == "json_schema":
                if fmt.json_schema is None or fmt.json_schema.schema is None:
                    raise ApiError(400, "response_format json_schema needs json_schema.schema",
                                   param="response_format.json_schema")
                schema = fmt.json_schema.schema
            json_g = constraints.json_grammar(self.card.tokenizer, schema, backend)
        if not self.tools:
            return json_g
        if json_g is None:
            return constraints.tools_grammar(self.card.tokenizer, self.tools, self.choice, parallel, backend,
                                             param=param, tool_format=self.format)
        if not self.calls_enabled:
            return json_g
        choice = "required" if self.choice == "auto" else self.choice
        calls = constraints.tools_grammar(self.card.tokenizer, self.tools, choice, parallel, backend, param=param,
                                          tool_format=self.format)
        return calls if self.choice != "auto" else constraints.Union((calls, json_g))


def msgspec_to_dict(value: Any) -> Any:
    return msgspec.to_builtins(value)


# ---- chat ---------------------------------------------------------------------------------------------------
@router.post("/v1/chat/completions", openapi_extra=body_of("ChatCompletionRequest"),
             responses=responses_of("ChatCompletion", stream=SSE, item="ChatCompletionChunk"), response_class=Response)
async def chat_completions(request: Request) -> Response:
    """Chat completion (OpenAI); `stream: true` answers with server-sent events. Model "auto" (with --router)
    routes the request: to a store model, or to an enabled remote/cloud backend (web/routing.py)."""
    body = await request.body()
    req, sent = decode(body, w.ChatCompletionRequest), decode(body, w.SentTools)
    routed = _route_chat(state_of(request), req, sent) if routing.is_auto(req.model) else None
    if routed is not None and routed.policy is not None:
        return await _remote_chat(state_of(request), req, sent, routed)
    state, req, plan, handle, meta, include_usage = await _begin(
        request, req, body, lambda s, card, r, _body: ChatPlan(s, card, r, sent), routed)
    headers = routed.headers if routed else {}
    if req.stream:
        gen = _chat_stream(state, handle, request, plan, req, meta, include_usage)
        return StreamingResponse(gen, media_type=SSE, headers={"Cache-Control": "no-cache", **headers})
    out = await collect(state, handle, request)
    return Response(w.encode(_chat_answer(state, plan, req, out, meta)), media_type="application/json",
                    headers=headers)


def _route_chat(state: ServerState, req: w.ChatCompletionRequest, sent: w.SentTools) -> routing.Routed:
    """The route of a chat request naming model "auto" (a 404 saying how to enable it without --router)."""
    if state.router is None:
        raise state.unknown(req.model)
    tools = sent.tools or [{"type": "function", "function": f} for f in sent.functions or []]
    return routing.route(state, prompts.openai_messages(req.messages), tools)


async def _begin(request: Request, req, body: bytes, plan_of, routed: routing.Routed | None = None) -> tuple:
    """Check a decoded request, plan it off the event loop (`plan_of(state, card, request, raw body)`) and
    start its job on its model (the routed one for model "auto"): (state, request body, plan, job handle,
    response meta, include_usage)."""
    state = state_of(request)
    card = await state.card(routed.model if routed else req.model)
    plan = await run_in_threadpool(plan_of, state, card, req, body)
    job = Job(prompt_ids=plan.prompt_ids, params=plan.params, model=card.name, processors=plan.processors,
              session=req.session,
              prompt_logprobs=getattr(plan, "prompt_logprobs", None), score_only=getattr(plan, "score_only", False))
    handle = start(state, job)
    meta = _Meta(card.name, card.fingerprint, routed)
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    return state, req, plan, handle, meta, include_usage


class _Meta:
    def __init__(self, model: str, fingerprint: str, routed: routing.Routed | None = None):
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = model
        self.fingerprint = "fp_" + fingerprint
        self.routed = routed

    @property
    def extension(self):
        """The body's `tinygpt` field: the route of a routed request, else absent."""
        return self.routed.extension() if self.routed is not None else UNSET


def usage_of(result) -> w.Usage:
    p, c = len(result.prompt_ids), len(result.output_ids)
    return w.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c,
                   prompt_tokens_details=w.PromptTokensDetails(cached_tokens=result.cached_tokens))


def token_logprobs(tokenizer, ids: list[int], lps: list[float], tops: list[list[tuple[int, float]]]
                   ) -> list[w.TokenLogprob]:
    out = []
    for tid, lp, top in zip(ids, lps, tops):
        text = tokenizer.decode([tid])
        alts = [w.TopLogprob(token=(t := tokenizer.decode([i])), logprob=v, bytes=list(t.encode()))
                for i, v in top]
        out.append(w.TokenLogprob(token=text, logprob=lp, bytes=list(text.encode()), top_logprobs=alts))
    return out


def _chat_answer(state: ServerState, plan: ChatPlan, req: w.ChatCompletionRequest, out: Outcome,
                 meta: _Meta) -> w.ChatCompletion:
    r = out.result
    content, finish = r.text, r.finish_reason
    message = w.AssistantMessage(content=content)
    if plan.calls_enabled:
        parsed = parse_tool_calls(r.output_ids, plan.card.tokenizer, plan.tools, tool_format=plan.format,
                                  finish_reason=r.finish_reason)
        if parsed.calls:
            calls = [w.OutFunctionCall(name=c.name, arguments=json.dumps(c.arguments)) for c in parsed.calls]
            if plan.legacy:
                message = w.AssistantMessage(content=parsed.content or None, function_call=calls[0])
            else:
                message = w.AssistantMessage(content=parsed.content or None, tool_calls=[
                    w.OutToolCall(id=c.id, function=f) for c, f in zip(parsed.calls, calls)])
            if r.finish_reason == "stop":
                finish = "function_call" if plan.legacy else "tool_calls"
    logprobs = None
    if req.logprobs:
        logprobs = w.ChoiceLogprobs(content=token_logprobs(plan.card.tokenizer, r.output_ids, r.logprobs,
                                                           r.top_logprobs))
    choice = w.ChatChoice(index=0, message=message, finish_reason=finish, logprobs=logprobs,
                          token_ids=list(r.output_ids) if req.return_token_ids else UNSET)
    return w.ChatCompletion(id=meta.id, created=meta.created, model=meta.model, system_fingerprint=meta.fingerprint,
                            choices=[choice], usage=usage_of(r),
                            prompt_token_ids=list(r.prompt_ids) if req.return_token_ids else UNSET,
                            tinygpt=meta.extension)


def sse(obj: Any) -> bytes:
    return b"data: " + w.encode(obj) + b"\n\n"


def _chunk(meta: _Meta, delta: w.Delta, **kw) -> w.ChatCompletionChunk:
    extra = {k: kw.pop(k) for k in ("usage", "prompt_token_ids", "tinygpt") if k in kw}
    choices = [] if kw.pop("no_choice", False) else [w.ChunkChoice(index=0, delta=delta, **kw)]
    return w.ChatCompletionChunk(id=meta.id, created=meta.created, model=meta.model,
                                 system_fingerprint=meta.fingerprint, choices=choices, **extra)


def _deltas(pieces: list, legacy: bool = False) -> list[w.Delta]:
    """Chat deltas for stream pieces: runs of content merged; each call start, then its argument text
    (as `function_call` deltas for legacy `functions` callers)."""
    out: list[w.Delta] = []
    for p in pieces:
        if isinstance(p, Content):
            if out and isinstance(out[-1].content, str):
                out[-1] = w.Delta(content=out[-1].content + p.text)
            else:
                out.append(w.Delta(content=p.text))
        elif legacy and isinstance(p, (CallStart, CallArgs)):
            fn = w.DeltaFunction(name=p.name, arguments="") if isinstance(p, CallStart) else \
                w.DeltaFunction(arguments=p.text)
            out.append(w.Delta(function_call=fn))
        elif isinstance(p, CallStart):
            out.append(w.Delta(tool_calls=[w.DeltaToolCall(index=p.index, id=p.id, type="function",
                                                            function=w.DeltaFunction(name=p.name, arguments=""))]))
        elif isinstance(p, CallArgs):
            out.append(w.Delta(tool_calls=[w.DeltaToolCall(index=p.index,
                                                            function=w.DeltaFunction(arguments=p.text))]))
    return out


async def _chat_stream(state: ServerState, handle, request: Request, plan: ChatPlan, req: w.ChatCompletionRequest,
                       meta: _Meta, include_usage: bool) -> AsyncIterator[bytes]:
    splitter = CallStream(plan.format) if plan.calls_enabled else None
    yield sse(_chunk(meta, w.Delta(role="assistant", content=""), tinygpt=meta.extension))
    async for batch in events(state, handle, request):
        for ev in batch:
            if isinstance(ev, Chunk):
                pieces = splitter.feed(ev.text) if splitter else [Content(ev.text)]
                lp = None
                if req.logprobs and ev.token_ids:
                    lp = w.ChoiceLogprobs(content=token_logprobs(plan.card.tokenizer, ev.token_ids, ev.logprobs,
                                                                 ev.top_logprobs))
                for i, d in enumerate(_deltas(pieces, plan.legacy) or ([w.Delta()] if lp else [])):
                    yield sse(_chunk(meta, d, logprobs=lp if i == 0 else None))
            elif isinstance(ev, Failed):
                yield b"data: " + error_body("/v1", ApiError(ev.status, ev.message)) + b"\n\n"
                return
            elif isinstance(ev, Finished):
                for chunk in _stream_end(splitter, ev.result, plan, req, meta, include_usage):
                    yield chunk
    yield b"data: [DONE]\n\n"


def _stream_end(splitter, r, plan: ChatPlan, req: w.ChatCompletionRequest, meta: _Meta,
                include_usage: bool) -> list[bytes]:
    out = []
    if splitter is not None:
        out += [sse(_chunk(meta, d)) for d in _deltas(splitter.finish(r.finish_reason == "stop"), plan.legacy)]
    finish = r.finish_reason
    if splitter is not None and splitter.calls and finish == "stop":
        finish = "function_call" if plan.legacy else "tool_calls"
    ids = dict(token_ids=list(r.output_ids), prompt_token_ids=list(r.prompt_ids)) if req.return_token_ids else {}
    out.append(sse(_chunk(meta, w.Delta(), finish_reason=finish, **ids)))
    if include_usage:
        out.append(sse(_chunk(meta, w.Delta(), no_choice=True, usage=usage_of(r))))
    return out


# ---- a chat routed to a remote or cloud backend --------------------------------------------------------------
REMOTE_REFUSED = (("response_format", lambda r: r.response_format is not None and r.response_format.type != "text"),
                  ("logprobs", lambda r: bool(r.logprobs)), ("return_token_ids", lambda r: r.return_token_ids),
                  ("functions", lambda r: r.functions is not None or r.function_call is not None),
                  ("session", lambda r: r.session is not None), ("n", lambda r: (r.n or 1) != 1))


async def _remote_chat(state: ServerState, req: w.ChatCompletionRequest, sent: w.SentTools,
                       routed: routing.Routed) -> Response:
    """A chat the router sent to a backend: its reply (text and tool calls) in OpenAI's shapes, whole or streamed."""
    d = routed.decision
    for name, asked in REMOTE_REFUSED:
        if asked(req):
            raise ApiError(400, f"{name} is not available when model auto routes to the {d.kind} backend {d.route}; "
                                "send the request without it, or name a local model", param=name)
    messages, tools = prompts.openai_messages(req.messages), sent.tools or []
    choice = msgspec_to_dict(req.tool_choice) if req.tool_choice is not None else ("auto" if tools else "none")
    if not tools and choice != "none":
        raise ApiError(400, "tool_choice needs tools; pass them or leave tool_choice out", param="tool_choice")
    params = routing.remote_params(
        state, max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p, seed=req.seed, stop=req.stop)
    ask = dict(tool_choice=choice, parallel=True if req.parallel_tool_calls is None else req.parallel_tool_calls,
               params=params)
    meta = _Meta(routed.policy.model, f"backend-{d.route}", routed)  # the backend's name: never its URL
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        stream = await routing.RemoteStream(routed, messages, tools, **ask).start()
        meta.routed = stream.routed
        gen = _remote_stream(stream, meta, include_usage)
        return StreamingResponse(gen, media_type=SSE, headers={"Cache-Control": "no-cache", **stream.routed.headers})
    r = await routing.remote_reply(routed, messages, tools, **ask)
    routed = meta.routed = routing.answered(routed, r)
    calls = [w.OutToolCall(id=c.id or _call_id(), function=w.OutFunctionCall(name=c.name, arguments=c.arguments))
             for c in r.calls]
    message = w.AssistantMessage(content=r.content or (None if calls else ""), tool_calls=calls or UNSET)
    body = w.ChatCompletion(id=meta.id, created=meta.created, model=r.model or meta.model,
                            system_fingerprint=meta.fingerprint, usage=_remote_usage(r), tinygpt=meta.extension,
                            choices=[w.ChatChoice(index=0, message=message, finish_reason=_remote_finish(r))])
    return Response(w.encode(body), media_type="application/json", headers=routed.headers)


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _remote_finish(r) -> str:
    return "tool_calls" if r.calls else ("length" if r.finish_reason == "length" else "stop")


def _remote_usage(r) -> w.Usage:
    """The provider's token counts (0 where it sent none)."""
    p = (r.usage.input_tokens if r.usage else None) or 0
    c = (r.usage.output_tokens if r.usage else None) or 0
    return w.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c,
                   prompt_tokens_details=w.PromptTokensDetails(cached_tokens=0))


async def _remote_stream(stream: routing.RemoteStream, meta: _Meta, include_usage: bool) -> AsyncIterator[bytes]:
    yield sse(_chunk(meta, w.Delta(role="assistant", content=""), tinygpt=meta.extension))
    async for text in stream.deltas():
        if text:
            yield sse(_chunk(meta, w.Delta(content=text)))
    if stream.error is not None:
        yield b"data: " + error_body("/v1", stream.error) + b"\n\n"
        return
    r = stream.result
    for i, c in enumerate(r.calls):
        start = w.DeltaToolCall(index=i, id=c.id or _call_id(), type="function",
                                function=w.DeltaFunction(name=c.name, arguments=""))
        yield sse(_chunk(meta, w.Delta(tool_calls=[start])))
        yield sse(_chunk(meta, w.Delta(tool_calls=[w.DeltaToolCall(index=i, function=w.DeltaFunction(
            arguments=c.arguments))])))
    yield sse(_chunk(meta, w.Delta(), finish_reason=_remote_finish(r)))
    if include_usage:
        yield sse(_chunk(meta, w.Delta(), no_choice=True, usage=_remote_usage(r)))
    yield b"data: [DONE]\n\n"


# ---- completions and models ---------------------------------------------------------------------------------
class CompletionPlan:
    """A completion request made concrete. `echo` with `logprobs` scores the prompt too (one forward pass in
    the scheduler; the first prompt token's logprob is null); `max_tokens` 0 generates nothing."""

    def __init__(self, state: ServerState, card: ModelCard, req: w.CompletionRequest):
        self.card = card
        if (req.n or 1) != 1 or (req.best_of or 1) > 1:
            raise ApiError(400, "n > 1 and best_of > 1 are not supported; send n requests (they are batched)",
                           param="n" if (req.n or 1) != 1 else "best_of")
        if req.suffix:
            raise ApiError(400, "suffix (fill-in-the-middle) is not supported", param="suffix")
        p = "<|endoftext|>" if req.prompt is None else req.prompt  # OpenAI's default: a document's start
        if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
            p = p[0]  # one prompt in a list (lm-evaluation-harness sends [[ids]])
        if isinstance(p, str):
            self.prompt_text = p
            ids = prompts.encode(card, p)
        elif p and all(isinstance(x, int) for x in p):
            ids = prompts.check_ids(card, list(p))  # before decoding: ids may be out of range
            self.prompt_text = card.tokenizer.decode(ids) if req.echo else ""
        else:
            raise ApiError(400, "prompt must be a string or a list of token ids (or one of those in a list); "
                                "send several prompts as several requests", param="prompt")
        self.prompt_ids = prompts.check_ids(card, ids)
        self.score_only = req.max_tokens == 0
        self.prompt_logprobs = req.logprobs if req.echo and req.logprobs is not None else None
        self.params = sampling(
            state, card, len(ids),
            max_tokens=1 if self.score_only else (16 if req.max_tokens is None else req.max_tokens),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p, top_k=req.top_k or 0, min_p=req.min_p or 0.0,
            seed=req.seed, stop=req.stop, top_logprobs=req.logprobs or 0)
        self.processors = penalties(presence=req.presence_penalty, frequency=req.frequency_penalty,
                                    logit_bias=logit_bias_ids(card, req.logit_bias))


@router.post("/v1/completions", openapi_extra=body_of("CompletionRequest"),
             responses=responses_of("Completion", stream=SSE), response_class=Response)
async def completions(request: Request) -> Response:
    """Text completion (OpenAI legacy); `prompt` may be token ids; `echo` + `logprobs` gives prompt logprobs."""
    body = await request.body()
    req = decode(body, w.CompletionRequest)
    state, req, plan, handle, meta, include_usage = await _begin(
        request, req, body, lambda s, card, r, _body: CompletionPlan(s, card, r))
    meta.id = "cmpl-" + meta.id.split("-", 1)[1]
    if req.stream:
        gen = _completion_stream(state, handle, request, plan, req, meta, include_usage)
        return StreamingResponse(gen, media_type=SSE, headers={"Cache-Control": "no-cache"})
    out = await collect(state, handle, request)
    r = out.result
    echo = plan.prompt_text if req.echo else ""
    logprobs = None
    if req.logprobs is not None:
        logprobs = _legacy_logprobs(plan.card, r.output_ids, r.logprobs, r.top_logprobs, len(echo))
        if req.echo and out.scored is not None:
            head = _legacy_logprobs(plan.card, r.prompt_ids, out.scored.logprobs, out.scored.top_logprobs)
            logprobs = _joined(head, logprobs)
    choice = w.CompletionChoice(index=0, text=echo + r.text, finish_reason=r.finish_reason, logprobs=logprobs,
                                token_ids=list(r.output_ids) if req.return_token_ids else UNSET)
    body = w.Completion(id=meta.id, created=meta.created, model=meta.model, system_fingerprint=meta.fingerprint,
                        choices=[choice], usage=usage_of(r),
                        prompt_token_ids=list(r.prompt_ids) if req.return_token_ids else UNSET)
    return Response(w.encode(body), media_type="application/json")


def _legacy_logprobs(card: ModelCard, ids, lps, tops, offset: int = 0) -> w.LegacyLogprobs:
    dec = card.tokenizer.decode
    tokens = [dec([i]) for i in ids]
    offsets, pos = [], offset
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return w.LegacyLogprobs(tokens=tokens, token_logprobs=list(lps), text_offset=offsets,
                            top_logprobs=[None if top is None else {dec([t]): v for t, v in top} for top in tops])


def _joined(a: w.LegacyLogprobs, b: w.LegacyLogprobs) -> w.LegacyLogprobs:
    return w.LegacyLogprobs(tokens=a.tokens + b.tokens, token_logprobs=a.token_logprobs + b.token_logprobs,
                            top_logprobs=(a.top_logprobs or []) + (b.top_logprobs or []),
                            text_offset=a.text_offset + b.text_offset)


def _ctext(meta: _Meta, text: str, **kw) -> w.Completion:
    extra = {k: kw.pop(k) for k in ("usage", "prompt_token_ids") if k in kw}
    choices = [] if kw.pop("no_choice", False) else [w.CompletionChoice(index=0, text=text,
                                                                        finish_reason=kw.pop("finish_reason", None),
                                                                        **kw)]
    return w.Completion(id=meta.id, created=meta.created, model=meta.model, system_fingerprint=meta.fingerprint,
                        choices=choices, **extra)


async def _completion_stream(state: ServerState, handle, request: Request, plan: CompletionPlan,
                             req: w.CompletionRequest, meta: _Meta, include_usage: bool) -> AsyncIterator[bytes]:
    pos = 0  # text_offset of the next token
    if req.echo and plan.prompt_text and plan.prompt_logprobs is None:
        yield sse(_ctext(meta, plan.prompt_text))
        pos = len(plan.prompt_text)
    async for batch in events(state, handle, request):
        for ev in batch:
            if isinstance(ev, Scored):
                lp = _legacy_logprobs(plan.card, plan.prompt_ids, ev.logprobs, ev.top_logprobs)
                yield sse(_ctext(meta, plan.prompt_text, logprobs=lp))
                pos = len(plan.prompt_text)
            elif isinstance(ev, Chunk) and (ev.text or req.logprobs is not None):
                lp = _legacy_logprobs(plan.card, ev.token_ids, ev.logprobs, ev.top_logprobs, pos) \
                    if req.logprobs is not None else None
                pos += len(ev.text)
                yield sse(_ctext(meta, ev.text, logprobs=lp))
            elif isinstance(ev, Failed):
                yield b"data: " + error_body("/v1", ApiError(ev.status, ev.message)) + b"\n\n"
                return
            elif isinstance(ev, Finished):
                r = ev.result
                ids = dict(token_ids=list(r.output_ids), prompt_token_ids=list(r.prompt_ids)) \
                    if req.return_token_ids else {}
                yield sse(_ctext(meta, "", finish_reason=r.finish_reason, **ids))
                if include_usage:
                    yield sse(_ctext(meta, "", no_choice=True, usage=usage_of(r)))
    yield b"data: [DONE]\n\n"


def _model_object(state: ServerState, name: str) -> w.ModelObject:
    return w.ModelObject(id=name, created=state.catalog.info(name).created, owned_by="tinygpt")


@router.get("/v1/models", responses=responses_of("ModelList"), response_class=Response)
async def models(request: Request) -> Response:
    """Every model this server can serve: the one it was started with, then the store's bases and specialists.
    Asked without any key on a server that has one (a readiness probe), an empty list or the names, as
    `--models-without-key` says."""
    state = state_of(request)
    if request.scope.get("state", {}).get(KEYLESS) and state.config.models_without_key == "empty":
        return Response(w.encode(w.ModelList(data=[])), media_type="application/json")
    data = await run_in_threadpool(lambda: [_model_object(state, n) for n in state.names()])
    if state.router is not None:
        data.append(_auto_object(state))
    return Response(w.encode(w.ModelList(data=data)), media_type="application/json")


@router.get("/v1/models/{model_id:path}", responses=responses_of("ModelObject"), response_class=Response)
async def model(request: Request, model_id: str) -> Response:
    state = state_of(request)
    if routing.is_auto(model_id) and state.router is not None:
        return Response(w.encode(_auto_object(state)), media_type="application/json")
    name = state.lookup(model_id)
    if name is None:
        raise state.unknown(model_id)
    return Response(w.encode(await run_in_threadpool(_model_object, state, name)), media_type="application/json")


def _auto_object(state: ServerState) -> w.ModelObject:
    """Model "auto": the router (--router) picks a model or backend per request."""
    return w.ModelObject(id=AUTO, created=int(state.started), owned_by="tinygpt-router")
