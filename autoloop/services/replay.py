"""Replay calls against a running service with bounded concurrency; measure each call and check its answer.

With concurrency 1 (the default) calls run one at a time, in file order, on one keep-alive connection:
each latency is the service's own time for that call. With concurrency k, k calls are in flight at once on
k connections (queueing in the service then counts too); a call marked "barrier" (default: every write)
waits for everything before it and finishes before anything after it starts, so the expected answers do
not depend on scheduling.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

from autoloop.services.calls import canonical, parse_body
from autoloop.services.stats import percentile


@dataclass
class ReplayResult:
    latency_ms: dict[str, float] = field(default_factory=dict)  # call id -> ms
    correct: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # call id -> transport error / status
    block: dict[str, int] = field(default_factory=dict)  # call id -> interleaving block it was measured in
    endpoint: dict[str, str] = field(default_factory=dict)  # call id -> "GET /profiles/{id}"
    answers: dict[str, str] = field(default_factory=dict)  # call id -> sha256 of the canonical answer
    status: dict[str, int | None] = field(default_factory=dict)  # call id -> HTTP status (None: no answer)
    excerpt: dict[str, str] = field(default_factory=dict)  # call id -> the canonical answer (its first 4000 chars)

    def p(self, q: float) -> float:
        return percentile(list(self.latency_ms.values()), q)

    @property
    def correctness(self) -> float:
        return sum(self.correct.values()) / len(self.correct) if self.correct else 0.0

    def update(self, other: "ReplayResult", block: int | None = None) -> None:
        for name in ("latency_ms", "correct", "errors", "endpoint", "answers", "status", "excerpt"):
            getattr(self, name).update(getattr(other, name))
        if block is not None:
            self.block.update({cid: block for cid in other.latency_ms})


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
        headers = dict(c.get("headers") or {})
        body = c.get("body")
        if body is None:
            data = None
        elif isinstance(body, str) and any(k.lower() == "content-type" for k in headers):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        t0 = time.perf_counter()
        try:
            conn.request(c["method"], c["path"], body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            ms = (time.perf_counter() - t0) * 1000
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            return (time.perf_counter() - t0) * 1000, None, None, f"{type(e).__name__}: {e}"
        return ms, resp.status, parse_body(raw), ""

    def close(self) -> None:
        for c in self.all:
            c.close()


def endpoint_of(call: dict) -> str:
    """The endpoint a call exercises: method and path with numeric segments and the query left out."""
    path = call["path"].split("?", 1)[0]
    return call.get("method", "GET") + " " + "/".join("{id}" if seg.isdigit() else seg for seg in path.split("/"))


def expected_hash(call: dict, expected: dict[str, str] | None) -> str | None:
    """The answer a call must give: its own "expect", else the recorded one; None = status check only."""
    if call.get("volatile"):
        return None
    return call.get("expect") or (expected or {}).get(call["id"])


def status_ok(call: dict, status: int | None) -> bool:
    if status is None:
        return False
    return status == call["expect_status"] if "expect_status" in call else 200 <= status < 300


def replay(port: int, calls: list[dict], concurrency: int = 1, timeout_s: float = 30.0,
           expected: dict[str, str] | None = None, ignore: Iterable[str] = ()) -> ReplayResult:
    """Play `calls` once against 127.0.0.1:port. `expected` maps call ids to answer hashes for calls
    without their own "expect"; `ignore` names answer keys left out of every comparison."""
    res = ReplayResult()
    client = _Client(port, timeout_s)
    ignore = frozenset(ignore)

    def one(c: dict) -> None:
        ms, status, obj, err = client.call(c)
        cid = c["id"]
        res.latency_ms[cid] = ms
        res.endpoint[cid] = endpoint_of(c)
        res.status[cid] = status
        if err:
            res.errors[cid] = err
            res.correct[cid] = False
            return
        text = canonical(status, obj, ignore)
        res.answers[cid] = hashlib.sha256(text.encode()).hexdigest()
        res.excerpt[cid] = text[:4000]
        want = expected_hash(c, expected)
        ok = res.answers[cid] == want if want is not None else status_ok(c, status)
        res.correct[cid] = ok
        if not ok:
            res.errors[cid] = f"status {status}: " + ("answer differs from the expected one" if want is not None
                                                       else "unexpected status")

    try:
        if concurrency <= 1:
            for c in calls:
                one(c)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
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
