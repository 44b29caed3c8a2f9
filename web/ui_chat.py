"""The chat playground's JSON API under /ui/api/chat: sessions of the runtime's agent loop, streamed to the page.

A session is created with its settings (model, or "auto" for the router; tool world; tool_choice; sampling;
steps), gets user messages, and streams what happens as NDJSON events from any point (`?after=SEQ`), so a page
reloaded mid-answer re-attaches: the turn runs on the server (ui_agent.ChatRun), not in the page. Each session is
one conversation and one `.atraj` episode in the chat directory (docs/ui.md), open while the chat is, finished by
`/end` ("New chat"), by eviction (more than `ui_max_chats` sessions: the least recently used idle one ends) or when
the server stops. Tool worlds are given by whoever builds the app (`create_app(..., tool_worlds=)`; tinygpt serve
gives the embedded world's: files, a fresh sandbox directory per session, calendar, shop); "none" is always there.
Tools run in the session's own world: an in-memory one, or a directory the server made for that session (removed
when the server stops), never the user's files. Bad input is a 4xx JSON `{"error": ...}`.
Not here: the agent loop (runtime/agent.py), sampling (the scheduler), the page (static/chat.*).
"""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import msgspec
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.recording import ConversationRecorder
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.web import routing
from tinygpt.web.config import AUTO, ServerState
from tinygpt.web.errors import ApiError, decode
from tinygpt.web.ui_agent import ChatRun, EventLog, SchedulerPolicy, ServedModel, route_json
from tinygpt.web.ui_traces import chat_dir, episode_url

router = APIRouter(include_in_schema=False)
TOOL_CHOICES = ("auto", "required", "none")
MAX_STEPS = 50
DEFAULT_MAX_TOKENS = 256
FOLLOW_WAIT_S = 10.0  # a follower checks its client is still there this often
_SID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ToolWorld:
    """A tool set a chat may act in: `make(sandbox)` builds a fresh one for a session (`sandbox`: a new empty
    directory the server made for it when `needs_dir`, else None)."""

    name: str
    description: str
    make: Callable[[Path | None], Any]
    needs_dir: bool = False


class NoTools:
    """The empty tool set: nothing can be called."""

    names: list[str] = []

    def schemas(self) -> list[dict]:
        return []

    def call(self, name: str, arguments=None, *, call_id: str = ""):
        raise KeyError(f"no tool named {name!r}: this chat has no tools")


NONE = ToolWorld("none", "no tools", lambda _sandbox: NoTools())


class ChatSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a new chat session runs with."""

    model: str = ""  # "": the server's default model; "auto": the router picks, at the first message
    tools: str = "none"
    tool_choice: str = "auto"
    temperature: float = 0.7
    max_tokens: int | None = None  # new tokens per model call; None: DEFAULT_MAX_TOKENS within the server's cap
    max_steps: int = 8
    seed: int | None = None
    system: str | None = None


class UserMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: str


class Session:
    """One chat: its settings, tool world, event log and (once its model is known) its run."""

    def __init__(self, sid: str, settings: ChatSettings, world: ToolWorld, toolset, sandbox: Path | None):
        self.id, self.settings, self.world, self.toolset, self.sandbox = sid, settings, world, toolset, sandbox
        self.log = EventLog()
        self.run: ChatRun | None = None
        self.model: str | None = None  # the served model (or backend) answering; None until routed
        self.route: dict | None = None
        self.created = time.time()
        self.used = time.monotonic()
        self.ended = False
        self.episode: str | None = None  # the finished episode's viewer URL, once ended

    def describe(self) -> dict:
        items, busy = self.log.since(10**12)
        return {"id": self.id, "settings": msgspec.to_builtins(self.settings), "model": self.model,
                "route": self.route, "tools": list(self.toolset.names), "busy": busy,
                "last_seq": len(self.log.items) - 1, "created_at": self.created,
                "sandbox": str(self.sandbox) if self.sandbox else None,
                "episode": self.episode if self.ended else (self.run.episode() if self.run else None),
                "ended": self.ended, "url": f"/ui/chat?session={self.id}"}


class ChatStore:
    """The server's chat sessions (most recently used last) and the tool worlds they may use."""

    def __init__(self, state: ServerState, worlds: list[ToolWorld]):
        self.state = state
        self.worlds = {w.name: w for w in [NONE, *worlds]}
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self._sandbox_root: Path | None = None
        self._lock = threading.Lock()

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid) if _SID.fullmatch(sid) else None
        if session is None:
            raise ApiError(404, f"no chat session {sid!r} on this server (it ended, or the server restarted); "
                                "start a new chat")
        self.sessions.move_to_end(sid)
        session.used = time.monotonic()
        return session

    def sandbox(self, sid: str) -> Path:
        """A new empty directory for one session's tools, inside this server's own temporary folder."""
        with self._lock:
            if self._sandbox_root is None:
                self._sandbox_root = Path(tempfile.mkdtemp(prefix="tinygpt-ui-sandbox-"))
        return Path(tempfile.mkdtemp(prefix=f"chat-{sid[:8]}-", dir=self._sandbox_root))

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        idle = [s for s in self.sessions.values() if not s.log.busy and s is not session]
        while len(self.sessions) > max(1, self.state.config.ui_max_chats) and idle:
            old = idle.pop(0)
            del self.sessions[old.id]
            if old.run is not None:
                old.run.end("evicted")

    def shutdown(self) -> None:
        """The server stops: finish idle sessions' episodes, leave a running turn's as .part, remove sandboxes."""
        for session in list(self.sessions.values()):
            if session.run is not None and not session.log.busy:  # a running turn's file stays as it is: .part
                session.run.end("quit")
        self.sessions.clear()
        if self._sandbox_root is not None:
            shutil.rmtree(self._sandbox_root, ignore_errors=True)  # only the folder this server made


