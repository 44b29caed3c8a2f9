"""`tinygpt agent`: an interactive agent REPL whose tool calls run in a sandbox.

A local model's calls are grammar-constrained; with `--backend NAME` (a backend configured and enabled in
backends.toml: docs/backends.md) or `--remote URL --model NAME` (an OpenAI-compatible server, taken as an inline
backend: one code path) a remote or cloud model drives the same loop and tools (its calls are checked against the
tools' schemas; turns are recorded with token_exact false, with usage and cost). With `--router DIR` a saved
router picks the model per conversation, at its first message (tinygpt/agent_route.py). An API key is read from the
environment variable that `--api-key-env` (or the backend's `api_key_env`) names, never from a flag, and never
printed.
The REPL itself (editing, history, multi-line input, Ctrl-C, /save /load) is tinygpt/repl.py; this module
builds the agent and prints its events: the model's text streams until a tool call opens, and each call is
then shown once, formatted (not also as the raw call text). With --trajectory-dir each conversation is recorded
as one episode, ended by /reset, /load, /bye or Ctrl-D; an exchange dropped with Ctrl-C is dropped from it too,
and a crash leaves it a resumable .part. Heavy imports happen inside functions only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from tinygpt.cli_generate import add_sampling_flags, sampling_from
from tinygpt.flags import add_tool_format_flag, float_in
from tinygpt.model_arg import add_model_flag, load_engine, resolve
from tinygpt.repl import KEYS

EPILOG = """examples:
  tinygpt agent                                   default model, the embedded virtual file system
  tinygpt agent --tools fs:./workspace:ro         a real directory, read-only, jailed to ./workspace
  tinygpt agent --tool-choice required --trajectory-dir runs/   record each conversation as one .atraj
  tinygpt agent --remote http://127.0.0.1:8000/v1 --model qwen3 --api-key-env MY_KEY --trajectory-dir runs/
                                                  a model on an OpenAI-compatible server drives the tools
  tinygpt agent --backend claude                  a backend configured and enabled in backends.toml
                                                  (tinygpt backends ls lists them; docs/backends.md)
  tinygpt agent --router ~/.cache/tinygpt/router --trajectory-dir runs/
                                                  each conversation's first message picks its model (a shipped
                                                  specialist, the generalist or an enabled backend; docs/router.md)

REPL commands:
  /tools        list the tools and their parameters
  /save PATH    save the conversation + KV cache (PATH.chat.json + PATH.kv.safetensors); a local model only
  /load PATH    load one (refused if made by another model)
  /save PATH    replaces only a chat saved there before, never another file
  /reset        start a new conversation (the tool world keeps its state)
  /escalate     with --router, after a turn the local model kept failing: go on with the enabled backend above it
  /set NAME VALUE  change a setting: max-steps, or a sampling one (temperature, top-p, top-k, max-tokens, seed)
  /help         this help
  /bye          leave (also /quit, Ctrl-D)
  (Ctrl-C drops the unfinished turn from the conversation; tools it already ran keep their effects)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt agent", description=__doc__.splitlines()[0], epilog=EPILOG + KEYS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(p)
    add_sampling_flags(p)
    p.set_defaults(max_tokens=256)
    p.add_argument("--tools", default="fs:virtual",
                   help="fs:virtual (embedded world), fs:DIR or fs:DIR:ro (a real directory, jailed)")
    p.add_argument("--tool-choice", default="auto", help="auto | none | required | a tool name (default auto)")
    p.add_argument("--no-parallel", action="store_true", help="at most one tool call per step")
    p.add_argument("--max-steps", type=int, default=20, help="model steps per user turn (default 20)")
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--grammar-backend", default=None, choices=["llguidance", "outlines"],
                   help="constrained-decoding backend (default: config, else llguidance)")
    add_tool_format_flag(p)
    p.add_argument("--trajectory-dir", default=None,
                   help="record each conversation (ended by /reset, /load or leaving) as an .atraj episode here")
    p.add_argument("--router", metavar="DIR", default=None,
                   help="route each conversation with a router saved by `tinygpt route train`: its first message "
                        "picks a store model (a shipped specialist, or the generalist: --model) or an enabled "
                        "backend, for the whole conversation; the decision is printed and recorded in the "
                        "trajectory header (default: config `router`, else none)")
    remote = add_remote_flags(p, "remote model (an OpenAI-compatible server or a configured backend drives the agent)")
    remote.add_argument("--backend", metavar="NAME", default=None,
                        help="a backend configured and enabled in backends.toml (tinygpt backends ls lists them)")
    return p


