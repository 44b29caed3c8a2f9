"""The REPL shell shared by `tinygpt chat` and `tinygpt agent`: the prompt loop and the common slash commands.

`conv` is anything with `transcript` and `session` attributes (an Agent, or chat's holder); /save and /load
write and read both (runtime/saved_chat.py). Each command adds its own commands through `extra`. It does not
generate: `on_message` does.
"""
from __future__ import annotations

from typing import Callable


def run_repl(*, engine, conv, help_text: str, on_message: Callable[[str], None], on_reset: Callable[[], None],
             extra: dict[str, Callable[[str], None]] | None = None) -> int:
    """Read lines until /quit or end of input; returns the exit code."""
    from tinygpt.runtime.kv_cache import KVCacheError
    from tinygpt.runtime.saved_chat import load_chat, save_chat

    extra = extra or {}
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if not cmd:
            continue
        if cmd in ("/quit", "/exit"):
            return 0
        if cmd == "/help":
            print(help_text)
        elif cmd == "/reset":
            on_reset()
        elif cmd in ("/save", "/load") and not arg:
            print(f"usage: {cmd} PATH")
        elif cmd in ("/save", "/load"):
            try:
                if cmd == "/save":
                    print(f"saved to {save_chat(engine, conv.transcript, conv.session, arg)}")
                else:
                    conv.transcript, conv.session = load_chat(engine, arg)
                    print(f"loaded {len(conv.transcript.messages)} messages, {len(conv.transcript.ids)} tokens")
            except (KVCacheError, OSError) as exc:
                print(f"error: {exc}")
        elif cmd in extra:
            extra[cmd](arg)
        elif cmd.startswith("/"):
            print(f"unknown command {cmd}; /help lists them")
        else:
            on_message(line)
