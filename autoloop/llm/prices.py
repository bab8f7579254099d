"""Dollar prices per million tokens, overridable by the user (AUTOLOOP_PRICES names a JSON or TOML file).

Why a table here: the dollar cap must be enforced before a call is sent, so every model needs a price,
and list prices change: users fix them without editing code. Override file format (per million tokens):

    {"claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.10}}

or the same as TOML tables (`[claude-haiku-4-5]` / `input = 1.0`). A model id matches the longest
table key it starts with ("claude-haiku-4-5-20251001" -> "claude-haiku-4-5"). Unknown Anthropic
models are priced at the most expensive known model, so a cap is never under-estimated.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from autoloop.target import TargetError


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float | None = None  # default 1.25 x input (5-minute ephemeral cache)
    cache_read: float | None = None  # default 0.1 x input

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
             batch: bool = False) -> float:
        cw = self.cache_write if self.cache_write is not None else 1.25 * self.input
        cr = self.cache_read if self.cache_read is not None else 0.10 * self.input
        usd = (input_tokens * self.input + output_tokens * self.output + cache_write * cw + cache_read * cr) / 1e6
        return usd * (0.5 if batch else 1.0)  # Message Batches cost half


DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4-0": Price(15.0, 75.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4-0": Price(3.0, 15.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "claude-3-haiku": Price(0.25, 1.25),
    "local": Price(0.0, 0.0),
}
FALLBACK = Price(15.0, 75.0)  # unknown paid model: assume the dearest, never under-estimate


def _load_override(path: Path) -> dict[str, Price]:
    try:
        text = path.read_text()
    except OSError as e:
        raise TargetError(f"AUTOLOOP_PRICES={path}: cannot read ({e.strerror}); point it at a JSON or TOML file") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise TargetError(f"AUTOLOOP_PRICES={path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({e}); fix the file") from None
    out: dict[str, Price] = {}
    for model, p in data.items():
        if not isinstance(p, dict) or "input" not in p or "output" not in p:
            raise TargetError(f"AUTOLOOP_PRICES={path}: entry {model!r} needs numbers 'input' and 'output' (USD per million tokens)")
        try:
            out[model] = Price(float(p["input"]), float(p["output"]),
                               None if p.get("cache_write") is None else float(p["cache_write"]),
                               None if p.get("cache_read") is None else float(p["cache_read"]))
        except (TypeError, ValueError):
            raise TargetError(f"AUTOLOOP_PRICES={path}: entry {model!r} has a non-numeric price; use numbers") from None
    return out


def price_table() -> dict[str, Price]:
    table = dict(DEFAULT_PRICES)
    override = os.environ.get("AUTOLOOP_PRICES", "").strip()
    if override:
        table.update(_load_override(Path(override).expanduser()))
    return table


def price_for(model: str, provider: str = "anthropic") -> Price:
    """The price of `model`; local OpenAI-compatible servers cost nothing unless the table names them."""
    table = price_table()
    matches = [k for k in table if model == k or model.startswith(k)]
    if matches:
        return table[max(matches, key=len)]
    return FALLBACK if provider == "anthropic" else table["local"]
