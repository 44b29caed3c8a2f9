"""The price table: USD per million input and output tokens, by model name, and what a call cost.

Shipped defaults are `prices.toml` next to this file (grouped by provider, for reading); the user's `[prices]`
table in backends.toml adds models and overrides shipped ones. A model without a price has no cost (None),
never a guessed one. Not here: reading backends.toml (backends.py) or counting tokens (the policies do).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

SHIPPED = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float


def shipped_prices() -> dict[str, Price]:
    """The defaults shipped with tinygpt, flattened across providers."""
    table = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    out: dict[str, Price] = {}
    for provider, models in table.items():
        out.update(parse_prices(models, f"{SHIPPED} [{provider}]"))
    return out


def parse_prices(table, where: str) -> dict[str, Price]:
    """`{model: {input = X, output = Y}}` as Prices; a malformed entry is a ValueError naming it."""
    if not isinstance(table, dict):
        raise ValueError(f"{where}: prices must be a table of models, e.g. \"gpt-4o\" = {{ input = 2.5, output = 10 }}")
    out = {}
    for model, entry in table.items():
        ok = isinstance(entry, dict) and set(entry) == {"input", "output"} and all(
            isinstance(entry[k], (int, float)) and not isinstance(entry[k], bool) and entry[k] >= 0
            for k in ("input", "output"))
        if not ok:
            raise ValueError(f"{where}: the price of {model!r} must be {{ input = USD, output = USD }} per million "
                             f"tokens, both >= 0; got {entry!r}")
        out[model] = Price(input=float(entry["input"]), output=float(entry["output"]))
    return out


def price_for(prices: dict[str, Price], *names: str) -> Price | None:
    """The price of the first of `names` listed exactly, else of the longest listed name one of them starts with
    (a dated model name takes its family's price); None if none matches."""
    for name in names:
        if name in prices:
            return prices[name]
    for name in names:
        starts = [listed for listed in prices if name.startswith(listed + "-")]
        if starts:
            return prices[max(starts, key=len)]
    return None


def cost_usd(price: Price | None, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """What a call cost, or None when the price or a token count is unknown."""
    if price is None or input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / 1e6
