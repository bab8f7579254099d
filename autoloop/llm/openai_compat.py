"""A plain-HTTP client for OpenAI-compatible servers (/v1/chat/completions), e.g. a local mlx_lm.server.

Same guarantees as the Anthropic client (cache, cap, retries, records). Local servers cost $0 unless
the price table names the model. Requests carry no `seed`: mlx_lm.server batches only seedless
requests, and concurrent requests are what make the 2-core CPU fast (~4x tokens/s at 8 wide).
"""
from __future__ import annotations

import email.utils
import os
import time
from typing import Any

import httpx

from autoloop.llm.client_base import BaseClient
from autoloop.llm.redact import register_secret
from autoloop.llm.types import LLMRequest


class HTTPStatusError(Exception):
    def __init__(self, status: int, body: str, retry_after: float | None):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.retry_after = retry_after


def _parse_retry_after(v: str | None) -> float | None:
    if not v:
        return None
    try:
        return max(float(v), 0.0)
    except ValueError:
        d = email.utils.parsedate_to_datetime(v) if v else None
        return max(d.timestamp() - time.time(), 0.0) if d else None


class OpenAICompatClient(BaseClient):
    provider = "openai-compatible"

    def __init__(self, base_url: str, model: str = "default_model", *, api_key: str | None = None,
                 before_send: Any = None, **kw: Any):
        super().__init__(model, **kw)
        self.before_send = before_send  # e.g. start a local server only when the cache cannot answer
        self.base_url = base_url.rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        register_secret(key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout_s,
                                 limits=httpx.Limits(max_connections=self.max_concurrency + 2))

    def _send(self, req: LLMRequest) -> dict[str, Any]:
        if self.before_send is not None:
            self.before_send()
        msgs = ([{"role": "system", "content": req.system}] if req.system else []) + list(req.messages)
        body: dict[str, Any] = {"model": self.model, "messages": msgs, "max_tokens": int(req.max_tokens),
                                "temperature": float(req.temperature)}
        if req.stop:
            body["stop"] = list(req.stop)
        resp = self.http.post("/v1/chat/completions", json=body)
        if resp.status_code >= 400:
            raise HTTPStatusError(resp.status_code, resp.text, _parse_retry_after(resp.headers.get("retry-after")))
        data = resp.json()
        u = data.get("usage") or {}
        return {"text": data["choices"][0]["message"].get("content") or "",
                "input_tokens": int(u.get("prompt_tokens") or 0), "output_tokens": int(u.get("completion_tokens") or 0)}

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, httpx.TransportError):  # connect/read errors, timeouts, dropped connections
            return True
        return isinstance(exc, HTTPStatusError) and (exc.status in (408, 409, 429) or exc.status >= 500)

    def _retry_after(self, exc: BaseException) -> float | None:
        return getattr(exc, "retry_after", None)

    def close(self) -> None:
        self.http.close()
