"""`tinygpt train-tokenizer DATA... --vocab-size N --out DIR`: train a byte-level BPE tokenizer on a corpus.

The result is a tokenizer directory (tokenizer.json, tokenizer_config.json, chat_template.jinja, tinygpt.json)
with a chat model's special tokens and tinygpt's ChatML template with tools (Hermes tool calls), for
`tinygpt pretrain --tokenizer DIR`; transformers' AutoTokenizer and mlx-lm load it as it is. Writes only a new or
empty directory. Progress goes to stderr; the result line (or --json) to stdout. Exit 2 for bad input.
"""
from __future__ import annotations

import argparse
import json

from tinygpt.flags import int_in

EPILOG = """examples:
  tinygpt train-tokenizer corpus/ --vocab-size 8192 --out tokenizers/mine
  tinygpt train-tokenizer books.txt chats.jsonl --vocab-size 32000 --min-frequency 5 --out tokenizers/big
  then: tinygpt pretrain corpus/ --tokenizer tokenizers/mine --out runs/base

corpus: .txt / .md files (one document each), .jsonl files ({"text": ...}; chat {"messages", "tools"} and
{"prompt", "completion"} records rendered with the ChatML template, so the template's text is in the
statistics), or directories of them. --vocab-size counts everything: the 256 byte tokens, the merges and the
special tokens <|endoftext|> <|im_start|> <|im_end|> <tool_call> </tool_call> <tool_response> </tool_response>
<think> </think> (added at the end, as Qwen's are). A small corpus may stop short of it: no pair is left that
occurs --min-frequency times; the result says the size reached. See docs/trainer.md, "Pretraining".
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tinygpt train-tokenizer", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA", help="corpus files or directories")
    p.add_argument("--vocab-size", type=int_in(1), required=True, help="the tokenizer's size, special tokens included")
    p.add_argument("--min-frequency", type=int_in(1), default=2,
                   help="a pair must occur this often to be merged (default 2)")
    p.add_argument("--out", required=True, help="directory to create (new or empty)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    from tinygpt.trainer.tokenizer_train import train_tokenizer

    report = train_tokenizer(a.data, a.out, vocab_size=a.vocab_size, min_frequency=a.min_frequency)
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        short = "" if report["vocab_size"] == a.vocab_size else \
            f" (asked for {a.vocab_size}: the corpus ran out of pairs)"
        print(f"trained a {report['vocab_size']:,}-token BPE{short} on {report['documents']:,} documents "
              f"({report['bytes']:,} bytes) in {report['seconds']:.1f} s: {report['path']}\n"
              f"then: tinygpt pretrain DATA --tokenizer {report['path']} --out RUN")
    return 0
