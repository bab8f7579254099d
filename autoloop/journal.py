"""The append-only, fsync'd JSONL journal of one run: the source of truth for everything else.

DuckDB is rebuilt from journals (`autoloop db rebuild`), the History a proposer sees is replayed from it,
and resume reconciles git tags against it. One event per line, numbered by `seq`; a torn last line
(kill -9 mid-write) is ignored on read and cut off before the next append.

Event kinds: run_start, run_resume, iter_start, iter_end, llm_calls, note, run_end.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from autoloop.history import History, IterationRecord

JOURNAL = "journal.jsonl"


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn write at the end: never acknowledged, so never happened
            try:
                events.append(json.loads(raw))
            except json.JSONDecodeError:
                break
    return events


class Journal:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / JOURNAL
        self._truncate_torn_tail()
        self._events = read_events(self.path)  # this process is the only writer: keep a copy in memory
        self.seq = self._events[-1]["seq"] if self._events else 0

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1
        if good != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        event = {"seq": self.seq, "ts": time.time(), "kind": kind, **fields}
        line = (json.dumps(event, default=str, allow_nan=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:  # a full disk can take part of a line: finish it or take it back
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, size)  # never leave half a line for the next append to follow
                except OSError:
                    pass
                raise OSError(e.errno, e.strerror, str(self.path)) from None
        finally:
            os.close(fd)
        self._events.append(json.loads(line))
        return event

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)


def replay(events: list[dict[str, Any]], run_dir: Path | None = None) -> History:
    """Fold journal events into the History a proposer sees (finished iterations only)."""
    start = next((e for e in events if e["kind"] == "run_start"), {})
    hist = History(run_id=start.get("run_id", ""), direction=start.get("direction", "max"), run_dir=run_dir)
    open_iters: dict[int, dict] = {}
    for e in events:
        if e["kind"] == "iter_start":
            open_iters[e["iter"]] = e
        elif e["kind"] == "iter_end":
            s = open_iters.pop(e["iter"], {})
            scores = e.get("scores") or {}
            fb = (run_dir / "iters" / f"{e['iter']:03d}" / "feedback.json") if run_dir else None
            hist.iterations.append(IterationRecord(
                iter=e["iter"], status=e["status"],
                params=(s.get("candidate") or {}).get("params", {}),
                description=(s.get("candidate") or {}).get("description", ""),
                score=_num(scores.get("score")), components=scores.get("components") or {},
                items=scores.get("items") or {}, info=scores.get("info") or {},
                cost_usd=float(e.get("cost_usd") or 0.0), tag=e.get("tag"), commit=e.get("commit"),
                reason=e.get("reason") or e.get("error") or "", feedback_path=fb,
            ))
    return hist


def _num(v: Any) -> float | None:
    if v is None:
        return None
    return float(v)
