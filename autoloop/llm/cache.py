"""A response cache keyed by the full request, in SQLite (WAL) so several processes can share it.

Why: re-scoring an unchanged prompt on a gold item, or resuming after a crash, must cost no call.
Only deterministic requests (temperature 0) are cached; a hit makes no HTTP request at all.
Everything stored is redacted first (API keys, bearer tokens): the cache file outlives the key, is
copied with the runs folder, and a reply can echo a key.
Location: $AUTOLOOP_CACHE_DIR/llm_cache.sqlite, else beside the run history (the `runs/` folder that
holds history.duckdb, found from AUTOLOOP_ITER_DIR), else ./runs/llm_cache.sqlite.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from autoloop.llm.redact import redact_reply

FILE_NAME = "llm_cache.sqlite"


def request_key(provider: str, model: str, fields: dict[str, Any]) -> str:
    blob = json.dumps({"provider": provider, "model": model, **fields}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def default_cache_path() -> Path:
    d = os.environ.get("AUTOLOOP_CACHE_DIR", "").strip()
    if d:
        return Path(d).expanduser() / FILE_NAME
    runs = os.environ.get("AUTOLOOP_RUNS_DIR", "").strip()
    if runs:
        return Path(runs).expanduser() / FILE_NAME
    it = os.environ.get("AUTOLOOP_ITER_DIR", "").strip()
    if it:
        for parent in Path(it).resolve().parents:
            if (parent / "history.duckdb").exists() or parent.name == "runs":
                return parent / FILE_NAME
    return Path("runs") / FILE_NAME


class ResponseCache:
    """get/put of JSON responses; each operation opens its own connection (safe across threads/processes)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, provider TEXT, model TEXT,"
                " response TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _conn(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        c.execute("PRAGMA busy_timeout=60000")
        return c

    def get(self, key: str) -> dict[str, Any] | None:
        c = self._conn()
        try:
            row = c.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
        finally:
            c.close()
        return json.loads(row[0]) if row else None

    def put(self, key: str, provider: str, model: str, response: dict[str, Any]) -> None:
        c = self._conn()
        try:
            c.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?)",
                      (key, provider, model, redact_reply(json.dumps(response)), time.time()))
        finally:
            c.close()

    def __len__(self) -> int:
        c = self._conn()
        try:
            return c.execute("SELECT count(*) FROM responses").fetchone()[0]
        finally:
            c.close()
