"""Replay benchmark calls against a running service with bounded concurrency; measure and check.

Calls run `concurrency` at a time on keep-alive connections; a call marked "barrier" (a write)
waits for everything before it and finishes before anything after it starts, so the expected
answers do not depend on scheduling.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from api_demo.reference import response_hash
from api_demo.stats import percentile
from autoloop.target import TargetError


@dataclass
class ReplayResult:
    latency_ms: dict[str, float] = field(default_factory=dict)  # call id -> ms
    correct: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # call id -> transport error / status
    block: dict[str, int] = field(default_factory=dict)  # call id -> interleaving block it was measured in
    endpoint: dict[str, str] = field(default_factory=dict)  # call id -> "GET /profiles/{id}"

    def p(self, q: float) -> float:
        return percentile(list(self.latency_ms.values()), q)

    @property
    def correctness(self) -> float:
        return sum(self.correct.values()) / len(self.correct) if self.correct else 0.0


def load_calls(path: Path) -> tuple[dict, list[dict]]:
    """(meta, calls) from a calls file; TargetError names the line on any fault."""
    meta, calls = {}, []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise TargetError(f"{path}: cannot read the calls file ({e.strerror}); pass an existing JSONL file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TargetError(f"{path}:{n}: invalid JSON ({e.msg}); one JSON object per line") from None
        if "_meta" in obj:
            meta = obj["_meta"]
            continue
        if not isinstance(obj.get("path"), str) or not obj["path"].startswith("/"):
            raise TargetError(f'{path}:{n}: each call needs "path" starting with "/", e.g. {{"path": "/health"}}')
        obj.setdefault("id", f"line{n}")
        obj.setdefault("method", "GET")
        obj.setdefault("barrier", obj["method"] != "GET")
        calls.append(obj)
    if not calls:
        raise TargetError(f"{path}: holds no calls; add one JSON object per line with at least a path")
    return meta, calls


class _Client:
    """One keep-alive connection per worker thread; all closed at the end."""

    def __init__(self, port: int, timeout_s: float):
        self.port, self.timeout_s = port, timeout_s
        self.local = threading.local()
        self.all: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()

    def call(self, c: dict) -> tuple[float, int | None, object, str]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            with self.lock:
                self.all.append(conn)
        body = None if c.get("body") is None else json.dumps(c["body"]).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        t0 = time.perf_counter()
        try:
            conn.request(c["method"], c["path"], body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            ms = (time.perf_counter() - t0) * 1000
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            return (time.perf_counter() - t0) * 1000, None, None, f"{type(e).__name__}: {e}"
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw.decode(errors="replace")
        return ms, resp.status, obj, ""

    def close(self) -> None:
        for c in self.all:
            c.close()


def endpoint_of(call: dict) -> str:
    """The endpoint a call exercises: method and path with numeric segments and the query left out."""
    path = call["path"].split("?", 1)[0]
    return call.get("method", "GET") + " " + "/".join("{id}" if seg.isdigit() else seg for seg in path.split("/"))


def replay(port: int, calls: list[dict], concurrency: int = 4, timeout_s: float = 10.0) -> ReplayResult:
    res = ReplayResult()
    client = _Client(port, timeout_s)

    def one(c: dict) -> None:
        ms, status, obj, err = client.call(c)
        res.latency_ms[c["id"]] = ms
        res.endpoint[c["id"]] = endpoint_of(c)
        if err:
            res.errors[c["id"]] = err
            res.correct[c["id"]] = False
            return
        if c.get("expect") is not None:
            ok = response_hash(status, obj) == c["expect"]
        else:  # no recorded answer: the status must match (default: any 2xx)
            ok = status == c["expect_status"] if "expect_status" in c else 200 <= status < 300
        res.correct[c["id"]] = ok
        if not ok:
            res.errors[c["id"]] = f"status {status}: response differs from expected"

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            pending = []
            for c in calls:
                if c.get("barrier"):
                    for f in pending:
                        f.result()
                    pending = []
                    pool.submit(one, c).result()
                else:
                    pending.append(pool.submit(one, c))
            for f in pending:
                f.result()
    finally:
        client.close()
    return res