def add_remote_flags(p: argparse.ArgumentParser, title: str):
    """--remote URL, --api-key-env VAR, --timeout S: a model on an OpenAI-compatible server (see remote_policy)."""
    remote = p.add_argument_group(title)
    remote.add_argument("--remote", metavar="URL", default=None,
                        help="the server's API base URL, e.g. http://127.0.0.1:8000/v1; --model then names the "
                             "server's model")
    remote.add_argument("--api-key-env", metavar="VAR", default=None,
                        help="read the server's API key from environment variable VAR (default: send no key)")
    remote.add_argument("--timeout", metavar="S", type=float_in(0.0, lo_open=True), default=None,
                        help="seconds to wait for the server (default 120)")
    return remote


class EventPrinter:
    """Prints agent events for a person; the raw text of a tool call (from the format's `trigger` on) is held back
    and the call shown formatted. A remote model's calls come apart from its text: its trigger is ""."""

    def __init__(self, trigger: str, out=None):
        self.out, self.call_open = out or sys.stdout, trigger
        self.reset()

    def _stream(self, text: str) -> None:
        if self._in_call:
            return
        self._text += text
        at = self._text.find(self.call_open, self._shown) if self.call_open else -1
        if at >= 0:
            self._in_call = True
            self.out.write(self._text[self._shown:at])
            return
        hold = next((k for k in range(len(self.call_open) - 1, 0, -1)  # a call may be opening
                     if self._text.endswith(self.call_open[:k])), 0)
        self.out.write(self._text[self._shown:len(self._text) - hold])
        self._shown = len(self._text) - hold

    def reset(self) -> None:
        """Forget the current step's text (a step ended or was interrupted)."""
        self._text, self._shown, self._in_call = "", 0, False

    def show(self, event) -> None:
        """Print one agent event."""
        from tinygpt.runtime import agent_events as ev
        from tinygpt.traces.atraj import ModelCall, ToolCall, ToolResult

        out = self.out
        if isinstance(event, (ev.Token, ev.TextDelta)):
            self._stream(event.text)
        elif isinstance(event, ModelCall):  # the step is over: show held-back text that was not a call
            if not self._in_call:
                out.write(self._text[self._shown:])
            self.reset()
        elif isinstance(event, ToolCall):
            out.write(f"\n  \u2192 {event.name}({json.dumps(event.arguments, ensure_ascii=False)})\n")
        elif isinstance(event, ToolResult):
            mark = "\u2717" if event.is_error else "\u2190"
            body = event.content if len(event.content) < 400 else event.content[:400] + " \u2026"
            out.write(f"  {mark} {body}\n")
        elif isinstance(event, ev.Error):
            out.write(f"\n  ! {event.message}\n")
        elif isinstance(event, ev.TurnEnd):
            out.write(f"\n[{event.reason}, {event.steps} step{'s' if event.steps != 1 else ''}]\n")
        out.flush()


def writable_dir_error(path: str) -> str | None:
    """None if `path` is (or can be made) a directory we can write to, else what is wrong, in one line."""
    d = Path(path).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".tinygpt-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return (f"--trajectory-dir {path}: cannot write there ({exc.strerror or exc}); give a directory you can "
                "write to")
    return None


