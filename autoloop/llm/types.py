"""Plain data passed between targets and LLM clients (no SDK imports, so `import autoloop.llm` stays light)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class LLMError(Exception):
    """A call failed after all retries. Callers must treat it as "no answer", never as a wrong answer."""


class BudgetExceeded(Exception):
    """Refused before sending: the call could cost more than the dollars left under --max-cost."""


@dataclass
class LLMRequest:
    """One chat request. `system` is the shared prefix (cached by the provider when it can be)."""

    messages: list[dict[str, Any]]
    system: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    stop: list[str] | None = None
    purpose: str = "task"
    cache_prefix: int = 0  # the first N messages (e.g. few-shot demos) are a shared prefix worth caching
    tag: str = ""  # caller's label (e.g. gold item id); not part of the cache key

    def key_fields(self) -> dict[str, Any]:
        """Everything that changes the answer: what the response cache is keyed by."""
        return {
            "system": self.system,
            "messages": self.messages,
            "max_tokens": int(self.max_tokens),
            "temperature": float(self.temperature),
            "stop": list(self.stop or []),
        }


@dataclass
class LLMResult:
    """The outcome of one request: text when ok, else `error` (already redacted)."""

    text: str | None
    ok: bool
    error: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hit: bool = False
    retries: int = 0
    request_hash: str = ""
    tag: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def unwrap(self) -> str:
        if not self.ok or self.text is None:
            raise LLMError(self.error or "no answer")
        return self.text
