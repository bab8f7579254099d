"""LLM clients for targets that spend API calls: Anthropic, OpenAI-compatible local servers, and proposers.

Importing this package is cheap: the SDKs load only when a client is built. Every call is priced,
cached when deterministic, capped by the run's dollar budget and recorded with
`autoloop.context.record_llm_call`, so the engine can put it in the `llm_calls` table.
"""
from __future__ import annotations

from autoloop.llm.types import BudgetExceeded, LLMError, LLMRequest, LLMResult

__all__ = ["BudgetExceeded", "LLMError", "LLMRequest", "LLMResult"]
