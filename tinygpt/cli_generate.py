"""`tinygpt generate`: one prompt in, generated text out (streamed), with exact ids and timings on request."""
from __future__ import annotations

import argparse
import json
import sys

from tinygpt.flags import SEED_MAX, float_in, int_in
from tinygpt.model_arg import add_model_flag, load_engine, resolve

EPILOG = """examples:
  tinygpt generate "Write a haiku about caches"
  tinygpt generate --model models/q06 --max-tokens 64 --temperature 0.7 --seed 1 "Hello"
  tinygpt generate --raw --json "<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n"
"""


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int_in(1), default=128, help="maximum tokens to generate (default 128)")
    p.add_argument("--temperature", type=float_in(0.0), default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float_in(0.0, 1.0, lo_open=True), default=1.0,
                   help="nucleus sampling mass in (0, 1] (default 1.0 = off)")
    p.add_argument("--top-k", type=int_in(0), default=0, help="top-k sampling (default 0 = off)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=None, help="random seed for sampling")


def sampling_from(a):
    from tinygpt.runtime.sampling import SamplingParams

    params = SamplingParams(temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
                            max_tokens=a.max_tokens, seed=a.seed)
    params.check()
    return params


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt generate", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", help="the user message (or raw text with --raw); '-' reads standard input")
    add_model_flag(p)
    add_sampling_flags(p)
    p.add_argument("--raw", action="store_true", help="feed the prompt as-is, without the chat template")
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--json", action="store_true", help="print ids, logprobs, timings as JSON instead of streaming")
    a = p.parse_args(argv)
    try:
        prompt = sys.stdin.buffer.read().decode("utf-8") if a.prompt == "-" else a.prompt
    except UnicodeDecodeError:
        p.error("standard input is not UTF-8 text")
    engine = load_engine(resolve(a))  # before the sampling module's MLX import: a bad --model is reported at once
    try:
        params = sampling_from(a)
    except ValueError as exc:
        p.error(str(exc))
    if a.raw:
        ids = engine.encode(prompt)
    elif not engine.loaded.has_chat_template:
        p.error(f"the model in {engine.loaded.path} has no chat template; pass --raw to feed the prompt as plain text")
    else:
        msgs = ([{"role": "system", "content": a.system}] if a.system else []) + [{"role": "user", "content": prompt}]
        ids = engine.encode_chat(msgs)
    if not ids:
        p.error("the prompt encodes to no tokens")
    gen = engine.stream(ids, params)
    for ev in gen:
        if not a.json:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
    r = gen.result
    if a.json:
        print(json.dumps({"text": r.text, "prompt_ids": r.prompt_ids, "output_ids": r.output_ids,
                          "logprobs": r.logprobs, "finish_reason": r.finish_reason, "ttft_s": r.ttft_s,
                          "decode_tps": r.decode_tps, "cached_tokens": r.cached_tokens}))
    else:
        sys.stdout.write("\n")
        sys.stderr.write(f"[{len(r.output_ids)} tokens, {r.finish_reason}, ttft {r.ttft_s * 1000:.0f} ms, "
                         f"{r.decode_tps:.1f} tok/s]\n")
    return 0