def store_of(request: Request) -> ChatStore:
    store = getattr(request.app.state, "ui_chats", None)
    if store is None:
        raise RuntimeError("the app has no chat store (create_app makes one)")
    return store


def install(app, tool_worlds: list[ToolWorld]) -> None:
    """Give `app` its chat store (create_app calls this)."""
    app.state.ui_chats = ChatStore(app.state.tg, tool_worlds)


def _json(body, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


# ---- options and sessions ---------------------------------------------------------------------------------
@router.get("/ui/api/chat/options")
async def options(request: Request) -> Response:
    """What a chat can use: the served models ("auto" too with a router), the tool worlds, the tool choices."""
    store = store_of(request)
    state = store.state

    def models() -> list[dict]:
        out = [{"name": n, "kind": state.catalog.info(n).kind} for n in state.names()]
        return out + ([{"name": AUTO, "kind": "router"}] if state.router is not None else [])

    return _json({"models": await run_in_threadpool(models), "default": state.default,
                  "tools": [{"name": w.name, "description": w.description} for w in store.worlds.values()],
                  "tool_choices": list(TOOL_CHOICES),
                  "defaults": msgspec.to_builtins(msgspec.structs.replace(
                      ChatSettings(), max_tokens=min(DEFAULT_MAX_TOKENS, state.config.max_tokens))),
                  "limits": {"max_tokens": state.config.max_tokens, "max_steps": MAX_STEPS}})


def _check(settings: ChatSettings, store: ChatStore) -> ChatSettings:
    state = store.state
    if settings.tools not in store.worlds:
        raise ApiError(400, f"unknown tool world {settings.tools!r}; this server offers "
                            f"{', '.join(store.worlds)}", param="tools")
    if not 0 <= settings.temperature <= 2:
        raise ApiError(400, f"temperature must be from 0 to 2, got {settings.temperature}", param="temperature")
    max_tokens = settings.max_tokens
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, state.config.max_tokens)
    if not 1 <= max_tokens <= state.config.max_tokens:
        raise ApiError(400, f"max_tokens must be from 1 to {state.config.max_tokens} (this server's cap), got "
                            f"{max_tokens}", param="max_tokens")
    if not 1 <= settings.max_steps <= MAX_STEPS:
        raise ApiError(400, f"max_steps must be from 1 to {MAX_STEPS}, got {settings.max_steps}", param="max_steps")
    model = settings.model or state.default
    if routing.is_auto(model) and state.router is None:
        raise state.unknown(model)
    return msgspec.structs.replace(settings, model=model, max_tokens=max_tokens, system=settings.system or None)


@router.post("/ui/api/chat", status_code=201)
async def create(request: Request) -> Response:
    """A new chat session (its model loads now, unless the router picks it at the first message)."""
    store = store_of(request)
    settings = _check(decode(await request.body(), ChatSettings), store)
    sid = uuid.uuid4().hex
    world = store.worlds[settings.tools]
    sandbox = store.sandbox(sid) if world.needs_dir else None
    toolset = await run_in_threadpool(world.make, sandbox)
    if settings.tool_choice not in TOOL_CHOICES and settings.tool_choice not in toolset.names:
        raise ApiError(400, f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a tool of the world "
                            f"({', '.join(toolset.names) or 'it has none'}), got {settings.tool_choice!r}",
                       param="tool_choice")
    session = Session(sid, settings, world, toolset, sandbox)
    if not routing.is_auto(settings.model):
        await _open(store, session, await store.state.card(settings.model), route=None)
    store.add(session)
    return _json(session.describe(), status=201)


