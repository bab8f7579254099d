"""Measure services side by side: interleaved replays, fresh instances or a reset between replays, Scores.

Interleaving puts every config under the same background load (other processes share the CPU): each
repeat cuts the calls into blocks and plays block k on every service before block k+1 (order A B, then
B A, ...). Every latency is reported as an item "r<repeat>b<block>/<call id>": the engine's block
bootstrap ("quantile_ratio") resamples whole (repeat, block) units, which were measured side by side.

Calls that change data make a second replay on the same instance answer differently. A Fleet handles
that the way the user chose: `restart` (every replay on fresh instances, each with a new scratch dir) or
`reset` (a callable run on each instance before every replay but the first); `find_drift` replays the
calls twice the same way and names the calls whose answers still differ.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from autoloop.services.replay import ReplayResult, replay
from autoloop.services.service import ServiceProcess
from autoloop.services.stats import percentile
from autoloop.target import Scores

HEALTH_WARMUP = 5  # requests to the health path after a (re)start, when the calls themselves may not be replayed twice


class Fleet:
    """The services measured together, one per config, started and stopped together.

    `factories` make not-yet-started services (one per config); `services` may instead be services
    already started by the caller (then neither restart nor stop is ours). Before each replay, `prepare`
    warms up, restarts or resets, as the options say."""

    def __init__(self, factories: Sequence[Callable[[], ServiceProcess]] = (), *, restart: bool = False,
                 reset: Callable[[ServiceProcess], None] | None = None,
                 services: Sequence[ServiceProcess] | None = None):
        if services is not None and (restart or factories):
            raise ValueError("Fleet: give factories (to restart) or started services, not both")
        self.factories, self.restart, self.reset = list(factories), restart, reset
        self.services: list[ServiceProcess] = list(services or [])
        self.owned = services is None
        self.replays = 0  # replays served by the current instances

    def start(self) -> "Fleet":
        """Launch every instance at once, then wait until all are healthy."""
        try:
            for make in self.factories:
                self.services.append(make().launch())
            for s in self.services:
                s.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.replays = 0
        return self

    def stop(self) -> None:
        if self.owned:
            for s in self.services:
                s.stop()
            self.services = []

    def __enter__(self) -> "Fleet":
        return self.start() if self.owned else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def prepare(self, calls: list[dict], concurrency: int, warmup: int) -> None:
        """Make every service ready for one more replay of `calls`."""
        if self.restart:
            if self.replays:
                self.stop()
                self.start()
            for s in self.services:  # the calls cannot be replayed twice: warm the server, not the data
                replay(s.port, [{"id": f"w{i}", "method": "GET", "path": s.health_path}
                                for i in range(HEALTH_WARMUP)], 1)
        elif self.replays == 0 and warmup:
            warm = [c for c in calls if not c.get("barrier")][:warmup]
            for s in self.services:
                if warm:
                    replay(s.port, warm, concurrency)
            if self.reset:
                for s in self.services:
                    self.reset(s)
        elif self.replays and self.reset:
            for s in self.services:
                self.reset(s)
        self.replays += 1


def measure_interleaved(fleet: Fleet | list[ServiceProcess], calls: list[dict], repeats: int, concurrency: int,
                        warmup: int = 20, blocks: int = 8, expected: dict[str, str] | None = None,
                        ignore: Iterable[str] = ()) -> list[list[ReplayResult]]:
    """Replay the calls `repeats` times on every service of the fleet, interleaved finely.

    Each repeat cuts the call list into `blocks` consecutive blocks and plays block k on every service
    before block k+1 (order A B, then B A, ...). Each service still sees the whole sequence in order
    (writes stay where they are), while a burst of background load lasting seconds hits all services
    alike instead of one whole replay: the paired per-repeat p95s then differ by the configs, not by luck.
    `warmup`: calls (the first non-writes) played once before the first replay, unless the fleet restarts
    between replays. `expected`: answer hashes for calls without their own "expect".
    """
    if not isinstance(fleet, Fleet):
        fleet = Fleet(services=fleet)
    ignore = tuple(ignore)
    size = max(1, -(-len(calls) // max(1, blocks)))
    chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
    out: list[list[ReplayResult]] = [[] for _ in fleet.services]
    order = list(range(len(fleet.services)))
    for _ in range(repeats):
        fleet.prepare(calls, concurrency, warmup)
        merged = [ReplayResult() for _ in fleet.services]
        for b, chunk in enumerate(chunks):
            for i in order:
                merged[i].update(replay(fleet.services[i].port, chunk, concurrency, expected=expected, ignore=ignore),
                                 block=b)
            order.reverse()
        for i in range(len(fleet.services)):
            out[i].append(merged[i])
    return out


def find_drift(fleet: Fleet, calls: list[dict], concurrency: int, ignore: Iterable[str] = (),
               warmup: int = 20) -> tuple[list[dict], list[ReplayResult]]:
    """Replay the calls twice on the fleet's first service exactly as a measurement does (same warm-up,
    restarts, resets); (the calls whose answers differ between the two replays, the two results).

    A volatile call drifts only when its status changes."""
    first, second = measure_interleaved(fleet, calls, 2, concurrency, warmup=warmup, ignore=ignore)[0]
    drift = []
    for c in calls:
        cid = c["id"]
        if c.get("volatile"):
            differs = first.status.get(cid) != second.status.get(cid)
        else:
            differs = first.answers.get(cid) != second.answers.get(cid)  # None: no answer (a transport error)
        if differs:
            drift.append(c)
    return drift, [first, second]


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


def paired_compare(fleet: Fleet | list[ServiceProcess], calls: list[dict], repeats: int, concurrency: int,
                   bootstrap: dict[str, Any], inc_info: dict[str, Any], cand_info: dict[str, Any],
                   slower_factor: float = 2.0, expected: dict[str, str] | None = None,
                   ignore: Iterable[str] = ()) -> tuple[Scores, Scores]:
    """(incumbent, candidate) Scores of a fleet of two services [incumbent, candidate], measured interleaved.

    A screen comes first: one interleaved repeat. A candidate that returns any wrong answer, or whose
    p95 in the screen is more than `slower_factor` times the incumbent's, gets no full measurement (the
    guard or the score rejects it anyway; a wrong cache costs seconds, not minutes). Otherwise `repeats - 1`
    more interleaved repeats follow and the screen counts as the first. The candidate's info carries the
    block-bootstrap interval of the p95 ratio, computed exactly as the engine's keep rule computes it.
    """
    from autoloop.decide import paired_bootstrap

    if not isinstance(fleet, Fleet):
        fleet = Fleet(services=fleet)
    kw = dict(expected=expected, ignore=ignore)
    screen = measure_interleaved(fleet, calls, 1, concurrency, **kw)
    inc_s, cand_s = scores_from(screen[0]), scores_from(screen[1])
    ratio = cand_s.components["p95_ms"] / max(inc_s.components["p95_ms"], 1e-9)
    note = ""
    if cand_s.components["correctness"] < 1.0:
        note = f"screen: {len(cand_s.info['wrong_calls'])} wrong answers; full comparison skipped"
    elif ratio > slower_factor:
        note = f"screen: p95 {ratio:.2f}x the incumbent's; full comparison skipped"
    results = screen
    if not note and repeats > 1:
        more = measure_interleaved(fleet, calls, repeats - 1, concurrency, **kw)
        results = [screen[i] + more[i] for i in range(len(fleet.services))]
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


# -- what a sampler learns from these measurements (used by both API targets) --------------------------------

def incumbent_before(rec, history):
    """The kept iteration a record was compared with (the last keep before it)."""
    return next((r for r in reversed(history.iterations) if r.kept and r.iter < rec.iter), None)


def paired_value(rec, history) -> float | None:
    """What the sampler learns for one iteration's fully measured config (min is better).

    The geometric mean over endpoints of each endpoint's p95, not the p95 of the whole mix: the slowest
    endpoint holds the overall p95 up, so a fix for another endpoint would look worthless; here every
    endpoint's fix counts by its factor (keep decisions still use the overall p95). Load-robust: the
    ratio to the incumbent measured in the same interleaved compare (gm_ratio), times the incumbent's
    own value, down to the baseline. Wrong answers do not change the value: `wrong_share` makes such a
    config infeasible for the sampler. None: nothing was measured (a failed trial).
    """
    from autoloop.proposers.search import default_value

    if default_value(rec) is None and not rec.info.get("endpoint_p95_ms"):
        return None
    ratio = rec.info.get("gm_ratio")
    inc = incumbent_before(rec, history)
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or inc is None:
        gm = rec.info.get("gm_p95_ms")
        return float(gm) if isinstance(gm, (int, float)) and math.isfinite(gm) else default_value(rec)
    base = paired_value(inc, history)
    return ratio * base if base is not None else None


def wrong_share(rec, history=None) -> float:
    """The constraint a sampler sees: the share of wrong answers (> 0 = infeasible)."""
    c = rec.components.get("correctness")
    return round(1.0 - float(c), 6) if isinstance(c, (int, float)) and math.isfinite(c) else 0.0