def main(argv: list[str]) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    try:
        params = sampling_from(a)
    except ValueError as exc:
        p.error(str(exc))
    from tinygpt.runtime.agent import Agent
    from tinygpt.repl import describe_model, random_init_note
    from tinygpt.tools.catalog import load_toolset

    cfg = resolve(a)
    problem = writable_dir_error(cfg.trajectory_dir) if cfg.trajectory_dir else None
    if problem:
        sys.stderr.write(f"tinygpt agent: error: {problem}\n")
        return 2
    toolset = load_toolset(a.tools)
    if a.router and (a.backend or a.remote):
        p.error("--router DIR picks the model per conversation; --backend and --remote name one: give one")
    if cfg.router and not (a.backend or a.remote):  # the config's router, unless a model is named outright
        return routed_main(p, a, cfg, params, toolset)
    policy = remote_policy(p, a, local=lambda: local_policy(cfg, a))
    engine = None if policy else load_engine(cfg)
    try:
        agent = Agent(engine, toolset, agent_config(a, cfg, params), policy=policy)
    except ValueError as exc:  # bad tool choice, grammar the backend cannot build, max_steps < 1
        p.error(str(exc))
    if policy is None:
        model = f"model {describe_model(engine.loaded)}"
    elif a.backend:
        model = f"backend {a.backend}: model {policy.model} at {policy.address}"
    else:
        model = f"remote model {policy.model} at {policy.address} (OpenAI-compatible)"
    print(f"tinygpt agent — {model}, tools {a.tools} ({len(toolset.names)}). /help for commands.", file=sys.stderr)
    if engine is not None:
        random_init_note(engine)
    return repl(engine, agent, trajectory_dir=cfg.trajectory_dir)


def agent_config(a, cfg, params):
    from tinygpt.runtime.agent import AgentConfig

    return AgentConfig(tool_choice=a.tool_choice, parallel_tool_calls=not a.no_parallel, max_steps=a.max_steps,
                       system=a.system, grammar_backend=a.grammar_backend or cfg.grammar_backend, sampling=params,
                       tool_format=cfg.tool_format)


def routed_main(p: argparse.ArgumentParser, a, cfg, params, toolset) -> int:
    """The REPL with each conversation routed by the router `cfg.router` (tinygpt/agent_route.py). Its generalist
    is the router's own when that names a model other than the embedded default, else --model (or the config's)."""
    from dataclasses import replace

    from tinygpt.agent_route import RoutedAgent
    from tinygpt.router.backends import BackendError
    from tinygpt.router.errors import RouterError
    from tinygpt.router.model import load
    from tinygpt.router.serve_route import load_request_router
    from tinygpt.runtime.agent import Agent
    from tinygpt.runtime.store import DEFAULT, ModelStore

    if a.api_key_env or a.timeout is not None:
        p.error("--api-key-env and --timeout go with --remote URL; a routed backend's are set in backends.toml")
    try:
        model = load(cfg.router)
        own = model.meta.settings.generalist
        router = load_request_router(cfg.router, ModelStore(), model=model,
                                     generalist=own if own != DEFAULT else (cfg.model or DEFAULT),
                                     local=lambda: local_policy(cfg, a))
    except (RouterError, BackendError) as exc:
        p.error(str(exc))
    config = agent_config(a, cfg, params)

    def make_agent(decision):
        policy = router.policy_for(decision)
        if policy is not None:
            return None, Agent(None, toolset, config, policy=policy)
        engine = load_engine(replace(cfg, model=decision.route))
        return engine, Agent(engine, toolset, config)

    routed = RoutedAgent(router, make_agent, toolset.schemas(), config)
    print(f"tinygpt agent — router {cfg.router} ({router.id}): each conversation's first message picks its model; "
          f"tools {a.tools} ({len(toolset.names)}). /help for commands.", file=sys.stderr)
    return repl(None, routed, trajectory_dir=cfg.trajectory_dir)


