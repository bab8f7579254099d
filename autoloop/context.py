"""What the engine tells a target's code while it runs, through environment variables.

`run`, `score` and `compare` execute in child processes; `propose` in the engine process. In all of them
the engine sets these variables, so library code (the LLM clients, for example) can record what it spent
without the target passing anything around:

    AUTOLOOP_RUN_ID          the run id
    AUTOLOOP_ITER            the iteration number
    AUTOLOOP_ITER_DIR        a per-iteration folder that survives the iteration (logs, call records)
    AUTOLOOP_COST_REMAINING  dollars left under --max-cost ("" = no cap); spend must stop before it
    AUTOLOOP_PHASE           propose | run | score | compare

LLM calls are appended as JSON lines to `$AUTOLOOP_ITER_DIR/llm_calls.jsonl`; the engine moves them into
the journal and the `llm_calls` table when the phase ends (a killed child still leaves its lines).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LLM_CALLS_FILE = "llm_calls.jsonl"

LLM_CALL_FIELDS = (
    "ts",  # unix time the call finished
    "provider",  # anthropic | openai-compatible | ...
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "latency_s",
    "cache_hit",  # served from the response cache: no HTTP request was made
    "status",  # ok | error
    "error",  # short error text (never a key)
    "retries",  # how many retries the call needed
    "request_hash",
    "purpose",  # task | propose | ...
)


def iter_dir() -> Path | None:
    d = os.environ.get("AUTOLOOP_ITER_DIR")
    return Path(d) if d else None


def current_iter() -> int | None:
    v = os.environ.get("AUTOLOOP_ITER")
    return int(v) if v not in (None, "") else None


def phase() -> str | None:
    return os.environ.get("AUTOLOOP_PHASE") or None


def cost_remaining() -> float | None:
    """Dollars the current phase may still spend, or None when there is no cap."""
    v = os.environ.get("AUTOLOOP_COST_REMAINING", "")
    return float(v) if v.strip() else None


def record_llm_call(record: dict[str, Any]) -> None:
    """Append one LLM call record (fields in LLM_CALL_FIELDS) where the engine will collect it.

    Outside an autoloop run (no AUTOLOOP_ITER_DIR) this does nothing: library code can call it always.
    """
    d = iter_dir()
    if d is None:
        return
    rec = {k: record.get(k) for k in LLM_CALL_FIELDS}
    rec["ts"] = rec["ts"] or time.time()
    rec["phase"] = phase()
    d.mkdir(parents=True, exist_ok=True)
    line = json.dumps(rec, default=str) + "\n"
    # O_APPEND writes of one short line are atomic between threads and processes on POSIX.
    fd = os.open(d / LLM_CALLS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
