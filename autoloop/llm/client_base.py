"""What every LLM client shares: response cache, dollar cap, retries, bounded concurrency, call records.

Providers subclass `BaseClient` and implement only `_send` (one HTTP request, no retries) and the
error classification. Why one place: the guarantees (an error is never an answer, no call over the
cap, no key in a record) must not differ between Anthropic and a local server.
"""
from __future__ import annotations

import abc
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from autoloop import context
from autoloop.llm.budget import Budget, default_budget, max_cost
from autoloop.llm.cache import ResponseCache, request_key
from autoloop.llm.prices import Price, price_for
from autoloop.llm.redact import redact, redact_reply
from autoloop.llm.types import BudgetExceeded, LLMRequest, LLMResult


@dataclass
class CallStats:
    """Running totals for this client, for Scores.info (calls, dollars) without reading the records back."""

    calls: int = 0
    http_calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, r: LLMResult, http: int) -> None:
        with self._lock:
            self.calls += 1
            self.http_calls += http
            self.cache_hits += int(r.cache_hit)
            self.errors += int(not r.ok)
            self.retries += r.retries
            self.cost_usd += r.cost_usd
            self.input_tokens += r.input_tokens
            self.output_tokens += r.output_tokens
            self.cache_read_tokens += r.cache_read_tokens

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def default_timeout_s() -> float:
    """Seconds to wait for one response: $AUTOLOOP_LLM_TIMEOUT_S, else 120. A local model on a CPU shared with a
    training run can need longer; a timed-out request is retried, and the server still does the abandoned work."""
    raw = os.environ.get("AUTOLOOP_LLM_TIMEOUT_S", "").strip()
    if not raw:
        return 120.0
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise ValueError(f"AUTOLOOP_LLM_TIMEOUT_S={raw!r}: not a positive number of seconds; set e.g. 600 or unset it")
    return v


