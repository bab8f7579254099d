"""The hard dollar cap, enforced before spending.

The engine tells every phase how many dollars remained when the iteration started
(AUTOLOOP_COST_REMAINING); `context.cost_remaining()` subtracts what the iteration's calls recorded
since, in any phase or process. A call reserves its worst-case cost (all input at cache-write price,
all `max_tokens` at output price) before it is sent; concurrent calls see each other's reservations, so
together they can never exceed the cap. After the call it is recorded, then the reservation released.
"""
from __future__ import annotations

import threading

from autoloop import context
from autoloop.llm.prices import Price
from autoloop.llm.types import BudgetExceeded

CHARS_PER_TOKEN = 3.0  # conservative: English averages ~4 characters per token, JSON and code fewer


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 8


def max_cost(price: Price, prompt_chars: int, max_tokens: int, batch: bool = False) -> float:
    """Upper bound on one call's cost: input priced at the dearer of input and cache-write rates."""
    tokens_in = int(prompt_chars / CHARS_PER_TOKEN) + 64  # message framing and chat-template overhead
    cw = price.cache_write if price.cache_write is not None else 1.25 * price.input
    usd = (tokens_in * max(price.input, cw) + max_tokens * price.output) / 1e6
    return usd * (0.5 if batch else 1.0)


class Budget:
    """Process-wide spend tracker; `cap` None means read the engine's remaining budget."""

    def __init__(self, cap: float | None = None):
        self._cap = cap
        self._lock = threading.Lock()
        self.spent = 0.0
        self.reserved = 0.0

    def cap(self) -> float | None:
        return self._cap if self._cap is not None else context.cost_remaining()

    def _sync_context(self) -> None:
        """The engine's remaining budget already excludes what earlier phases spent: when the phase or
        iteration changes (a long-lived engine process calling propose), start counting from zero."""
        import os

        ctx = (os.environ.get("AUTOLOOP_RUN_ID"), os.environ.get("AUTOLOOP_ITER"), os.environ.get("AUTOLOOP_PHASE"),
               os.environ.get("AUTOLOOP_COST_REMAINING"))
        if self._cap is None and getattr(self, "_ctx", ctx) != ctx:
            self.spent = 0.0
        self._ctx = ctx

    def available(self) -> float | None:
        """Dollars a new reservation may take now (None: no cap)."""
        cap = self.cap()
        if cap is None:
            return None
        if self._cap is None and context.iter_dir() is not None:
            return cap - self.reserved  # inside a run: settled calls are already in the iteration's records
        return cap - self.spent - self.reserved

    def reserve(self, usd: float) -> float:
        with self._lock:
            self._sync_context()
            left = self.available()
            if left is not None and usd > left + 1e-12:
                raise BudgetExceeded(
                    f"call refused: it could cost ${usd:.4f} but only ${max(left, 0):.4f} "
                    f"of the budget is left; raise --max-cost or lower max_tokens"
                )
            self.reserved += usd
            return usd

    def settle(self, reserved: float, actual: float) -> None:
        with self._lock:
            self.reserved = max(self.reserved - reserved, 0.0)
            self.spent += actual


_default = Budget()


def default_budget() -> Budget:
    return _default