def local_policy(cfg, a):
    """The model --model (or the config) names, loaded here, as a message policy: a backend's "local" fallback."""
    from tinygpt.router.local_policy import LocalMessagePolicy

    return LocalMessagePolicy(load_engine(cfg), grammar_backend=cfg.grammar_backend,
                              tool_format=cfg.tool_format or None)


class Recording:
    """The REPL's trajectory recording: one episode per conversation (runtime/recording.py). A failed write turns
    recording off for the rest of the session; the conversation always goes on."""

    def __init__(self, engine, agent, directory: str | None):
        self.directory, self.conversation = directory, None
        if directory and not getattr(agent, "routed", False):
            self.route(engine, agent, None)

    def route(self, engine, agent, route) -> None:
        """Record the next conversation as run by `agent` on `engine`, sent there by `route` (a RouteDecision)."""
        from tinygpt.runtime.recording import ConversationRecorder

        if self.directory:
            self.conversation = ConversationRecorder(self.directory, engine, agent, task_id="repl",
                                                     split="interactive", route=route)

    def stream(self, events):
        return self.conversation.record(events) if self.conversation else events

    def mark(self):
        return self.conversation.mark() if self.conversation else None

    def rollback(self, mark) -> None:
        self._guard(lambda c: c.rollback(mark))

    def end(self, status: str) -> None:
        """The conversation is over (/reset, /load, leaving): finish its episode, if one is open."""
        path = self._guard(lambda c: c.end(status))
        if path is not None:
            print(f"(conversation recorded in {path})", file=sys.stderr)

    def close(self) -> None:
        """Leave the open episode a resumable .part (the REPL died)."""
        self._guard(lambda c: c.close())

    def failed(self, exc) -> None:
        if self.conversation is not None:
            self.conversation.close()
        self.conversation = None
        print(f"\nerror: could not record this conversation ({exc}); recording is off for the rest of this "
              "session, the conversation goes on", file=sys.stderr)

    def _guard(self, action):
        from tinygpt.traces.errors import TraceWriteError

        if self.conversation is None:
            return None
        try:
            return action(self.conversation)
        except TraceWriteError as exc:  # the disk filled or went away
            self.failed(exc)
            return None


def repl(engine, agent, *, trajectory_dir: str | None = None) -> int:
    """The agent REPL on `agent`, recording each conversation as one episode under `trajectory_dir` (if given)."""
    from tinygpt.repl import run_repl, set_command
    from tinygpt.router.serve_route import describe
    from tinygpt.traces.errors import TraceWriteError

    recording = Recording(engine, agent, trajectory_dir)
    routed = getattr(agent, "routed", False)
    printer = EventPrinter("" if routed else call_trigger(agent))

    def tools(_: str) -> None:
        for schema in agent.tools:
            f = schema["function"]
            first = (f.get("description") or "").splitlines()[:1]
            print(f"  {f['name']}({', '.join(f['parameters'].get('properties', {}))}): {''.join(first)}")

    set_sampling = set_command(lambda: agent.config.sampling, lambda v: setattr(agent.config, "sampling", v))

    def set_(arg: str) -> None:
        name, _, value = arg.partition(" ")
        if name not in ("max-steps", "max_steps"):
            return set_sampling(arg)
        if not value.strip().isdigit() or int(value) < 1:
            print(f"error: /set max-steps needs a whole number >= 1, got {value.strip()!r}")
            return
        agent.config.max_steps = int(value)
        print(f"max-steps = {agent.config.max_steps}")

    def reset() -> None:
        recording.end("reset")
        agent.reset()
        print("(new conversation)")

    offered = []  # the escalation offered after the last turn (routed conversations only)

    def escalate(_: str) -> None:
        if not offered:
            print("nothing to escalate: /escalate follows a turn in which the local model kept failing, when an "
                  "enabled backend is above it (--router)")
            return
        recording.end("escalated")
        decision = agent.escalate(offered.pop())
        recording.route(agent.engine, agent.agent, decision.to_route())
        printer.call_open = call_trigger(agent.agent)
        print(dim(f"route: {describe(decision)}"))

    def message(line: str) -> None:
        offered.clear()
        decision = agent.begin(line) if routed else None  # a new conversation: its first message picks its model
        if decision is not None:
            print(dim(f"route: {describe(decision)}"))
            recording.route(agent.engine, agent.agent, decision.to_route())
            printer.call_open = call_trigger(agent.agent)
        mark = recording.mark()
        events = agent.run(line)
        stream = recording.stream(events)
        seen = []
        try:
            try:
                for event in stream:
                    printer.show(event)
                    seen.append(event)
            except TraceWriteError as exc:
                recording.failed(exc)
                for event in events:
                    printer.show(event)
        except KeyboardInterrupt:  # the exchange is dropped (tinygpt/repl.py): from the episode too
            recording.rollback(mark)
            raise
        finally:  # on Ctrl-C: end the generation now (settling the KV)
            stream.close()
            events.close()
            printer.reset()
        escalation = agent.stuck(seen) if routed else None
        if escalation is not None:  # offered, never taken by itself: a tool result must not move the conversation
            offered.append(escalation)
            print(dim(f"! {escalation.reason}; /escalate continues this conversation there (a new episode)"))

    try:
        code = run_repl(engine=engine, conv=agent, help_text=EPILOG.split("REPL commands:\n", 1)[1] + KEYS,
                        on_message=message, on_reset=reset, on_load=lambda: recording.end("load"),
                        history="agent", extra={"/tools": tools, "/set": set_, "/escalate": escalate})
    except BaseException:
        recording.close()
        raise
    recording.end("quit")
    return code


