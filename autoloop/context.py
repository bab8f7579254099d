"""What the engine tells a target's code while it runs, through environment variables.

`run`, `score` and `compare` execute in child processes; `propose` in the engine process. In all of them
the engine sets these variables, so library code (the LLM clients, for example) can record what it spent
without the target passing anything around:

    AUTOLOOP_RUN_ID          the run id
    AUTOLOOP_ITER            the iteration number
    AUTOLOOP_ITER_DIR        a per-iteration folder that survives the iteration (logs, call records)
    AUTOLOOP_COST_REMAINING  dollars left under --max-cost when the iteration started ("" = no cap);
                             `cost_remaining()` subtracts what the iteration's calls have cost since
    AUTOLOOP_PHASE           propose | run | score | compare
    AUTOLOOP_CANDIDATE       <run>/<iter>/<phase> in child processes: marks everything a candidate starts
                             (see autoloop.reaper), so the engine can end it all when the phase ends

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
    """Dollars that may still be spent now, or None when there is no cap.

    Why the records count: propose, run and score of one iteration run in different processes, each
    told the same figure at the iteration's start; every call of every phase is appended to the
    iteration's record file before its reservation is released, so subtracting those records makes the
    cap hold across phases (a $1.00 cap cannot end at $1.09)."""
    v = os.environ.get("AUTOLOOP_COST_REMAINING", "")
    if not v.strip():
        return None
    return float(v) - iteration_spend()


_spend_cache: dict[str, tuple[int, int, float]] = {}  # path -> (inode, bytes read, dollars so far)


def iteration_spend() -> float:
    """Dollars recorded so far in this iteration's llm_calls.jsonl (read incrementally)."""
    d = iter_dir()
    if d is None:
        return 0.0
    path = d / LLM_CALLS_FILE
    try:
        st = path.stat()
    except OSError:
        return 0.0
    ino, pos, total = _spend_cache.get(str(path), (st.st_ino, 0, 0.0))
    if ino != st.st_ino or st.st_size < pos:
        pos, total = 0, 0.0
    if st.st_size > pos:
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written is counted next time
        for line in data[:end].splitlines():
            try:
                total += float(json.loads(line).get("cost_usd") or 0.0)
            except (ValueError, AttributeError):
                pass
        pos += end
    _spend_cache[str(path)] = (st.st_ino, pos, total)
    return total


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
