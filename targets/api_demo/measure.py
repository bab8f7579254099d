"""Measure services interleaved (block by block, A B B A ...) over several repeats; results -> Scores.

Interleaving puts both configs under the same background load (other processes share the CPU),
so the per-repeat pairs can be compared with a paired bootstrap.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from api_demo import config as knobs
from api_demo import data
from api_demo.replay import ReplayResult, replay
from api_demo.service import ServiceProcess
from api_demo.stats import percentile
from autoloop.target import Scores

SERVER = Path(__file__).with_name("server.py")


def demo_service(cfg: dict[str, Any], base_db: Path, workdir: Path) -> ServiceProcess:
    """A not-yet-started demo service: its own copy of the database with the config's indexes."""
    import json
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    db = data.prepare_instance_db(base_db, workdir / "instance.sqlite", knobs.indexes(cfg))
    (workdir / "config.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, str(SERVER), "--db", str(db), "--config", str(workdir / "config.json"),
           "--port-file", "{port_file}"]
    return ServiceProcess(cmd, workdir=workdir, port_from_file=True)


def measure_interleaved(services: list[ServiceProcess], calls: list[dict], repeats: int, concurrency: int,
                        warmup: int = 20, blocks: int = 8) -> list[list[ReplayResult]]:
    """Replay the calls `repeats` times on every (started) service, interleaved finely.

    Each repeat cuts the call list into `blocks` consecutive blocks and plays block k on every service
    before block k+1 (order A B, then B A, ...). Each service still sees the whole sequence in order
    (writes stay where they are), while a burst of background load lasting seconds hits all services
    alike instead of one whole replay: the paired per-repeat p95s then differ by the configs, not by luck.
    """
    warm = [c for c in calls if not c.get("barrier")][:warmup]
    for s in services:
        replay(s.port, warm, concurrency)
    size = max(1, -(-len(calls) // max(1, blocks)))
    chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
    out: list[list[ReplayResult]] = [[] for _ in services]
    order = list(range(len(services)))
    for _ in range(repeats):
        merged = [ReplayResult() for _ in services]
        for chunk in chunks:
            for i in order:
                r = replay(services[i].port, chunk, concurrency)
                merged[i].latency_ms.update(r.latency_ms)
                merged[i].correct.update(r.correct)
                merged[i].errors.update(r.errors)
            order.reverse()
        for i in range(len(services)):
            out[i].append(merged[i])
    return out


def scores_from(results: list[ReplayResult], info: dict[str, Any] | None = None) -> Scores:
    """score = pooled p95 (ms) / correctness (inf when nothing is correct); items rep0.. = per-repeat p95."""
    lat = [ms for r in results for ms in r.latency_ms.values()]
    ok = [v for r in results for v in r.correct.values()]
    correctness = sum(ok) / len(ok) if ok else 0.0
    p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
    score = p95 / correctness if correctness > 0 else math.inf
    wrong = sorted({cid for r in results for cid, good in r.correct.items() if not good})
    errs = {cid: e for r in results for cid, e in r.errors.items()}
    summary = {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3),
               "correctness": round(correctness, 4), "repeats": len(results), "calls": len(lat),
               "wrong_calls": wrong[:20], **(info or {})}
    return Scores(
        score=score,
        components={"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "correctness": correctness},
        items={f"rep{i}": r.p(95) for i, r in enumerate(results)},
        info=summary,
        feedback=[{"call": cid, "error": errs.get(cid, "")} for cid in wrong[:50]],
    )
