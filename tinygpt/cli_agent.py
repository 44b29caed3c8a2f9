"""`tinygpt agent`: an interactive agent REPL whose tool calls are grammar-constrained and run in a sandbox."""
from __future__ import annotations

import argparse
import json
import sys

from tinygpt.cli_generate import add_sampling_flags, sampling_from
from tinygpt.model_arg import add_model_flag, load_engine, resolve

EPILOG = """examples:
  tinygpt agent                                   default model, the embedded virtual file system
  tinygpt agent --tools fs:./workspace:ro         a real directory, read-only, jailed to ./workspace
  tinygpt agent --tool-choice required --trajectory-dir runs/   record every episode as .atraj

REPL commands:
  /tools        list the tools and their parameters
  /save PATH    save the conversation + KV cache (PATH.chat.json + PATH.kv.safetensors)
  /load PATH    load one (refused if made by another model)
  /reset        start a new conversation (the tool world keeps its state)
  /quit         leave (also Ctrl-D)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinygpt agent", description=__doc__, epilog=EPILOG,
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
    p.add_argument("--trajectory-dir", default=None, help="record each user turn as an .atraj episode here")
    return p


def show(event, out=sys.stdout) -> None:
    """Print one agent event for a person."""
    from tinygpt.runtime import agent_events as ev

    if isinstance(event, ev.Token):
        out.write(event.text)
    elif isinstance(event, ev.ToolCall):
        out.write(f"\n  → {event.name}({json.dumps(event.arguments, ensure_ascii=False)})\n")
    elif isinstance(event, ev.ToolResult):
        mark = "✗" if event.is_error else "←"
        body = event.content if len(event.content) < 400 else event.content[:400] + " …"
        out.write(f"  {mark} {body}\n")
    elif isinstance(event, ev.Error):
        out.write(f"\n  ! {event.message}\n")
    elif isinstance(event, ev.TurnEnd):
        out.write(f"\n[{event.reason}, {event.steps} step{'s' if event.steps != 1 else ''}]\n")
    out.flush()


def main(argv: list[str]) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    try:
        params = sampling_from(a)
    except ValueError as exc:
        p.error(str(exc))
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.repl import run_repl
    from tinygpt.tools.catalog import load_toolset

    cfg = resolve(a)
    toolset = load_toolset(a.tools)
    engine = load_engine(cfg)
    try:
        agent = Agent(engine, toolset, AgentConfig(
            tool_choice=a.tool_choice, parallel_tool_calls=not a.no_parallel, max_steps=a.max_steps,
            system=a.system, grammar_backend=a.grammar_backend or cfg.grammar_backend, sampling=params))
    except ValueError as exc:  # bad tool choice, grammar the backend cannot build, max_steps < 1
        p.error(str(exc))
    recorder = make_recorder(a.trajectory_dir, engine, agent, a) if a.trajectory_dir else None
    print(f"tinygpt agent — model {engine.loaded.path}, tools {a.tools} ({len(toolset.names)}). /help for "
          "commands.", file=sys.stderr)

    def tools(_: str) -> None:
        for schema in agent.tools:
            f = schema["function"]
            first = (f.get("description") or "").splitlines()[:1]
            print(f"  {f['name']}({', '.join(f['parameters'].get('properties', {}))}): {''.join(first)}")

    def reset() -> None:
        agent.reset()
        print("(new conversation)")

    def message(line: str) -> None:
        events = agent.run(line)
        for event in recorder(events) if recorder is not None else events:
            show(event)

    return run_repl(engine=engine, conv=agent, help_text=EPILOG.split("REPL commands:\n", 1)[1],
                    on_message=message, on_reset=reset, extra={"/tools": tools})


def make_recorder(directory, engine, agent, args):
    """Wrap the event stream so each user turn is written as one .atraj episode."""
    from tinygpt.runtime.recording import record_episode

    def wrap(events):
        return record_episode(events, directory, engine=engine, agent=agent, task_id="repl", split="interactive")

    return wrap