class BaseClient(abc.ABC):
    provider = "base"

    def __init__(self, model: str, *, model_id: str | None = None, cache: ResponseCache | bool | None = True,
                 budget: Budget | None = None, max_concurrency: int = 4, max_attempts: int = 6,
                 backoff_s: float = 1.0, max_wait_s: float = 60.0, timeout_s: float | None = None,
                 price: Price | None = None):
        self.model = model
        self.model_id = model_id or model  # what the cache and records name (a local server says "default_model")
        self.cache = ResponseCache() if cache is True else (cache if isinstance(cache, ResponseCache) else None)
        self.budget = budget or default_budget()
        self.max_concurrency = max(1, int(max_concurrency))
        self._sem = threading.BoundedSemaphore(self.max_concurrency)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s if timeout_s is not None else default_timeout_s()
        self.price = price or price_for(self.model_id, self.provider)
        self.stats = CallStats()

    # -- provider hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def _send(self, req: LLMRequest) -> dict[str, Any]:
        """One request, no retries. Returns text and token counts."""

    @abc.abstractmethod
    def _retryable(self, exc: BaseException) -> bool:
        """Whether a failed request may be tried again (429, 529, 5xx, connection errors, timeouts)."""

    def _retry_after(self, exc: BaseException) -> float | None:
        return None

    def _cost(self, usage: dict[str, Any], batch: bool = False) -> float:
        return self.price.cost(usage.get("input_tokens", 0), usage.get("output_tokens", 0),
                               usage.get("cache_read_tokens", 0), usage.get("cache_creation_tokens", 0), batch=batch)

    # -- shared behaviour -----------------------------------------------------------------------
    def cacheable(self, req: LLMRequest) -> bool:
        return self.cache is not None and float(req.temperature) == 0.0

    def key(self, req: LLMRequest) -> str:
        return request_key(self.provider, self.model_id, req.key_fields())

    def max_cost(self, req: LLMRequest, batch: bool = False) -> float:
        chars = len(req.system) + sum(len(str(m.get("content", ""))) for m in req.messages)
        return max_cost(self.price, chars, req.max_tokens, batch=batch)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = self._retry_after(exc) if exc is not None else None
        if after is not None:  # the server said when; add a little jitter so parallel callers spread out
            return min(after * (1.0 + 0.1 * random.random()), self.max_wait_s)
        return wait_random_exponential(multiplier=self.backoff_s, max=self.max_wait_s)(state)

    def complete(self, req: LLMRequest) -> LLMResult:
        """Answer one request. API failures come back as `ok=False` (never raised, never a wrong answer);
        BudgetExceeded is raised: the caller must stop spending."""
        key = self.key(req)
        t0 = time.time()
        if self.cacheable(req):
            hit = self.cache.get(key)  # type: ignore[union-attr]
            if hit is not None:
                r = LLMResult(text=hit["text"], ok=True, model=self.model_id, cache_hit=True,
                              latency_s=time.time() - t0, request_hash=key, tag=req.tag)
                self._record(r, req, http=0)
                return r
        reserved = self.budget.reserve(self.max_cost(req))
        attempts = 0
        usage: dict[str, Any] = {}
        text: str | None = None
        err = ""
        try:
            with self._sem:
                t0 = time.time()
                for attempt in Retrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                        retry=retry_if_exception(self._retryable), reraise=True):
                    with attempt:
                        attempts += 1
                        usage = self._send(req)
                        text = usage.pop("text")
        except BudgetExceeded:
            raise
        except Exception as e:  # noqa: BLE001 - every API failure becomes a recorded error, not an answer
            err = redact(f"{type(e).__name__}: {e}")[:500]
        cost = self._cost(usage) if text is not None else 0.0
        if text is not None:
            text = redact_reply(text)  # a reply that echoes a key must not carry it into the cache, a log or git
        r = LLMResult(text=text, ok=text is not None, error=err, model=self.model_id,
                      input_tokens=int(usage.get("input_tokens", 0)), output_tokens=int(usage.get("output_tokens", 0)),
                      cache_read_tokens=int(usage.get("cache_read_tokens", 0)),
                      cache_creation_tokens=int(usage.get("cache_creation_tokens", 0)),
                      cost_usd=cost, latency_s=time.time() - t0, retries=max(attempts - 1, 0),
                      request_hash=key, tag=req.tag)
        try:
            if r.ok and self.cacheable(req):
                self.cache.put(key, self.provider, self.model_id, {"text": text, "usage": usage})  # type: ignore[union-attr]
            self._record(r, req, http=attempts)
        finally:
            # Released only once the call is on record: the cap never loses sight of its cost in between.
            self.budget.settle(reserved, cost)
        return r

    def complete_many(self, reqs: list[LLMRequest]) -> list[LLMResult]:
        """Answer many requests concurrently (bounded); results in input order. If the budget refuses one,
        the rest are not started and BudgetExceeded is raised after the running ones finish."""
        if not reqs:
            return []
        stop = threading.Event()

        def one(req: LLMRequest) -> LLMResult | BudgetExceeded:
            if stop.is_set():
                return BudgetExceeded("not started: an earlier call was refused by the budget")
            try:
                return self.complete(req)
            except BudgetExceeded as e:
                stop.set()
                return e

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            out = list(pool.map(one, reqs))
        for o in out:
            if isinstance(o, BudgetExceeded):
                raise o
        return out  # type: ignore[return-value]

    def _record(self, r: LLMResult, req: LLMRequest, http: int, provider: str | None = None) -> None:
        self.stats.add(r, http)
        context.record_llm_call({
            "ts": time.time(), "provider": provider or self.provider, "model": self.model_id,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cache_read_tokens": r.cache_read_tokens, "cache_creation_tokens": r.cache_creation_tokens,
            "cost_usd": r.cost_usd, "latency_s": round(r.latency_s, 4), "cache_hit": r.cache_hit,
            "status": "ok" if r.ok else "error", "error": r.error or None, "retries": r.retries,
            "request_hash": r.request_hash, "purpose": req.purpose,
        })
