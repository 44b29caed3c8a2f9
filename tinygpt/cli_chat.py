"""`tinygpt chat`: a REPL on one persistent KV session; each turn prefills only the new message."""
from __future__ import annotations

import argparse
import sys

from tinygpt.cli_generate import add_sampling_flags, sampling_from
from tinygpt.model_arg import add_model_flag, load_engine, resolve

HELP = """commands:
  /save PATH   save the conversation and its KV cache (PATH.chat.json + PATH.kv.safetensors)
  /load PATH   load a saved conversation (refused if made by another model)
  /reset       start over
  /help        this help
  /quit        leave (also Ctrl-D)"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt chat", description=__doc__, epilog=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(p)
    add_sampling_flags(p)
    p.add_argument("--system", default=None, help="system message")
    a = p.parse_args(argv)
    try:
        params = sampling_from(a)
    except ValueError as exc:
        p.error(str(exc))
    engine = load_engine(resolve(a))
    from tinygpt.runtime.kv_cache import KVCacheError
    from tinygpt.runtime.saved_chat import load_chat, save_chat
    from tinygpt.runtime.transcript import Transcript

    def fresh():
        return Transcript(engine=engine), engine.new_session()

    transcript, session = fresh()
    print(f"tinygpt chat — model {engine.loaded.path}. /help for commands.", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        if not line.strip():
            continue
        cmd, _, arg = line.strip().partition(" ")
        if cmd in ("/quit", "/exit"):
            return 0
        if cmd == "/help":
            print(HELP)
            continue
        if cmd == "/reset":
            transcript, session = fresh()
            print("(reset)")
            continue
        if cmd in ("/save", "/load"):
            if not arg:
                print(f"usage: {cmd} PATH")
                continue
            try:
                if cmd == "/save":
                    print(f"saved to {save_chat(engine, transcript, session, arg.strip())}")
                else:
                    transcript, session = load_chat(engine, arg.strip())
                    print(f"loaded {len(transcript.messages)} messages, {len(transcript.ids)} tokens")
            except (KVCacheError, OSError) as exc:
                print(f"error: {exc}")
            continue
        if cmd.startswith("/"):
            print(f"unknown command {cmd}; /help lists them")
            continue
        msgs = ([{"role": "system", "content": a.system}] if a.system and not transcript.messages else [])
        transcript.add_messages(*msgs, {"role": "user", "content": line})
        gen = engine.stream(transcript.ids, params, session=session)
        for ev in gen:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        r = gen.result
        transcript.add_output(r.output_ids, {"role": "assistant", "content": r.text},
                              stopped_on_eos=r.finish_reason == "stop")
        print(f"\n[{len(r.output_ids)} tok, prefilled {r.prefill_tokens}, cached {r.cached_tokens}, "
              f"{r.decode_tps:.1f} tok/s]", file=sys.stderr)
