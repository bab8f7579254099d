"""The service's knobs: baseline values, the search space a proposer explores, and validation.

Every knob changes speed, never the answer -- except two deliberately wrong cache modes:
"ttl" (entries live `cache_ttl_s` and are NOT invalidated by writes: stale answers) and
"lru_pathkey" (the key ignores the query string: answers for other parameters). Correctness
must catch both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoloop.target import TargetError

BASELINE: dict[str, Any] = {
    "index_skill_level": False,  # index on profile_skills(skill, level)
    "index_location": False,  # index on profiles(location)
    "search_query": "correlated",  # correlated | join
    "detail_query": "text_scan",  # text_scan (CAST(id AS TEXT) = ?) | pk (id = ?)
    "stats_query": "like",  # like (location LIKE ?) | eq (location = ?)
    "cache": "none",  # none | lru | ttl (stale: wrong) | lru_pathkey (wrong key)
    "cache_size": 64,  # response cache entries
    "cache_ttl_s": 30.0,  # only for cache=ttl
    "workers": 1,  # sqlite connection pool size = queries running at once
    "sqlite_cache_kb": 2000,  # PRAGMA cache_size per connection
    "mmap_mb": 0,  # PRAGMA mmap_size
}

# The search space in autoloop.proposers.search's plain-dict form.
SPACE: dict[str, tuple] = {
    "index_skill_level": ("cat", [False, True]),
    "index_location": ("cat", [False, True]),
    "search_query": ("cat", ["correlated", "join"]),
    "detail_query": ("cat", ["text_scan", "pk"]),
    "stats_query": ("cat", ["like", "eq"]),
    "cache": ("cat", ["none", "lru", "ttl", "lru_pathkey"]),
    "cache_size": ("int", 8, 1024, True),
    "cache_ttl_s": ("float", 1.0, 120.0, True),
    "workers": ("int", 1, 8),
    "sqlite_cache_kb": ("int", 2000, 64000, True),
    "mmap_mb": ("cat", [0, 64, 256]),
}

WRONG_CACHES = {"ttl", "lru_pathkey"}

_CHOICES = {k: v[1] for k, v in SPACE.items() if v[0] == "cat"}
_RANGES = {k: (v[1], v[2]) for k, v in SPACE.items() if v[0] in ("int", "float")}


def validate(cfg: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Fill missing knobs from BASELINE and check every value; TargetError names the knob and the fix."""
    unknown = sorted(set(cfg) - set(BASELINE))
    if unknown:
        raise TargetError(f"{where}: unknown knob {unknown[0]!r}; known knobs: {', '.join(BASELINE)}")
    out = {**BASELINE, **cfg}
    for k, choices in _CHOICES.items():
        if out[k] not in choices:
            raise TargetError(f"{where}: {k}={out[k]!r} is not one of {choices}")
    for k, (lo, hi) in _RANGES.items():
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
            raise TargetError(f"{where}: {k}={v!r} must be a number in [{lo}, {hi}]")
    out["cache_size"] = int(out["cache_size"])
    out["workers"] = int(out["workers"])
    out["sqlite_cache_kb"] = int(out["sqlite_cache_kb"])
    out["cache_ttl_s"] = float(out["cache_ttl_s"])
    return out


def load(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TargetError(f"{path}: no config file; the state dir must hold config.json (run setup first)") from None
    except json.JSONDecodeError as e:
        raise TargetError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix the file") from None
    if not isinstance(raw, dict):
        raise TargetError(f"{path}: must hold a JSON object of knobs")
    return validate(raw, str(path))


def indexes(cfg: dict[str, Any]) -> list[str]:
    return [k for k in ("index_skill_level", "index_location") if cfg.get(k)]


def summary(cfg: dict[str, Any]) -> str:
    """One short line for `autoloop show`: only what differs from the baseline."""
    skip = {"cache_ttl_s"} if cfg.get("cache") != "ttl" else set()
    if cfg.get("cache") == "none":
        skip.add("cache_size")
    diff = [f"{k}={cfg[k]:.3g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}"
            for k in BASELINE if cfg.get(k) != BASELINE[k] and k not in skip]
    return ", ".join(diff) if diff else "baseline"
