"""How numbers look wherever a person reads them (`show`, `status`, `best`, the live panel, log lines).

One rule set, so 0.63416666666669 never reaches a terminal: scores and other fractions to 4 decimals,
durations (`*_s`) and milliseconds (`*_ms`) to 1 decimal, megabytes (`*_mb`) to whole numbers, dollars to
4 decimals, very large or very small magnitudes in 4 significant digits. Machine-readable output
(`--json`, `--format csv|json`, `export`) keeps the stored values untouched.
"""
from __future__ import annotations

import math
from typing import Any


def num(v: Any, name: str | None = None) -> str:
    """A value as a table cell: "" for None, ints as ints, floats rounded by the column's kind."""
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    n = (name or "").lower()
    if n.endswith(("_s", "_ms", "_sec", "_seconds")) or n in ("tokens_per_s", "tok_s"):
        return f"{v:.1f}"
    if n.endswith("_mb"):
        return f"{v:.0f}"
    a = abs(v)
    if a >= 1e5 or (0 < a < 1e-4):
        return f"{v:.4g}"
    return f"{v:.4f}"


def score(v: Any) -> str:
    """A score for a sentence ("best 0.6342"): like num, but '-' when there is none."""
    return "-" if v is None else num(v)


def hms(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