def _agent_config(state: ServerState, s: ChatSettings) -> AgentConfig:
    return AgentConfig(tool_choice=s.tool_choice, max_steps=s.max_steps, system=s.system,
                       grammar_backend=state.config.grammar_backend, tool_format=state.config.tool_format,
                       sampling=SamplingParams(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed))


async def _open(store: ChatStore, session: Session, card, route) -> None:
    """Give `session` its agent on the served model `card` (None: on `route`'s backend policy) and its recorder."""
    state = store.state
    config = _agent_config(state, session.settings)

    def build() -> ChatRun:
        if card is None:
            engine, agent = None, Agent(None, session.toolset, config, policy=route.policy)
        else:  # the card is loaded, so the provider holds the model: this is a lookup, not a load
            engine = ServedModel(card, state.catalog.get(card.name))
            agent = Agent(engine, session.toolset, config, policy=SchedulerPolicy(state.scheduler, card.name))
        recorder = ConversationRecorder(chat_dir(state.config), engine, agent, task_id="chat", split="interactive",
                                        episode_id=f"chat-{session.id}",
                                        labels={"source": "ui-chat", "tools": session.world.name},
                                        route=route.decision.to_route() if route is not None else None)
        return ChatRun(agent, engine, recorder, session.log, lambda p: episode_url(state.config, p))

    try:
        session.run = await run_in_threadpool(build)
    except ValueError as exc:  # a tool_choice or grammar the agent cannot use
        raise ApiError(400, str(exc), param="tool_choice") from exc
    session.model = card.name if card is not None else route.decision.route


@router.get("/ui/api/chat/{sid}")
async def describe(request: Request, sid: str) -> Response:
    return _json(store_of(request).get(sid).describe())


@router.post("/ui/api/chat/{sid}/messages", status_code=202)
async def message(request: Request, sid: str) -> Response:
    """Start a turn: the answer streams through /events."""
    store = store_of(request)
    session = store.get(sid)
    text = decode(await request.body(), UserMessage).text
    if not text.strip():
        raise ApiError(400, "the message is empty; type something", param="text")
    if session.ended:
        raise ApiError(409, "this chat has ended; start a new chat")
    if not session.log.begin():
        raise ApiError(409, "a turn is still running in this chat; wait for it to finish")
    first = len(session.log.items)
    session.log.append({"type": "user", "text": text})
    try:
        if session.run is None:  # model "auto": the first message picks the model
            await _route(store, session, text)
    except BaseException as exc:
        message = exc.message if isinstance(exc, ApiError) else f"the chat could not start ({type(exc).__name__})"
        session.log.append({"type": "error", "message": message})
        session.log.append({"type": "idle", "episode": None}, busy=False)
        raise
    session.run.start(text)
    return _json({"seq": first}, status=202)


async def _route(store: ChatStore, session: Session, text: str) -> None:
    state = store.state
    messages = ([{"role": "system", "content": session.settings.system}] if session.settings.system else []) + [
        {"role": "user", "content": text}]
    routed = await run_in_threadpool(routing.route, state, messages, session.toolset.schemas())
    card = await state.card(routed.model) if routed.policy is None else None
    await _open(store, session, card, routed)
    session.route = route_json(routed.decision)
    session.log.append(dict(session.route))


@router.post("/ui/api/chat/{sid}/end")
async def end(request: Request, sid: str) -> Response:
    """Finish the chat's episode (the page's "New chat"); the finished episode's viewer URL."""
    session = store_of(request).get(sid)
    if session.log.busy:
        raise ApiError(409, "a turn is still running in this chat; wait for it to finish, then end it")
    if not session.ended:
        session.episode = await run_in_threadpool(session.run.end, "reset") if session.run is not None else None
        session.ended = True
    return _json({"episode": session.episode})


@router.get("/ui/api/chat/{sid}/events")
async def events(request: Request, sid: str, after: int = -1) -> Response:
    """NDJSON: every event after seq `after`, then each new one as it happens, until no turn is running."""
    session = store_of(request).get(sid)
    return StreamingResponse(_follow(request, session.log, after), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _follow(request: Request, log: EventLog, after: int) -> AsyncIterator[bytes]:
    while True:
        items, busy = log.since(after)
        if items:
            yield b"".join(msgspec.json.encode(i) + b"\n" for i in items)
            after = items[-1]["seq"]
        if not busy:
            return
        await log.wait(after, FOLLOW_WAIT_S)
        if await request.is_disconnected():
            return
