"""Percentiles and a paired bootstrap of a ratio of means (same method as the engine's keep rule)."""
from __future__ import annotations

import math
import random


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bootstrap_ratio(cand: list[float], inc: list[float], confidence: float = 0.95, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) for mean(cand)/mean(inc), resampling the pairs (cand[i], inc[i]) together."""
    if len(cand) != len(inc) or not cand:
        raise ValueError("paired bootstrap needs two equally long, non-empty lists")
    n = len(cand)
    rng = random.Random(seed)
    point = (sum(cand) / n) / (sum(inc) / n)
    ratios = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(sum(cand[i] for i in idx) / sum(inc[i] for i in idx))
    alpha = (1 - confidence) / 2
    return point, percentile(ratios, 100 * alpha), percentile(ratios, 100 * (1 - alpha))
