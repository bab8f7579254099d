"""Measure services interleaved (block by block, A B B A ...) over several repeats; results -> Scores.

Interleaving puts both configs under the same background load (other processes share the CPU).
Every latency is reported as an item "r<repeat>b<block>/<call id>": the engine's block bootstrap
("quantile_ratio") resamples whole (repeat, block) units, which were measured side by side in time.
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
        if warm:
            replay(s.port, warm, concurrency)
    size = max(1, -(-len(calls) // max(1, blocks)))
    chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
    out: list[list[ReplayResult]] = [[] for _ in services]
    order = list(range(len(services)))
    for _ in range(repeats):
        merged = [ReplayResult() for _ in services]
        for b, chunk in enumerate(chunks):
            for i in order:
                r = replay(services[i].port, chunk, concurrency)
                merged[i].block.update({cid: b for cid in r.latency_ms})
                merged[i].endpoint.update(r.endpoint)
                merged[i].latency_ms.update(r.latency_ms)
                merged[i].correct.update(r.correct)
                merged[i].errors.update(r.errors)
            order.reverse()
        for i in range(len(services)):
            out[i].append(merged[i])
    return out


def scores_from(results: list[ReplayResult], info: dict[str, Any] | None = None) -> Scores:
    """score = pooled p95 (ms) / correctness (inf when nothing is correct); items = every latency, by unit."""
    lat = [ms for r in results for ms in r.latency_ms.values()]
    ok = [v for r in results for v in r.correct.values()]
    correctness = sum(ok) / len(ok) if ok else 0.0
    p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
    score = p95 / correctness if correctness > 0 else math.inf
    wrong = sorted({cid for r in results for cid, good in r.correct.items() if not good})
    by_ep: dict[str, list[float]] = {}
    for r in results:
        for cid, ms in r.latency_ms.items():
            by_ep.setdefault(r.endpoint.get(cid, "?"), []).append(ms)
    ep_p95 = {ep: round(percentile(v, 95), 3) for ep, v in sorted(by_ep.items())}
    errs = {cid: e for r in results for cid, e in r.errors.items()}
    summary = {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3),
               "mean_ms": round(sum(lat) / len(lat), 3) if lat else math.nan,
               "endpoint_p95_ms": ep_p95, "gm_p95_ms": round(_geomean(ep_p95.values()), 4),
               "correctness": round(correctness, 4), "repeats": len(results), "calls": len(lat),
               "wrong_calls": wrong[:20], **(info or {})}
    return Scores(
        score=score,
        components={"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "correctness": correctness},
        items={f"r{i}b{r.block.get(cid, 0)}/{cid}": ms for i, r in enumerate(results) for cid, ms in r.latency_ms.items()},
        info=summary,
        feedback=[{"call": cid, "error": errs.get(cid, "")} for cid in wrong[:50]],
    )


def _geomean(values) -> float:
    vals = [max(float(v), 1e-6) for v in values]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan


def gm_ratio(cand_info: dict[str, Any], inc_info: dict[str, Any]) -> float:
    """Geometric mean over endpoints of p95(candidate) / p95(incumbent).

    What a sampler learns from: p95 over the whole mix is held up by the slowest endpoint, so fixing one
    endpoint while another stays slow barely moves it; this ratio credits every endpoint's fix by its
    factor, whatever that endpoint's share of the calls."""
    a, b = cand_info.get("endpoint_p95_ms") or {}, inc_info.get("endpoint_p95_ms") or {}
    common = sorted(a.keys() & b.keys())
    return round(_geomean(a[k] / max(b[k], 1e-6) for k in common), 4) if common else math.nan


def paired_compare(services: list[ServiceProcess], calls: list[dict], repeats: int, concurrency: int,
                   bootstrap: dict[str, Any], inc_info: dict[str, Any], cand_info: dict[str, Any],
                   slower_factor: float = 2.0) -> tuple[Scores, Scores]:
    """(incumbent, candidate) Scores of two started services [incumbent, candidate], measured interleaved.

    A screen comes first: one interleaved repeat. A candidate that returns any wrong answer, or whose
    p95 in the screen is more than `slower_factor` times the incumbent's, gets no full measurement (the
    guard or the score rejects it anyway; a wrong cache costs seconds, not minutes). Otherwise `repeats - 1`
    more interleaved repeats follow and the screen counts as the first. The candidate's info carries the
    block-bootstrap interval of the p95 ratio, computed exactly as the engine's keep rule computes it.
    """
    from autoloop.decide import paired_bootstrap

    screen = measure_interleaved(services, calls, 1, concurrency)
    inc_s, cand_s = scores_from(screen[0]), scores_from(screen[1])
    ratio = cand_s.components["p95_ms"] / max(inc_s.components["p95_ms"], 1e-9)
    note = ""
    if cand_s.components["correctness"] < 1.0:
        note = f"screen: {len(cand_s.info['wrong_calls'])} wrong answers; full comparison skipped"
    elif ratio > slower_factor:
        note = f"screen: p95 {ratio:.2f}x the incumbent's; full comparison skipped"
    results = screen
    if not note and repeats > 1:
        more = measure_interleaved(services, calls, repeats - 1, concurrency, warmup=0)
        results = [screen[i] + more[i] for i in range(len(services))]
    inc = scores_from(results[0], {**inc_info, "role": "incumbent"})
    cand = scores_from(results[1], {**cand_info, "role": "candidate"})
    res = paired_bootstrap(cand.items, inc.items, stat=bootstrap.get("stat", "quantile_ratio"),
                           confidence=float(bootstrap.get("confidence", 0.95)),
                           resamples=int(bootstrap.get("resamples", 2000)), seed=int(bootstrap.get("seed", 0)),
                           q=float(bootstrap.get("q", 95.0)))
    cand.info["incumbent_p95_ms"] = inc.info["p95_ms"]
    if note:
        cand.info["screen"] = note
    if res is not None:
        point, lo, hi, _ = res
        cand.info.update({"p95_ratio": round(point, 4), "p95_ratio_ci": [round(lo, 4), round(hi, 4)],
                          "gm_ratio": gm_ratio(cand.info, inc.info),
                          "clears_noise": hi < 1 - float(bootstrap.get("threshold", 0.0))})
    return inc, cand
