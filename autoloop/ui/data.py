"""What the dashboard reads: a private snapshot of history.duckdb, the runs' git state and live.json.

The page must never slow the loop, and DuckDB allows one read-write process or many read-only ones, never
both: a reader that opens the live file read-only holds a shared lock, and the loop's next write waits for
it. So the dashboard does not open the live file at all. It copies it (a plain file read takes no DuckDB
lock) into a private temp file when its size or mtime changed, checks that nothing moved during the copy
(stat before and after, and only once the file has been still for a moment; torn copies fail DuckDB's
block checksums and are retried), and answers every request from that copy, through one read-only
connection. Polling asks only for a stamp (os.stat), so an idle page costs the loop nothing.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from autoloop import envguard, members, store
from autoloop.members import MEMBERS_FILE
from autoloop.report import JSON_COLUMNS, run_state

FAILED = ("crash", "timeout", "oom", "nonfinite", "invalid", "interrupted")
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MAX_DIFF_BYTES = 400_000  # of unified diff text per candidate
MAX_FILE_DIFF_LINES = 3000  # a file whose diff is longer is listed by name and size only
MAX_ITEMS = 1000  # per-item rows sent to the page (counts always cover every item)
ERROR_EXCERPT = 400


class HistoryUnavailable(Exception):
    """No history yet, an unreadable file, or one written by a newer autoloop: shown as a page, not a trace."""

    def __init__(self, message: str, status_code: int = 503):
        super().__init__(message)
        self.message, self.status_code = message, status_code


class Snapshot:
    """A read-only copy of history.duckdb, refreshed when the live file changes."""

    def __init__(self, db_path: Path, settle_s: float = 0.05):
        self.db = Path(db_path)
        self.settle_s = settle_s
        self._dir = Path(tempfile.mkdtemp(prefix="autoloop-ui-"))
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._stamp: tuple | None = None
        self._file: Path | None = None
        self._n = 0
        self.copies = 0  # how many snapshots were taken (tests and the bench read it)

    def stamp(self) -> tuple | None:
        """(mtime_ns, size) of the file and its WAL: changes whenever the loop writes."""
        out: list[int] = []
        for p in (self.db, Path(str(self.db) + ".wal")):
            try:
                st = os.stat(p)
                out += [st.st_mtime_ns, st.st_size]
            except FileNotFoundError:
                if p == self.db:
                    return None
                out += [0, 0]
        return tuple(out)

    def _copy(self) -> tuple[Path, tuple] | None:
        before = self.stamp()
        if before is None:
            raise HistoryUnavailable(f"{self.db}: no history yet; start a run with `autoloop run TARGET.py`", 404)
        age = time.time() - max(before[0], before[2]) / 1e9
        if age < self.settle_s:  # the loop is writing right now: let it finish
            time.sleep(self.settle_s - age)
            return None
        self._n += 1
        dest = self._dir / f"history-{self._n}.duckdb"
        shutil.copyfile(self.db, dest)
        if before[3]:
            try:
                shutil.copyfile(str(self.db) + ".wal", str(dest) + ".wal")
            except FileNotFoundError:
                pass
        if self.stamp() != before:
            self._discard(dest)
            return None
        return dest, before

    def _discard(self, path: Path | None) -> None:
        if path is not None:
            for p in (path, Path(str(path) + ".wal")):
                p.unlink(missing_ok=True)

    def _refresh(self) -> None:
        stamp = self.stamp()
        if stamp is not None and stamp == self._stamp and self._con is not None:
            return
        last_error: Exception | None = None
        for attempt in range(40):
            got = self._copy()
            if got is None:
                time.sleep(0.01 * (attempt + 1))
                continue
            dest, st = got
            try:
                with envguard.opening():
                    con = duckdb.connect(str(dest), read_only=True)
            except duckdb.Error as e:  # a torn copy, or a file this DuckDB cannot read
                last_error = e
                self._discard(dest)
                if "version" in str(e).lower() or "storage" in str(e).lower():
                    raise HistoryUnavailable(
                        f"{self.db} cannot be read by DuckDB {duckdb.__version__} ({str(e).splitlines()[0]}): it was "
                        "written by a newer DuckDB; upgrade duckdb in this environment (pip install -U duckdb)", 409)
                continue
            try:
                version = store.schema_version(con)
                con.execute("SELECT count(*) FROM runs").fetchone()
            except duckdb.Error as e:
                con.close()
                self._discard(dest)
                last_error = e
                continue
            if version > store.SCHEMA_VERSION:
                con.close()
                self._discard(dest)
                raise HistoryUnavailable(store.newer_schema_message(self.db, version), 409)
            old_con, old_file = self._con, self._file
            self._con, self._file, self._stamp = con, dest, st
            self.copies += 1
            if old_con is not None:
                old_con.close()
            self._discard(old_file)
            return
        if self._con is not None:
            return  # the loop keeps writing: serve the previous snapshot, the next poll catches up
        raise HistoryUnavailable(f"{self.db}: could not read a consistent copy ({last_error})")

    def current_stamp(self) -> tuple | None:
        """The stamp of the snapshot answering now (refreshed first)."""
        with self._lock:
            self._refresh()
            return self._stamp

    def query(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh()
            cur = self._con.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            shutil.rmtree(self._dir, ignore_errors=True)


def _clean(v: Any) -> Any:
    """JSON-safe values: timestamps as ISO text, non-finite floats as None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _row(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if k in JSON_COLUMNS and isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out[k] = _clean(v)
    return out


class Dashboard:
    """Every read the pages make, from the snapshot, git and live.json; nothing here writes."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.snap = Snapshot(self.runs_dir / "history.duckdb")
        self._detail_cache: dict[tuple, tuple] = {}
        self._live_iter: dict[str, tuple[int, int]] = {}  # run_id -> (live.json mtime, its iteration)

    def close(self) -> None:
        self.snap.close()

    # -- cheap: what polling asks -----------------------------------------------------------------
    def version(self, run_id: str | None = None) -> str:
        parts = [str(self.snap.stamp())]
        if run_id and _safe_id(run_id):
            try:
                mtime = os.stat(self.runs_dir / run_id / "live.json").st_mtime_ns
                parts.append(str(mtime))
                # A member that starts on a node changes members.json, not live.json: the page redraws for it too.
                parts.append(str(os.stat(self._members_path(run_id, mtime)).st_mtime_ns))
            except (OSError, TypeError, ValueError):
                pass
        return "|".join(parts)

    def _members_path(self, run_id: str, live_mtime: int) -> Path:
        """members.json of the iteration live.json names (read again only when live.json changed)."""
        hit = self._live_iter.get(run_id)
        if hit is None or hit[0] != live_mtime:
            it = json.loads((self.runs_dir / run_id / "live.json").read_text()).get("iter")
            hit = self._live_iter[run_id] = (live_mtime, int(it))
        return self.runs_dir / run_id / "iters" / f"{hit[1]:03d}" / MEMBERS_FILE

    def live(self, run_id: str) -> dict[str, Any] | None:
        """live.json of a running loop, and its members in flight per node (autoloop.members: the same
        file `autoloop status` reads), each with its phase and how long it has run."""
        try:
            live = json.loads((self.runs_dir / run_id / "live.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if live.get("phase_started"):
            live["phase_elapsed_s"] = round(time.time() - float(live["phase_started"]), 1)
        live["members"] = members.in_flight(self.runs_dir / run_id, live.get("iter"))
        return live

    # -- runs ---------------------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        rows = self.snap.query("""
            SELECT r.run_id, r.target_name, r.direction, r.started_at, r.ended_at, r.status, r.stop_reason,
                   count(i.iter) FILTER (WHERE i.iter > 0 AND i.status NOT IN ('running', 'interrupted')) AS iterations,
                   count(*) FILTER (WHERE i.iter > 0 AND i.status = 'keep') AS kept,
                   coalesce(sum(i.cost_usd), 0) AS cost_usd, b.score AS best, b.iter AS best_iter,
                   (SELECT count(*) FROM llm_calls c WHERE c.run_id = r.run_id) AS llm_calls
            FROM runs r LEFT JOIN iterations i USING (run_id) LEFT JOIN best b USING (run_id)
            GROUP BY ALL ORDER BY r.started_at DESC""")
        for r in rows:
            r["status"] = run_state(self.runs_dir, r["run_id"], r["status"])
        return [_row(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.snap.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            return None
        run = _row(rows[0])
        run["status"] = run_state(self.runs_dir, run_id, run["status"])
        run.pop("packages", None)
        return run

    def run_detail(self, run_id: str) -> dict[str, Any] | None:
        """The run page's data. The iterations are serialised to JSON by DuckDB itself (one query, a few
        ms for 1,000 iterations), and embedded as is: see `run_detail_json`."""
        text = self.run_detail_json(run_id)
        return None if text is None else json.loads(text)

    def run_detail_json(self, run_id: str) -> str | None:
        run = self.run(run_id)
        if run is None:
            return None
        key = (self.snap.current_stamp(), run_id)
        if key not in self._detail_cache:  # a snapshot never changes: its answers can be kept
            self._detail_cache = {key: self._iterations_json(run_id, run)}
        row, names, params = self._detail_cache[key]
        show = [c for c in (run.get("show_columns") or []) if c in names]
        run.update(iterations_done=row["done"], kept=row["kept"], cost_usd=row["cost_usd"],
                   best=_clean(row["best"]), best_iter=row["best_iter"])
        head = {"run": run, "components": show + [n for n in names if n not in show], "params": params,
                "live": self.live(run_id) if run["status"] == "running" else None, "llm_calls": row["llm_calls"]}
        text = json.dumps(head, default=_clean, allow_nan=False, separators=(",", ":"))
        return text[:-1] + ',"iterations":' + row["j"] + "}"

    def _iterations_json(self, run_id: str, run: dict[str, Any]) -> tuple[dict, list[str], list[str]]:
        fin = lambda c: f"CASE WHEN isfinite({c}) THEN {c} END"  # JSON has no NaN/inf  # noqa: E731
        doubles = ["score", "incumbent_score", "delta", "ci_low", "ci_high", "propose_s", "run_s", "score_s",
                   "overhead_s", "total_s", "peak_rss_mb", "cost_usd"]
        fields = ", ".join([f"'{c}', {fin('i.' + c)}" for c in doubles] + [
            "'iter', i.iter", "'status', i.status", "'reason', i.reason", "'tag', i.tag",
            "'description', i.description", "'llm_calls', i.llm_calls", "'redo_of', i.redo_of",
            "'params', coalesce(try_cast(i.params AS JSON), '{}'::JSON)",
            "'components', coalesce(m.components, '{}'::JSON)",
            f"'best_so_far', {fin('i.best_so_far')}",
            f"'elapsed_s', {fin('epoch(coalesce(i.ended_at, i.started_at)) - epoch(r.started_at)')}",
            # the end of a traceback is where the error is: its last non-blank line, at most 400 characters
            r"'error_excerpt', right(regexp_extract(rtrim(coalesce(i.error, ''), chr(10) || chr(13) || ' '), '[^\n]*$'), 400)",
        ])
        row = self.snap.query(f"""
            WITH m AS (SELECT iter, json_group_object(name, {fin('value')}) AS components
                       FROM metrics WHERE run_id = $1 GROUP BY iter),
                 i AS (SELECT *, CASE WHEN (SELECT direction FROM runs WHERE run_id = $1) = 'min'
                                      THEN min(CASE WHEN status = 'keep' THEN score END) OVER w
                                      ELSE max(CASE WHEN status = 'keep' THEN score END) OVER w END AS best_so_far
                       FROM iterations WHERE run_id = $1
                       WINDOW w AS (ORDER BY iter ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
            SELECT CAST(coalesce(to_json(list(json_object({fields}) ORDER BY i.iter)), '[]') AS VARCHAR) AS j,
                   count(*) FILTER (WHERE i.iter > 0 AND i.status NOT IN ('running', 'interrupted')) AS done,
                   count(*) FILTER (WHERE i.iter > 0 AND i.status = 'keep') AS kept,
                   coalesce(sum(i.cost_usd), 0) AS cost_usd,
                   arg_max(i.score, i.iter) FILTER (WHERE i.status = 'keep') AS best,
                   max(i.iter) FILTER (WHERE i.status = 'keep') AS best_iter,
                   (SELECT count(*) FROM llm_calls WHERE run_id = $1) AS llm_calls
            FROM i LEFT JOIN m USING (iter) JOIN runs r USING (run_id)""", [run_id])[0]
        names = [r["name"] for r in self.snap.query(
            "SELECT name FROM metrics WHERE run_id = ? GROUP BY name ORDER BY min(iter), name", [run_id])]
        params = [r["k"] for r in self.snap.query("""
            SELECT k FROM (SELECT iter, unnest(json_keys(params)) AS k FROM iterations
                           WHERE run_id = ? AND params IS NOT NULL AND params <> '{}')
            GROUP BY k ORDER BY min(iter), k""", [run_id])]
        return row, names, params

    def curves(self, run_ids: list[str]) -> list[dict[str, Any]]:
        out = []
        for rid in run_ids:
            run = self.run(rid)
            if run is None:
                continue
            pts = self.snap.query("""
                SELECT iter, elapsed_s, status, score, best_so_far FROM curve WHERE run_id = ? ORDER BY iter""", [rid])
            out.append({"run_id": rid, "target_name": run["target_name"], "direction": run["direction"],
                        "points": [_row(p) for p in pts]})
        return out

    def llm(self, run_id: str) -> dict[str, Any]:
        calls = self.snap.query("""
            SELECT epoch(c.ts) - epoch(r.started_at) AS t, c.iter, c.cost_usd, c.input_tokens, c.output_tokens,
                   c.cache_hit, c.model, c.status
            FROM llm_calls c JOIN runs r USING (run_id) WHERE c.run_id = ? ORDER BY c.ts, c.iter, c.n""", [run_id])
        iters = self.snap.query("""
            SELECT i.iter, epoch(i.ended_at) - epoch(r.started_at) AS t, coalesce(i.cost_usd, 0) AS cost_usd,
                   coalesce(i.llm_calls, 0) AS llm_calls
            FROM iterations i JOIN runs r USING (run_id) WHERE i.run_id = ? AND i.ended_at IS NOT NULL
            ORDER BY i.iter""", [run_id])
        t, n, usd = [], [], []
        total = 0.0
        step = max(1, len(calls) // 4000)  # cumulative values stay exact at the points sent
        for k, c in enumerate(calls):
            total += float(c["cost_usd"] or 0)
            if k % step == 0 or k == len(calls) - 1:
                t.append(_clean(c["t"]))
                n.append(k + 1)
                usd.append(round(total, 6))
        it_t, it_n, it_usd = [], [], []
        cn, cu = 0, 0.0
        for i in iters:
            cn += int(i["llm_calls"] or 0)
            cu += float(i["cost_usd"] or 0)
            it_t.append(_clean(i["t"]))
            it_n.append(cn)
            it_usd.append(round(cu, 6))
        models: dict[str, dict[str, Any]] = {}
        for c in calls:
            m = models.setdefault(c["model"] or "?", {"calls": 0, "cost_usd": 0.0, "input_tokens": 0,
                                                      "output_tokens": 0, "cache_hits": 0})
            m["calls"] += 1
            m["cost_usd"] += float(c["cost_usd"] or 0)
            m["input_tokens"] += int(c["input_tokens"] or 0)
            m["output_tokens"] += int(c["output_tokens"] or 0)
            m["cache_hits"] += bool(c["cache_hit"])
        return {"calls": {"t": t, "n": n, "usd": usd}, "iterations": {"t": it_t, "n": it_n, "usd": it_usd},
                "models": models, "total_calls": len(calls), "total_usd": round(cu if not calls else total, 6)}

    # -- one candidate --------------------------------------------------------------------------------
    def candidate(self, run_id: str, n: int) -> dict[str, Any] | None:
        run = self.run(run_id)
        if run is None:
            return None
        rows = self.snap.query("SELECT * FROM iterations WHERE run_id = ? AND iter = ?", [run_id, n])
        if not rows:
            return None
        it = _row(rows[0])
        it["metrics"] = {m["name"]: _clean(m["value"]) for m in self.snap.query(
            "SELECT name, value FROM metrics WHERE run_id = ? AND iter = ? ORDER BY name", [run_id, n])}
        inc = self.snap.query("""
            SELECT iter, commit, score FROM iterations WHERE run_id = ? AND iter < ? AND status = 'keep'
            ORDER BY iter DESC LIMIT 1""", [run_id, n])
        inc_row = _row(inc[0]) if inc else None
        if inc_row:
            inc_row["metrics"] = {m["name"]: _clean(m["value"]) for m in self.snap.query(
                "SELECT name, value FROM metrics WHERE run_id = ? AND iter = ? ORDER BY name", [run_id, inc_row["iter"]])}
        diff = None
        if it.get("commit"):
            diff = git_diff(self.runs_dir / run_id / "state", inc_row["commit"] if inc_row else None, it["commit"])
        return {"run": {"run_id": run_id, "direction": run["direction"], "target_name": run["target_name"]},
                "iteration": it, "incumbent": inc_row, "diff": diff,
                "items": self.item_changes(run_id, n, inc_row["iter"] if inc_row else None, run["direction"])}

    def item_changes(self, run_id: str, n: int, inc_iter: int | None, direction: str) -> dict[str, Any]:
        """Per gold item: the candidate's value against the incumbent's (measured with it when the target
        compares interleaved, else the incumbent's own scoring). Values go the score's way."""
        rows = self.snap.query("SELECT role, item_id, value FROM item_scores WHERE run_id = ? AND iter = ?",
                               [run_id, n])
        cand = {r["item_id"]: r["value"] for r in rows if r["role"] == "candidate"}
        base = {r["item_id"]: r["value"] for r in rows if r["role"] == "incumbent"}
        source = "measured alongside the candidate (interleaved)"
        if not base and inc_iter is not None:
            base = {r["item_id"]: r["value"] for r in self.snap.query(
                "SELECT item_id, value FROM item_scores WHERE run_id = ? AND iter = ? AND role = 'candidate'",
                [run_id, inc_iter])}
            source = f"the incumbent's own scoring (iteration {inc_iter})"
        sign = -1.0 if direction == "min" else 1.0
        out = []
        better = worse = same = 0
        for item in sorted(set(cand) | set(base)):
            a, b = base.get(item), cand.get(item)
            d = (b - a) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            if d is not None and math.isfinite(d):
                g = sign * d
                better += g > 0
                worse += g < 0
                same += g == 0
                change = "better" if g > 0 else "worse" if g < 0 else "same"
            else:
                change = "new" if a is None else "gone" if b is None else "n/a"
            out.append({"item_id": item, "before": _clean(a), "after": _clean(b), "delta": _clean(d), "change": change})
        out.sort(key=lambda r: (-(abs(r["delta"]) if r["delta"] is not None else -1), r["item_id"]))
        return {"n": len(out), "better": better, "worse": worse, "same": same, "source": source if base else None,
                "rows": out[:MAX_ITEMS], "truncated": len(out) > MAX_ITEMS}


def _excerpt(err: str) -> str:
    """The end of a traceback is where the error is."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return text[-ERROR_EXCERPT:]


def _safe_id(run_id: str) -> bool:
    from autoloop.runs import RUN_ID_RE

    return bool(RUN_ID_RE.match(run_id)) and "/" not in run_id and ".." not in run_id


# -- git -----------------------------------------------------------------------------------------------
def _git(state: Path, *args: str, limit: int | None = None) -> str:
    # Every argument is engine-made (validated shas, fixed options): no user string becomes an option.
    sep = state.parent / f"{state.name}.git"  # the run's repository beside its state (autoloop/checkpoint.py)
    where = ["--git-dir", str(sep), "--work-tree", str(state)] if sep.is_dir() else ["-C", str(state)]
    p = subprocess.run(["git", *where, "-c", "core.quotepath=off", *args], capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode(errors="replace").strip()[:300])
    out = p.stdout[:limit] if limit else p.stdout
    return out.decode(errors="replace")


def _manifest(state: Path, commit: str | None) -> dict[str, dict]:
    from autoloop.checkpoint import MANIFEST

    if commit is None:
        return {}
    try:
        return json.loads(_git(state, "show", f"{commit}:{MANIFEST}"))
    except (RuntimeError, json.JSONDecodeError):
        return {}


def _sizes(state: Path, commit: str | None) -> dict[str, int]:
    if commit is None:
        return {}
    out = {}
    for rec in _git(state, "ls-tree", "-r", "-l", "-z", commit).split("\0"):
        if not rec:
            continue
        meta, path = rec.split("\t", 1)
        size = meta.split()[-1]
        out[path] = int(size) if size.isdigit() else 0
    return out


def git_diff(state: Path, base: str | None, commit: str) -> dict[str, Any]:
    """Text diff of `commit` against `base` (the incumbent; None: against nothing, for the baseline), files
    stored outside git (large files) by name, size and sha256."""
    from autoloop.checkpoint import MANIFEST

    if not (state / ".git").exists() and not (state.parent / f"{state.name}.git").is_dir():
        return {"error": f"{state}: no git state"}
    for sha in (base, commit):
        if sha is not None and not SHA_RE.match(sha):
            return {"error": f"not a commit id: {sha!r}"}
    try:
        empty = _git(state, "hash-object", "-t", "tree", "/dev/null").strip()
        a = base or empty
        numstat = _git(state, "diff", "--no-renames", "--numstat", "-z", a, commit)
        names = _git(state, "diff", "--no-renames", "--name-status", "-z", a, commit)
        before, after = _sizes(state, base), _sizes(state, commit)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        return {"error": f"git: {e}"}
    status: dict[str, str] = {}
    parts = names.split("\0")
    for k in range(0, len(parts) - 1, 2):
        status[parts[k + 1]] = parts[k]
    files = []
    for rec in numstat.split("\0"):
        if not rec:
            continue
        added, deleted, path = rec.split("\t", 2)
        if path == MANIFEST:
            continue
        binary = added == "-"
        files.append({"path": path, "status": status.get(path, "M"), "binary": binary,
                      "added": None if binary else int(added), "deleted": None if binary else int(deleted),
                      "size_before": before.get(path), "size_after": after.get(path), "diff": None, "note": None})
    budget = MAX_DIFF_BYTES
    truncated = False
    for f in files:
        if f["binary"]:
            f["note"] = "binary file: shown by name and size"
            continue
        if (f["added"] or 0) + (f["deleted"] or 0) > MAX_FILE_DIFF_LINES:
            f["note"] = f"{f['added']} lines added, {f['deleted']} removed: too long to show"
            continue
        if budget <= 0:
            f["note"] = "diff not shown: the page's diff budget is spent (see git in the run's state dir)"
            truncated = True
            continue
        try:
            text = _git(state, "diff", "--no-color", "--no-ext-diff", "--no-renames", "-U3", a, commit, "--",
                        ":(literal)" + f["path"], limit=budget)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            f["note"] = f"git: {e}"
            continue
        body = text.split("\n@@", 1)
        f["diff"] = ("@@" + body[1]) if len(body) == 2 else ""
        budget -= len(text)
    ma, mb = _manifest(state, base), _manifest(state, commit)
    large = []
    for path in sorted(set(ma) | set(mb)):
        x, y = ma.get(path), mb.get(path)
        if x == y:
            continue
        large.append({"path": path, "status": "A" if x is None else "D" if y is None else "M",
                      "size_before": (x or {}).get("size"), "size_after": (y or {}).get("size"),
                      "sha256_before": (x or {}).get("sha256"), "sha256_after": (y or {}).get("sha256")})
    return {"base": base, "commit": commit, "files": files, "large_files": large, "truncated": truncated}
