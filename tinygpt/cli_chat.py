"""`tinygpt chat`: a REPL on one persistent KV session; each turn prefills only the new message.

The REPL itself (editing, history, multi-line input, Ctrl-C, /save /load) is tinygpt/repl.py; this module
wires a plain transcript to it and streams each answer. Heavy imports (MLX, ...) happen inside `main` only.
"""
from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from tinygpt.cli_generate import add_sampling_flags, sampling_from
from tinygpt.model_arg import add_model_flag, load_engine, resolve
from tinygpt.repl import KEYS

HELP = """commands:
  /save PATH   save the conversation and its KV cache (PATH.chat.json + PATH.kv.safetensors); replaces only
               a chat saved there before, never another file
  /load PATH   load a saved conversation (refused if made by another model)
  /reset       start over
  /set NAME VALUE  change a sampling setting: temperature, top-p, top-k, max-tokens, seed
  /help        this help
  /bye         leave (also /quit, Ctrl-D)
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt chat", description=__doc__.splitlines()[0], epilog=HELP + KEYS,
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
    from tinygpt.repl import describe_model, random_init_note, run_repl, set_command
    from tinygpt.runtime.transcript import Transcript

    conv = SimpleNamespace(transcript=Transcript(engine=engine), session=engine.new_session(), params=params)

    def reset() -> None:
        conv.transcript, conv.session = Transcript(engine=engine), engine.new_session()
        print("(reset)")

    def message(line: str) -> None:
        msgs = [{"role": "system", "content": a.system}] if a.system and not conv.transcript.messages else []
        conv.transcript.add_messages(*msgs, {"role": "user", "content": line})
        gen = engine.stream(conv.transcript.ids, conv.params, session=conv.session)
        try:
            for ev in gen:
                sys.stdout.write(ev.text)
                sys.stdout.flush()
        finally:  # on Ctrl-C: settle the session before the REPL rewinds it
            gen.close()
        r = gen.result
        conv.transcript.add_output(r.output_ids, {"role": "assistant", "content": r.text},
                                   stopped_on_eos=r.finish_reason == "stop")
        print(f"\n[{len(r.output_ids)} tok, prefilled {r.prefill_tokens}, cached {r.cached_tokens}, "
              f"{r.decode_tps:.1f} tok/s]", file=sys.stderr)

    print(f"tinygpt chat — model {describe_model(engine.loaded)}. /help for commands.", file=sys.stderr)
    random_init_note(engine)
    return run_repl(engine=engine, conv=conv, help_text=HELP + KEYS, on_message=message, on_reset=reset,
                    extra={"/set": set_command(lambda: conv.params, lambda v: setattr(conv, "params", v))},
                    history="chat")
