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

from autoloop import fmt, store

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


# Columns of the history that hold JSON text; listings in JSON give them as objects, not escaped strings.
JSON_COLUMNS = {"params", "config", "packages", "target_info", "show_columns", "info", "payload", "components",
                "options"}
RUN_STATES = ("running", "finished", "interrupted")


def run_state(runs_dir: Path, run_id: str, recorded: str | None) -> str:
    """One word for a run, the same in `runs`, `status` and the dashboard: running (an engine drives it now),
    finished (it stopped by a stop rule), interrupted (Ctrl-C, or the engine died: `autoloop resume` continues)."""
    from autoloop.runs import lock_owner

    if lock_owner(Path(runs_dir) / run_id) is not None:
        return "running"
    return recorded if recorded in ("finished", "interrupted") else "interrupted"


def decode_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    """JSON text columns (params, config, info...) as objects, for `--format json` / `--json` output."""
    out = dict(row)
    for k, v in row.items():
        if k in JSON_COLUMNS and isinstance(v, str):
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                pass
    return out


def param_columns(rows: list[dict[str, Any]]) -> list[str]:
    """`params.<key>` for every top-level key any iteration's params has, in first-seen order."""
    keys: list[str] = []
    for r in rows:
        for k in (r.get("params") or {}):
            if k not in keys:
                keys.append(k)
    return [f"params.{k}" for k in keys]


def with_param_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    pcols = param_columns(rows)
    out = []
    for r in rows:
        d = dict(r)
        for c in pcols:
            d[c] = (r.get("params") or {}).get(c[len("params."):])
        out.append(d)
    return pcols, out


