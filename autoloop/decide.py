"""Keep-or-revert and stop rules as pure functions: no I/O, so every rule is unit-tested in isolation.

A keep must beat the incumbent by more than `min_delta` in the target's direction, break no guard, and —
when the target asks for it — clear a paired bootstrap confidence interval over per-item scores. Noise
(sampled generations, latency) otherwise turns into a ratchet of lucky draws.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class Decision:
    keep: bool
    reason: str
    delta: float | None = None  # candidate - incumbent in score units: negative is better on a "min" target
    ci: tuple[float, float] | None = None  # bootstrap interval of the statistic, when used
    stat: str | None = None  # diff | ratio


def improvement(candidate: float, incumbent: float, direction: str) -> float:
    """Positive when the candidate is better, whatever the direction."""
    return candidate - incumbent if direction == "max" else incumbent - candidate


def paired_bootstrap(
    cand: Mapping[str, float], inc: Mapping[str, float], stat: str = "diff",
    confidence: float = 0.95, resamples: int = 2000, seed: int = 0, q: float = 95.0,
) -> tuple[float, float, float, int] | None:
    """CI of a paired statistic over the items both sides have; returns (point, low, high, n) or None.

    "diff": mean(cand - inc); "ratio": mean(cand) / mean(inc) -- items are resampled as pairs, so
    per-item difficulty cancels out. "quantile_ratio": quantile q of the candidate's pooled values over
    the incumbent's, where items are named "<unit>/<member>" and whole units are resampled (a block
    bootstrap): values measured close in time share a unit, so a burst of background load inside one
    unit is resampled as one event, not as many independent ones. n counts pairs (units).
    """
    if stat == "quantile_ratio":
        return _unit_quantile_ratio(cand, inc, confidence, resamples, seed, q)
    keys = sorted(k for k in cand.keys() & inc.keys()
                  if _finite(cand[k]) and _finite(inc[k]))
    n = len(keys)
    if n < 2:
        return None
    a = [float(cand[k]) for k in keys]
    b = [float(inc[k]) for k in keys]

    def value(idx: list[int]) -> float:
        if stat == "ratio":
            den = sum(b[i] for i in idx)
            return (sum(a[i] for i in idx) / den) if den else math.inf
        return sum(a[i] - b[i] for i in idx) / len(idx)

    rng = random.Random(seed)
    point = value(list(range(n)))
    samples = sorted(value([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    return (point, *_interval(samples, confidence), n)


def _interval(sorted_samples: list[float], confidence: float) -> tuple[float, float]:
    m, alpha = len(sorted_samples), (1 - confidence) / 2
    return sorted_samples[int(math.floor(alpha * (m - 1)))], sorted_samples[int(math.ceil((1 - alpha) * (m - 1)))]


def _units(items: Mapping[str, float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for k, v in items.items():
        if _finite(v):
            out.setdefault(k.split("/", 1)[0], []).append(float(v))
    return out


def _unit_quantile_ratio(cand: Mapping[str, float], inc: Mapping[str, float], confidence: float,
                         resamples: int, seed: int, q: float) -> tuple[float, float, float, int] | None:
    import numpy as np

    cu, iu = _units(cand), _units(inc)
    keys = sorted(cu.keys() & iu.keys())
    n = len(keys)
    if n < 2:
        return None
    a = [np.asarray(cu[k]) for k in keys]
    b = [np.asarray(iu[k]) for k in keys]

    def value(idx: Any) -> float:
        den = float(np.percentile(np.concatenate([b[i] for i in idx]), q))
        return float(np.percentile(np.concatenate([a[i] for i in idx]), q)) / den if den > 0 else math.inf

    rng = np.random.default_rng(seed)
    point = value(range(n))
    samples = sorted(value(rng.integers(0, n, n)) for _ in range(resamples))
    return (point, *_interval(samples, confidence), n)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def check_guards(cand: Mapping[str, float], inc: Mapping[str, float], guards: Mapping[str, float]) -> str | None:
    """A guard names a component that may not fall more than `allowance` below the incumbent's value
    (components are higher-is-better). Returns the first violation as a sentence, or None."""
    for name, allowance in guards.items():
        c, i = cand.get(name), inc.get(name)
        if i is None or not _finite(i):
            continue
        if c is None or not _finite(c):
            return f"guard {name}: candidate has no value (incumbent {i:.4g})"
        if c < i - float(allowance) - 1e-12:
            return f"guard {name}: {c:.4g} fell below incumbent {i:.4g} - {allowance:g}"
    return None


def decide(
    cand_score: float, inc_score: float, direction: str, *, min_delta: float = 0.0,
    cand_components: Mapping[str, float] | None = None, inc_components: Mapping[str, float] | None = None,
    guards: Mapping[str, float] | None = None, cand_items: Mapping[str, float] | None = None,
    inc_items: Mapping[str, float] | None = None, bootstrap: Mapping[str, Any] | None = None,
) -> Decision:
    """Keep or revert a candidate whose score is finite (other outcomes never reach here)."""
    delta = cand_score - inc_score
    gain = improvement(cand_score, inc_score, direction)
    # The interval is computed first, so every decision (a revert too) carries its evidence.
    boot_ok, boot_text, ci, stat = None, "", None, None
    if bootstrap is not None:
        stat = bootstrap.get("stat", "diff")
        threshold = float(bootstrap.get("threshold", 0.0))
        conf = float(bootstrap.get("confidence", 0.95))
        res = paired_bootstrap(cand_items or {}, inc_items or {}, stat=stat, confidence=conf,
                               resamples=int(bootstrap.get("resamples", 2000)), seed=int(bootstrap.get("seed", 0)),
                               q=float(bootstrap.get("q", 95.0)))
        if res is None:
            boot_ok, boot_text = False, "bootstrap needs per-item scores on at least 2 shared items"
        else:
            point, lo, hi, n = res
            ci = (lo, hi)
            # Which side of the interval must clear the bar depends on the statistic and the direction.
            if stat in ("ratio", "quantile_ratio"):
                bar = 1 - threshold if direction == "min" else 1 + threshold
                boot_ok = hi < bar if direction == "min" else lo > bar
            else:
                bar = -threshold if direction == "min" else threshold
                boot_ok = hi < bar if direction == "min" else lo > bar
            what = "units" if stat == "quantile_ratio" else "items"
            boot_text = (f"{stat} {point:.4g}, {conf:.0%} CI [{lo:.4g}, {hi:.4g}] over {n} {what}; "
                         f"needs {'<' if direction == 'min' else '>'} {bar:g}")
    violation = check_guards(cand_components or {}, inc_components or {}, guards or {})
    if violation:
        return Decision(False, violation + (f" ({boot_text})" if boot_text else ""), delta, ci, stat)
    # The reason quotes `delta` exactly as stored (candidate - incumbent), with the direction that makes
    # a negative delta an improvement on a minimise target: one number, one sign, everywhere.
    said = f"delta {delta:+.4g}, {'lower' if direction == 'min' else 'higher'} is better"
    if gain <= min_delta:
        return Decision(False, f"not better by more than min_delta {min_delta:g} ({said})"
                        + (f" ({boot_text})" if boot_text else ""), delta, ci, stat)
    if bootstrap is None:
        return Decision(True, f"better ({said})", delta)
    return Decision(bool(boot_ok), ("clears noise: " if boot_ok else "within noise: ") + boot_text, delta, ci, stat)


@dataclass
class StopLimits:
    max_iters: int | None = None  # candidate iterations (the baseline is not counted)
    patience: int | None = None  # iterations in a row without a keep
    deadline: float | None = None  # absolute unix time (from --max-hours / --until)
    max_cost: float | None = None  # dollars
    target_score: float | None = None
    stop_file: str | None = None


@dataclass
class LoopState:
    direction: str
    candidates_done: int = 0
    since_keep: int = 0
    best_score: float | None = None
    cost: float = 0.0
    now: float = 0.0
    stop_file_exists: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def stop_reason(s: LoopState, lim: StopLimits) -> str | None:
    """The first stop rule that holds, as the `stop_reason` to record, or None to go on."""
    if s.stop_file_exists:
        return "stop_file"
    if lim.target_score is not None and s.best_score is not None and (
        s.best_score >= lim.target_score if s.direction == "max" else s.best_score <= lim.target_score
    ):
        return "target_score"
    if lim.max_cost is not None and s.cost >= lim.max_cost:
        return "max_cost"
    if lim.deadline is not None and s.now >= lim.deadline:
        return "max_time"
    if lim.max_iters is not None and s.candidates_done >= lim.max_iters:
        return "max_iters"
    if lim.patience is not None and s.since_keep >= lim.patience:
        return "plateau"
    return None