def call_trigger(agent) -> str:
    """Where a call's raw text starts in the agent's output, to hold back: a remote model's calls come apart from
    its text (""); locally, the format the agent's grammar writes (--tool-format)."""
    return "" if agent.grammar is None else agent.grammar.format.trigger


def dim(text: str) -> str:
    return f"\x1b[2m{text}\x1b[0m" if sys.stdout.isatty() else text


def remote_policy(p: argparse.ArgumentParser, a, local=None):
    """The guarded message policy that `--backend` or `--remote` asks for, or None (a local model). `--remote`
    is an inline openai-compatible backend (no redaction: the server is the user's own); `local()` makes the
    local model's policy for a backend whose fallback is "local". A bad combination of flags or a backend that
    cannot be used is argparse's one-line error."""
    from tinygpt.router.backends import Backend, BackendError, guarded, load_backends

    backend = getattr(a, "backend", None)
    if backend and a.remote:
        p.error("--backend NAME and --remote URL: give one")
    if not a.remote and not backend:
        if a.api_key_env or a.timeout is not None:
            p.error("--api-key-env and --timeout go with --remote URL")
        return None
    if a.grammar_backend:
        p.error("--grammar-backend is for a local model; a remote server constrains its own output (or not)")
    if backend:
        if a.api_key_env or a.timeout is not None:
            p.error(f"--api-key-env and --timeout go with --remote URL; backend {backend}'s are set in "
                    "backends.toml")
        try:
            return load_backends().policy(backend, local=local)
        except BackendError as exc:
            p.error(str(exc))
    if not a.model:
        p.error("--remote needs --model NAME: the server's model (its GET /v1/models lists them)")
    if a.api_key_env and not os.environ.get(a.api_key_env):
        p.error(f"--api-key-env {a.api_key_env}: that environment variable is not set (or empty); export the key "
                "in it, or leave --api-key-env out for a server without a key")
    inline = Backend(name="remote", kind="openai-compatible", model=a.model, base_url=a.remote,
                     api_key_env=a.api_key_env or "", timeout=120.0 if a.timeout is None else a.timeout,
                     enabled=True, redact=False)
    try:
        return guarded(inline, env=os.environ)
    except BackendError as exc:
        p.error(str(exc))