def csv_rows(run_id: str, cols: list[str], rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The evidence CSV: run_id first, `elapsed_s` (seconds since the run started) instead of h:mm:ss text,
    params as `params.<key>` columns, so rows of several runs concatenate and sort by time."""
    pcols, rows = with_param_columns(rows)
    out_cols = ["run_id"] + ["elapsed_s" if c == "time" else c for c in cols] + pcols
    return out_cols, [dict(r, run_id=run_id) for r in rows]


def iteration_rows(db_path: Path, run_id: str, kept_only: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """One dict per iteration: base columns, then one column per component (metrics). Each row also carries
    `elapsed_s` (seconds since the run started) and `params` (an object), which are not columns of `show`."""
    _, run = store.query(db_path, "SELECT started_at, show_columns FROM runs WHERE run_id = ?", [run_id])
    if not run:
        raise LookupError(f"run {run_id!r} is not in {db_path}; try `autoloop db rebuild`")
    show_cols = json.loads(run[0][1] or "[]")
    cols, rows = store.query(db_path, """
        SELECT i.iter, i.tag, epoch(coalesce(i.ended_at, i.started_at)) - epoch(r.started_at) AS t, i.status,
               i.score, i.delta, i.ci_low, i.ci_high, i.cost_usd, i.llm_calls, i.run_s, i.score_s,
               i.overhead_s, i.peak_rss_mb, i.description, i.reason, i.params, i.info
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
        d = dict(zip(BASE_COLS, r[:-2]))
        info = json.loads(r[-1]) if r[-1] else {}
        d["checkpoint"] = d["checkpoint"].rsplit("/", 1)[-1] if d["checkpoint"] else ""
        d["elapsed_s"] = None if d["time"] is None else round(float(d["time"]), 3)
        d["time"] = _hms(d["time"])
        d["params"] = json.loads(r[-2]) if r[-2] else {}
        for c in comp_cols:
            v = metrics.get(d["iter"], {}).get(c)
            if v is None and c in info and not isinstance(info[c], (dict, list)):
                v = info[c]
            d[c] = v
        if kept_only and d["status"] != "keep":
            continue
        out.append(d)
    return BASE_COLS[:5] + comp_cols + BASE_COLS[5:], out


SHOW_WIDTH = 120  # `show` fits a terminal this wide by default; --wide prints every column
TEXT_COLS = ("description", "reason")


def _is_text(c: str, rows: list[dict[str, Any]]) -> bool:
    return c in TEXT_COLS or any(isinstance(r.get(c), str) and len(r[c]) > 16 for r in rows)


def header(c: str) -> str:
    """A long column name on two lines, split at the underscore that makes it narrowest
    ('level_within_1' -> 'level_' / 'within_1'): the table stays narrow and the name stays the SQL one."""
    cuts = [i + 1 for i, ch in enumerate(c) if ch == "_" and 0 < i < len(c) - 1]
    if len(c) <= 8 or not cuts:
        return c
    i = min(cuts, key=lambda k: max(k, len(c) - k))
    return c[:i] + "\n" + c[i:]


def col_width(c: str, rows: list[dict[str, Any]], split: bool = False) -> int:
    head = header(c) if split else c
    return max([len(x) for x in head.split("\n")] + [len(fmt.num(r.get(c), c)) for r in rows])


def compact_layout(cols: list[str], rows: list[dict[str, Any]], width: int = SHOW_WIDTH) -> tuple[list[str], bool]:
    """The columns a person reads first, as many as fit in `width` characters, and whether long names go on
    two lines to make room. The rest (durations, RSS, reasons, ...) are in --wide, CSV and SQL.

    In priority order: iter, status, the score (shown as the component that equals it in every row, e.g.
    forge_score, when there is one: its name says more), the target's components in its own order, time,
    checkpoint, the interval and spend when used; the description takes what is left (at least 24
    characters, wrapped)."""
    def used(c: str) -> bool:
        return any(r.get(c) not in (None, 0, 0.0, "") for r in rows)

    comps = [c for c in cols if c not in BASE_COLS]
    scored = [r for r in rows if r.get("score") is not None]
    distinct = len({r["score"] for r in scored}) > 1  # with one value, a component may equal it by chance
    same = next((c for i, c in enumerate(comps) if scored and (i == 0 or distinct)
                 and all(r.get(c) == r["score"] for r in scored)), None)
    score_col = same or "score"
    wanted = ["iter", "status", score_col] + [c for c in comps if c != same] + ["time", "checkpoint"]
    wanted += [c for c in ("ci_low", "ci_high", "cost_usd", "llm_calls") if used(c)]

    def fit(split: bool) -> list[str]:
        chosen: list[str] = []
        # A rich table with borders takes 3 characters per column (padding and a rule) plus 1.
        room = width - 1 - (24 + 3)  # the description's minimum
        for i, c in enumerate(wanted):
            need = (16 if _is_text(c, rows) else col_width(c, rows, split)) + 3
            if i < 3 or need <= room:  # iter, status and the score are always shown
                chosen.append(c)
                room -= need
        return chosen + ["description"]

    chosen, split = fit(False), False
    if len(chosen) < len(wanted) + 1:
        chosen, split = fit(True), True
    return _ordered(cols, chosen, score_col), split


def compact_columns(cols: list[str], rows: list[dict[str, Any]], width: int = SHOW_WIDTH) -> list[str]:
    return compact_layout(cols, rows, width)[0]


def _ordered(cols: list[str], chosen: list[str], score_col: str) -> list[str]:
    """Chosen columns in the table's order, with the score column standing where `score` stands."""
    out = []
    for c in cols:
        if c == "score":
            out.append(score_col)
        elif c in chosen and c != score_col:
            out.append(c)
    return out


def reference_rows(db_path: Path, run_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """The run's reference points as table rows (score and components; the name in `description`), and the
    error of the target's reference_scores() if it failed."""
    try:
        _, rows = store.query(db_path, "SELECT name, kind, score, components FROM reference_scores "
                                       "WHERE run_id = ? ORDER BY n", [run_id])
        _, ev = store.query(db_path, "SELECT payload FROM events WHERE run_id = ? AND kind = 'references' "
                                     "ORDER BY seq DESC LIMIT 1", [run_id])
    except Exception:  # an older database without the table: `autoloop db rebuild` adds it
        return [], None
    out = []
    for name, kind, score, comps in rows:
        d = {"iter": None, "checkpoint": "", "time": "", "status": "ref", "score": score,
             "description": name, "reference": name, "kind": kind}
        d.update({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in json.loads(comps or "{}").items()})
        out.append(d)
    error = json.loads(ev[0][0]).get("error") if ev else None
    return out, error


def reference_points(events: list[dict[str, Any]]) -> dict[str, float | None]:
    """name -> score from a run's journal (no database needed: `status` uses this): the target's
    reference points in its order, then the baseline (iteration 0)."""
    event = next((e for e in reversed(events) if e["kind"] == "references"), None)
    if not event:
        return {}
    out = {k: (v or {}).get("score") for k, v in (event.get("scores") or {}).items()}
    b = event.get("baseline") or {}
    if b:
        out[f"{b.get('label') or 'baseline'} (iteration 0)"] = b.get("score")
    return out


def references_line(points: dict[str, float | None]) -> str:
    return " · ".join(f"{k} {fmt.score(v)}" for k, v in points.items())


def _hms(s: float | None) -> str:
    return "" if s is None else fmt.hms(s)


def to_csv(cols: list[str], rows: list[dict[str, Any]]) -> str:
    """Objects and lists (params) as JSON text, never as Python reprs."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: json.dumps(v) if isinstance(v, (dict, list)) else v for c, v in r.items()})
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


def run_summary(db_path: Path, runs_dir: Path, run_id: str) -> dict[str, Any]:
    """What `compare` and the dashboard say about one run (counts as --max-iters counts)."""
    cols, rows = store.query(db_path, """
        SELECT r.run_id, r.target_name, r.direction, r.gold_sha256, r.started_at, r.status, r.stop_reason,
               count(i.iter) FILTER (WHERE i.iter > 0 AND i.status NOT IN ('running', 'interrupted')) AS iterations,
               count(*) FILTER (WHERE i.iter > 0 AND i.status = 'keep') AS kept,
               coalesce(sum(i.cost_usd), 0) AS cost_usd,
               max(epoch(i.ended_at) - epoch(r.started_at)) AS elapsed_s
        FROM runs r LEFT JOIN iterations i USING (run_id) WHERE r.run_id = ? GROUP BY ALL""", [run_id])
    if not rows:
        raise LookupError(f"run {run_id!r} is not in {db_path}; try `autoloop db rebuild`")
    d = dict(zip(cols, rows[0]))
    d["status"] = run_state(runs_dir, run_id, d["status"])
    _, b = store.query(db_path, """
        SELECT b.iter, b.score, b.tag, epoch(b.ended_at) - epoch(r.started_at)
        FROM best b JOIN runs r USING (run_id) WHERE b.run_id = ?""", [run_id])
    d["best_iter"], d["best"], d["best_tag"], d["best_elapsed_s"] = b[0] if b else (None, None, None, None)
    _, m = store.query(db_path, "SELECT name, value FROM metrics WHERE run_id = ? AND iter = ? ORDER BY name",
                       [run_id, d["best_iter"]])
    d["best_components"] = dict(m)
    return d


def compare_runs(db_path: Path, runs_dir: Path, a: str, b: str) -> dict[str, Any]:
    """Two runs side by side, and their best checkpoints paired item by item when they share a gold set."""
    sa, sb = run_summary(db_path, runs_dir, a), run_summary(db_path, runs_dir, b)
    out: dict[str, Any] = {"a": sa, "b": sb, "same_gold": sa["gold_sha256"] == sb["gold_sha256"],
                           "same_direction": sa["direction"] == sb["direction"], "items": None}
    if out["same_gold"] and out["same_direction"] and sa["best_iter"] is not None and sb["best_iter"] is not None:
        _, rows = store.query(db_path, """
            SELECT x.item_id, x.value, y.value FROM item_scores x JOIN item_scores y USING (item_id)
            WHERE x.run_id = ? AND x.iter = ? AND x.role = 'candidate'
              AND y.run_id = ? AND y.iter = ? AND y.role = 'candidate'""", [a, sa["best_iter"], b, sb["best_iter"]])
        sign = -1.0 if sa["direction"] == "min" else 1.0
        gains = [sign * (vb - va) for _, va, vb in rows if va is not None and vb is not None]
        out["items"] = {"n": len(gains), "b_better": sum(g > 0 for g in gains), "a_better": sum(g < 0 for g in gains),
                        "equal": sum(g == 0 for g in gains),
                        "mean_delta_b_minus_a": (sum(sign * g for g in gains) / len(gains)) if gains else None}
    if sa["best"] is not None and sb["best"] is not None:
        out["best_delta_b_minus_a"] = sb["best"] - sa["best"]
    return out
