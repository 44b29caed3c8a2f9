"""The REPL shell shared by `tinygpt chat` and `tinygpt agent`: the prompt loop and the common slash commands.

Line editing and history come from the stdlib `readline` (history in <cache>/history-<name>; an unreadable or
unwritable history file is ignored). A line starting with \"\"\" opens a multi-line message that a line ending
with \"\"\" closes (as in Ollama). Ctrl-C during an answer drops the unfinished exchange, the user's message
included (Ollama does the same), and rewinds the KV session to the transcript; Ctrl-C at the prompt only
clears the line (it never exits: a reflexive second Ctrl-C must not cost the conversation); Ctrl-D, /bye or
/quit leave. `conv` is anything with `transcript` and `session` attributes (an Agent, or chat's holder); /save
and /load write and read both (runtime/saved_chat.py), and their failures are reported without leaving. With a
remote model (`engine` None, `session` None) there is no KV to rewind, save or load.
Each command adds its own commands through `extra`. It does not generate: `on_message` does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

KEYS = '''keys:
  Up/Down      recall earlier lines (history is kept between sessions)
  """          a line starting with """ begins a multi-line message; a line ending with """ ends it
  Ctrl-C       stop the answer in progress: the unfinished exchange (your message too) is dropped and the
               conversation continues from before it. At the prompt Ctrl-C clears the line; it never exits
  Ctrl-D       leave (also /bye or /quit)'''

QUIT = ("/quit", "/exit", "/bye")
SETTABLE = {"temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "seed": int}


def _history(name: str):
    """Turn on readline editing with a persistent history; returns a function that saves it (never raises)."""
    import sys

    if not sys.stdin.isatty():  # piped input: nothing to edit, and no history of a script
        return lambda: None
    try:
        import readline
    except ImportError:  # no readline on this platform: plain input()
        return lambda: None
    from tinygpt.runtime.vocab import cache_dir

    path = cache_dir() / f"history-{name}"
    readline.set_history_length(1000)
    try:
        readline.read_history_file(path)
    except OSError:
        pass

    def save() -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass

    return save


def read_message() -> str:
    """One message from the prompt: a line, or a \"\"\"-delimited block of lines. Raises EOFError/KeyboardInterrupt."""
    line = input(">>> ")
    if not line.lstrip().startswith('"""'):
        return line
    first = line.lstrip()[3:]
    if first.rstrip().endswith('"""'):
        return first.rstrip()[:-3]
    lines = [first] if first else []
    while True:
        more = input("... ")
        if more.rstrip().endswith('"""'):
            if more.rstrip()[:-3]:
                lines.append(more.rstrip()[:-3])
            return "\n".join(lines)
        lines.append(more)


def run_repl(*, engine, conv, help_text: str, on_message: Callable[[str], None], on_reset: Callable[[], None],
             on_load: Callable[[], None] = lambda: None, extra: dict[str, Callable[[str], None]] | None = None,
             history: str = "chat") -> int:
    """Read messages until /quit, /bye or end of input; returns the exit code. `on_load` runs after a /load
    replaced the conversation (the previous one is over)."""
    save_history = _history(history)
    try:
        return _loop(engine, conv, help_text, on_message, on_reset, on_load, extra or {})
    finally:
        save_history()


def _loop(engine, conv, help_text, on_message, on_reset, on_load, extra) -> int:
    while True:
        try:
            text = read_message()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\n(use Ctrl-D or /bye to exit)")
            continue
        cmd, _, arg = text.strip().partition(" ")
        if cmd in QUIT and "\n" not in text:
            return 0
        try:
            dispatch(engine, conv, help_text, on_message, on_reset, on_load, extra, text, cmd, arg.strip())
        except KeyboardInterrupt:  # during a command (an answer handles its own)
            print("\n(interrupted)")


def dispatch(engine, conv, help_text, on_message, on_reset, on_load, extra, text: str, cmd: str, arg: str) -> None:
    """Run one slash command, or send `text` as a message."""
    if not cmd:
        return
    if "\n" in text or not cmd.startswith("/"):  # a multi-line message is never a command
        answer(engine, conv, on_message, text)
    elif cmd == "/help":
        print(help_text)
    elif cmd == "/reset":
        on_reset()
    elif cmd in ("/save", "/load") and not arg:
        print(f"usage: {cmd} PATH")
    elif cmd in ("/save", "/load") and engine is None:
        print(getattr(conv, "no_save", None)  # a conversation that says why (tinygpt/agent_route.py)
              or f"error: {cmd} keeps a local model's KV cache with the chat; a remote model's conversation has none")
    elif cmd in ("/save", "/load"):
        if save_or_load(engine, conv, cmd, arg) and cmd == "/load":
            on_load()
    elif cmd in extra:
        extra[cmd](arg)
    else:
        print(f"unknown command {cmd}; /help lists them")


def answer(engine, conv, on_message: Callable[[str], None], text: str) -> None:
    """Run one exchange; on Ctrl-C drop it and rewind the session so transcript and KV agree again."""
    mark = conv.transcript.mark()
    try:
        on_message(text)
    except KeyboardInterrupt:
        conv.transcript.rollback(mark)
        if conv.session is not None:  # a remote model's conversation has no local KV
            engine.rewind(conv.session, conv.transcript.ids)
        print(f"\n(interrupted: that exchange was dropped; the conversation has {len(conv.transcript.messages)} "
              "messages)")


def save_or_load(engine, conv, cmd: str, arg: str) -> bool:
    """/save or /load; True if it was done. Any failure is printed and the conversation goes on."""
    from tinygpt.runtime.kv_cache import KVCacheError
    from tinygpt.runtime.saved_chat import load_chat, save_chat

    try:
        if cmd == "/save":
            path, replaced = save_chat(engine, conv.transcript, conv.session, arg)
            print(f"saved to {path}" + (" (replaced the saved chat that was there)" if replaced else ""))
        else:
            conv.transcript, conv.session = load_chat(engine, arg, tools=getattr(conv, "tools", None))
            print(f"loaded {len(conv.transcript.messages)} messages, {len(conv.transcript.ids)} tokens")
        return True
    except KVCacheError as exc:  # SavedChatError included: the message names the file
        print(f"error: {exc}")
    except OSError as exc:
        print(f"error: {cmd} {arg}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
    except Exception as exc:  # noqa: BLE001 — e.g. MLX's own errors on a full disk: the conversation outlives them
        print(f"error: {cmd} {arg} failed ({type(exc).__name__}: {exc}); the conversation is unchanged")
    return False


def set_command(get: Callable, put: Callable) -> Callable[[str], None]:
    """`/set NAME VALUE` (like Ollama's /set parameter): replace one field of the SamplingParams `get()` returns."""
    def run(arg: str) -> None:
        name, _, value = arg.partition(" ")
        field = name.replace("-", "_")
        if field not in SETTABLE or not value.strip():
            print("usage: /set NAME VALUE, NAME one of " + ", ".join(f.replace("_", "-") for f in SETTABLE))
            return
        try:
            params = replace(get(), **{field: SETTABLE[field](value.strip())})
            params.check()
        except ValueError as exc:
            print(f"error: /set {name}: {exc}")
            return
        put(params)
        print(f"{name} = {getattr(params, field)}")

    return run


def describe_model(loaded) -> str:
    """The model as the user named it, with what it is made of: `name (dir)` or `name (base dir + adapter dir)`."""
    parts = f"{loaded.path} + adapter {loaded.adapter_path}" if loaded.adapter_path else str(loaded.path)
    return loaded.name if parts == loaded.name else f"{loaded.name} ({parts})"


def random_init_note(engine) -> None:
    """Warn, in the banner, when the model is one tinygpt initialised randomly and nothing has trained."""
    import sys

    from tinygpt.runtime.presets import is_untrained

    if is_untrained(engine.loaded):
        print(f"note: model {describe_model(engine.loaded)} is random-init (untrained): its output is noise; train it or use "
              "a real model (--model)", file=sys.stderr)
