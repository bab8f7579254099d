"""The evidence trail: the per-iteration table, its CSV, and the curve as a PNG.

Everything is read from DuckDB (read-only, retried while a writer holds the lock), so what `show` prints
is exactly what `autoloop sql` can reproduce.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from autoloop import store

BASE_COLS = ["iter", "checkpoint", "time", "status", "score", "delta", "ci_low", "ci_high", "cost_usd",
             "llm_calls", "run_s", "score_s", "overhead_s", "peak_rss_mb", "description", "reason"]


def resolve_run(db_path: Path, runs_dir: Path, ref: str | None) -> str:
    """A run id, a unique prefix of one, or None/'last' for the newest run."""
    ids = sorted((p.parent.name for p in Path(runs_dir).glob("*/journal.jsonl")),
                 key=lambda r: (Path(runs_dir) / r / "journal.jsonl").stat().st_mtime)
    if not ids:
        raise LookupError(f"{runs_dir}: no runs yet; start one with `autoloop run TARGET.py`")
    if ref in (None, "", "last", "latest"):
        return ids[-1]
    if ref in ids:
        return ref
    matches = [r for r in ids if r.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LookupError(f"run {ref!r} not found in {runs_dir}; list runs with `autoloop runs`")
    raise LookupError(f"run {ref!r} is ambiguous ({', '.join(matches[:5])}); give more of the id")


def iteration_rows(db_path: Path, run_id: str, kept_only: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """One dict per iteration: base columns, then one column per component (metrics)."""
    _, run = store.query(db_path, "SELECT started_at, show_columns FROM runs WHERE run_id = ?", [run_id])
    if not run:
        raise LookupError(f"run {run_id!r} is not in {db_path}; try `autoloop db rebuild`")
    show_cols = json.loads(run[0][1] or "[]")
    cols, rows = store.query(db_path, """
        SELECT i.iter, i.tag, epoch(coalesce(i.ended_at, i.started_at)) - epoch(r.started_at) AS t, i.status,
               i.score, i.delta, i.ci_low, i.ci_high, i.cost_usd, i.llm_calls, i.run_s, i.score_s,
               i.overhead_s, i.peak_rss_mb, i.description, i.reason, i.info
        FROM iterations i JOIN runs r USING (run_id) WHERE i.run_id = ? ORDER BY i.iter""", [run_id])
    _, mrows = store.query(db_path, "SELECT iter, name, value FROM metrics WHERE run_id = ? ORDER BY iter", [run_id])
    metrics: dict[int, dict[str, float]] = {}
    names: list[str] = []
    for it, name, value in mrows:
        metrics.setdefault(it, {})[name] = value
        if name not in names:
            names.append(name)
    # show_columns may name components (metrics) or keys of Scores.info (e.g. a config summary).
    comp_cols = [c for c in show_cols if c not in BASE_COLS] if show_cols else names
    out = []
    for r in rows:
        d = dict(zip(BASE_COLS, r[:-1]))
        info = json.loads(r[-1]) if r[-1] else {}
        d["checkpoint"] = d["checkpoint"].rsplit("/", 1)[-1] if d["checkpoint"] else ""
        d["time"] = _hms(d["time"])
        for c in comp_cols:
            v = metrics.get(d["iter"], {}).get(c)
            if v is None and c in info and not isinstance(info[c], (dict, list)):
                v = info[c]
            d[c] = v
        if kept_only and d["status"] != "keep":
            continue
        out.append(d)
    return BASE_COLS[:5] + comp_cols + BASE_COLS[5:], out


def compact_columns(cols: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The columns a person reads first; the rest (durations, RSS, reasons) are in --wide, CSV and SQL."""
    def used(c: str) -> bool:
        return any(r.get(c) not in (None, 0, 0.0, "") for r in rows)

    keep = [c for c in cols if c not in BASE_COLS] + ["iter", "checkpoint", "time", "status", "score", "description"]
    keep += [c for c in ("ci_low", "ci_high", "cost_usd", "llm_calls") if used(c)]
    return [c for c in cols if c in keep]


def _hms(s: float | None) -> str:
    if s is None:
        return ""
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def to_csv(cols: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def plot_curve(db_path: Path, run_id: str, out: Path) -> Path:
    """PNG of the score per iteration (kept ones marked), best-so-far, and each component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = iteration_rows(db_path, run_id)
    def numeric(c: str) -> bool:  # text columns (e.g. a config summary from Scores.info) are not curves
        vals = [r.get(c) for r in rows if r.get(c) is not None]
        return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)

    comps = [c for c in cols if c not in BASE_COLS and numeric(c)]
    fig, axes = plt.subplots(1 + (1 if comps else 0), 1, figsize=(9, 7 if comps else 4), sharex=True)
    axes = list(axes) if comps else [axes]
    xs = [r["iter"] for r in rows if r["score"] is not None]
    ys = [r["score"] for r in rows if r["score"] is not None]
    axes[0].plot(xs, ys, "o-", color="0.6", label="score (every iteration)")
    kx = [r["iter"] for r in rows if r["status"] == "keep"]
    ky = [r["score"] for r in rows if r["status"] == "keep"]
    axes[0].plot(kx, ky, "s", color="tab:green", label="kept checkpoint")
    if kx:
        axes[0].step(kx + [rows[-1]["iter"]], ky + [ky[-1]], where="post", color="tab:green", alpha=0.6,
                     label="incumbent")
    axes[0].set_ylabel("score")
    axes[0].set_title(f"autoloop run {run_id}")
    axes[0].legend(loc="best", fontsize=8)
    if comps:
        for c in comps:
            pts = [(r["iter"], r[c]) for r in rows if r.get(c) is not None]
            if pts:
                axes[1].plot(*zip(*pts), ".-", label=c)
        axes[1].set_ylabel("components")
        axes[1].legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("iteration")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
