"""Anthropic Messages API through the official SDK, with autoloop's guarantees (see client_base).

The SDK's own retries are off (max_retries=0) so they never stack with ours; tenacity retries 408, 409,
429, 5xx (incl. 529 overloaded), connection drops and timeouts, honouring `retry-after`. The system
prompt is sent as one text block with `cache_control: ephemeral`, so the shared prefix (instructions +
demos) is billed at the cache-read rate on repeated calls; the cache tokens are read from `usage`.
`complete_batch` uses Message Batches (half price) for full-gold evaluations that can wait.
"""
from __future__ import annotations

import os
import time
from typing import Any

from autoloop.llm.client_base import BaseClient
from autoloop.llm.redact import redact, redact_reply, register_secret
from autoloop.llm.types import LLMRequest, LLMResult

DEFAULT_TASK_MODEL = "claude-haiku-4-5"
DEFAULT_PROPOSER_MODEL = "claude-sonnet-4-5"


class AnthropicClient(BaseClient):
    provider = "anthropic"

    def __init__(self, model: str | None = None, *, api_key: str | None = None, base_url: str | None = None,
                 prompt_cache: bool = True, send_temperature: bool = True, **kw: Any):
        super().__init__(model or os.environ.get("AUTOLOOP_TASK_MODEL") or DEFAULT_TASK_MODEL, **kw)
        import anthropic  # imported here: `import autoloop.llm` must stay light

        self._anthropic = anthropic
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        register_secret(key)
        self.prompt_cache = prompt_cache
        self.send_temperature = send_temperature  # models that reject `temperature`: pass False
        self.sdk = anthropic.Anthropic(api_key=key, base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                                       max_retries=0, timeout=self.timeout_s)

    def params(self, req: LLMRequest) -> dict[str, Any]:
        msgs = [dict(m) for m in req.messages]
        if self.prompt_cache and 0 < req.cache_prefix <= len(msgs):
            m = msgs[req.cache_prefix - 1]  # a breakpoint after the demos: system + demos are read from cache
            m["content"] = [{"type": "text", "text": str(m["content"]), "cache_control": {"type": "ephemeral"}}]
        p: dict[str, Any] = {"model": self.model, "max_tokens": int(req.max_tokens), "messages": msgs}
        if self.send_temperature:
            p["temperature"] = float(req.temperature)
        if req.system:
            block: dict[str, Any] = {"type": "text", "text": req.system}
            if self.prompt_cache:
                block["cache_control"] = {"type": "ephemeral"}
            p["system"] = [block]
        if req.stop:
            p["stop_sequences"] = list(req.stop)
        return p

    @staticmethod
    def _usage(msg: Any) -> dict[str, Any]:
        u = msg.usage
        return {
            "text": "".join(getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text"),
            "input_tokens": int(u.input_tokens or 0), "output_tokens": int(u.output_tokens or 0),
            "cache_read_tokens": int(getattr(u, "cache_read_input_tokens", 0) or 0),
            "cache_creation_tokens": int(getattr(u, "cache_creation_input_tokens", 0) or 0),
        }

    def _send(self, req: LLMRequest) -> dict[str, Any]:
        p = self.params(req)
        # This SDK's `create` has no `temperature` keyword; the API still takes it in the body.
        extra = {"temperature": p.pop("temperature")} if "temperature" in p else None
        return self._usage(self.sdk.messages.create(**p, extra_body=extra))

    def _retryable(self, exc: BaseException) -> bool:
        a = self._anthropic
        if isinstance(exc, a.APIConnectionError):  # includes APITimeoutError and dropped connections
            return True
        if isinstance(exc, a.APIStatusError):
            return exc.status_code in (408, 409, 429) or exc.status_code >= 500
        return False

    def _retry_after(self, exc: BaseException) -> float | None:
        resp = getattr(exc, "response", None)
        if resp is None:
            return None
        for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            v = resp.headers.get(name)
            if v:
                try:
                    return max(float(v) * scale, 0.0)
                except ValueError:
                    continue
        return None

    # -- Message Batches ---------------------------------------------------------------------------
    def complete_batch(self, reqs: list[LLMRequest], poll_s: float = 30.0, timeout_s: float = 24 * 3600) -> list[LLMResult]:
        """Answer `reqs` through one Message Batch (50% price). Cached requests are served locally;
        items the batch could not answer come back as ok=False. Raises BudgetExceeded before creating
        the batch when its worst case would pass the cap."""
        keys = [self.key(r) for r in reqs]
        out: list[LLMResult | None] = [None] * len(reqs)
        todo: list[int] = []
        for i, (r, k) in enumerate(zip(reqs, keys)):
            hit = self.cache.get(k) if self.cacheable(r) else None  # type: ignore[union-attr]
            if hit is not None:
                out[i] = LLMResult(text=hit["text"], ok=True, model=self.model_id, cache_hit=True, request_hash=k, tag=r.tag)
                self._record(out[i], r, http=0, provider="anthropic-batch")  # type: ignore[arg-type]
            else:
                todo.append(i)
        if not todo:
            return out  # type: ignore[return-value]
        reserved = self.budget.reserve(sum(self.max_cost(reqs[i], batch=True) for i in todo))
        t0 = time.time()
        spent = 0.0
        try:
            batch = self.sdk.messages.batches.create(
                requests=[{"custom_id": f"r{i}", "params": self.params(reqs[i])} for i in todo])
            while batch.processing_status != "ended":
                if time.time() - t0 > timeout_s:
                    self.sdk.messages.batches.cancel(batch.id)
                    break
                time.sleep(poll_s)
                batch = self.sdk.messages.batches.retrieve(batch.id)
            results = {e.custom_id: e.result for e in self.sdk.messages.batches.results(batch.id)} \
                if batch.processing_status == "ended" else {}
        except Exception as e:  # noqa: BLE001 - the whole batch failed: every item is an error, none an answer
            self.budget.settle(reserved, 0.0)
            err = redact(f"{type(e).__name__}: {e}")[:500]
            for i in todo:
                out[i] = LLMResult(text=None, ok=False, error=err, model=self.model_id, request_hash=keys[i], tag=reqs[i].tag)
                self._record(out[i], reqs[i], http=1, provider="anthropic-batch")  # type: ignore[arg-type]
            return out  # type: ignore[return-value]
        latency = time.time() - t0
        for i in todo:
            res = results.get(f"r{i}")
            if res is not None and res.type == "succeeded":
                u = self._usage(res.message)
                text = redact_reply(u.pop("text"))
                cost = self._cost(u, batch=True)
                spent += cost
                r = LLMResult(text=text, ok=True, model=self.model_id, input_tokens=u["input_tokens"],
                              output_tokens=u["output_tokens"], cache_read_tokens=u["cache_read_tokens"],
                              cache_creation_tokens=u["cache_creation_tokens"], cost_usd=cost, latency_s=latency,
                              request_hash=keys[i], tag=reqs[i].tag)
                if self.cacheable(reqs[i]):
                    self.cache.put(keys[i], self.provider, self.model_id, {"text": text, "usage": u})  # type: ignore[union-attr]
            else:
                why = "missing" if res is None else res.type
                detail = getattr(getattr(res, "error", None), "error", None)
                r = LLMResult(text=None, ok=False, error=redact(f"batch item {why}: {detail or ''}")[:500],
                              model=self.model_id, latency_s=latency, request_hash=keys[i], tag=reqs[i].tag)
            out[i] = r
            self._record(r, reqs[i], http=1, provider="anthropic-batch")
        self.budget.settle(reserved, spent)
        return out  # type: ignore[return-value]
