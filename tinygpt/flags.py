"""argparse value types that check a value, so a bad flag is argparse's one-line error (exit 2).

`int_in(lo, hi)` / `float_in(lo, hi, lo_open=...)` build the `type=` callables; the message names the range.
`add_tool_format_flag` adds the one `--tool-format` flag the commands that write tool calls share (its choices
are the known tool-format names). This module only checks values; commands own their flags and defaults.
Light imports only (fast --help).
"""
from __future__ import annotations

import argparse
import math

SEED_MAX = 2**64 - 1  # MLX's random seed is an unsigned 64-bit integer


def _describe(lo, hi, lo_open: bool) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}]"


def int_in(lo: int, hi: int | None = None):
    """A `type=` for integers in [lo, hi] (hi None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {_describe(lo, hi, False)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float | None = None, lo_open: bool = False):
    """A `type=` for finite numbers in [lo, hi] ((lo, hi] with `lo_open`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_bad = value <= lo if lo_open else value < lo
        if not math.isfinite(value) or low_bad or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be a number {_describe(lo, hi, lo_open)}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def add_tool_format_flag(parser: argparse.ArgumentParser) -> None:
    """`--tool-format NAME` (dest tool_format, config key `tool_format`): an unknown name is argparse's error
    listing the known ones."""
    from tinygpt.runtime.tool_formats import FORMATS  # pure Python, no MLX

    parser.add_argument("--tool-format", default=None, choices=["auto", *FORMATS], metavar="NAME",
                        help=f"tool-call format: {', '.join(FORMATS)}, or auto (default: config `tool_format`, "
                             "else auto: the one the model's chat template writes)")
