"""The demo service: a candidate-profile JSON API over SQLite (stdlib only; run as a script).

    python server.py --db instance.sqlite --config config.json [--port 0]

Prints "PORT <n>" (and writes it to --port-file) once listening on 127.0.0.1. Endpoints:
    GET  /health
    GET  /search?skill=PROG&min_level=4      top 20 by level, years, id
    GET  /profiles/<id>                      detail with skills
    GET  /stats/skills?location=London       per-skill count / avg years / avg level / available
    POST /profiles/<id>/availability  {"available": true|false}
The knobs (see config.py) pick query formulations, a response cache and connection settings.
Its lifetime is guarded by guardian.py (parent death, SIGTERM), not here.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SEARCH_SQL = {
    # Scans every profile and runs the skill lookup twice per row.
    "correlated": """SELECT p.id, p.name, p.location, p.years, p.available,
            (SELECT s.level FROM profile_skills s WHERE s.profile_id = p.id AND s.skill = :skill) AS level
        FROM profiles p
        WHERE (SELECT s.level FROM profile_skills s WHERE s.profile_id = p.id AND s.skill = :skill) >= :lvl
        ORDER BY level DESC, p.years DESC, p.id LIMIT 20""",
    "join": """SELECT p.id, p.name, p.location, p.years, p.available, s.level
        FROM profile_skills s JOIN profiles p ON p.id = s.profile_id
        WHERE s.skill = :skill AND s.level >= :lvl
        ORDER BY s.level DESC, p.years DESC, p.id LIMIT 20""",
}
DETAIL_SQL = {
    "text_scan": "SELECT id, name, email, location, years, available FROM profiles WHERE CAST(id AS TEXT) = :id",
    "pk": "SELECT id, name, email, location, years, available FROM profiles WHERE id = :id",
}
SKILLS_OF_SQL = "SELECT skill, level FROM profile_skills WHERE profile_id = ? ORDER BY skill"
# Locations never differ only by case nor contain % or _, so LIKE and = return the same rows.
_STATS = """SELECT s.skill, COUNT(*), SUM(p.years), SUM(s.level), SUM(p.available)
        FROM profiles p JOIN profile_skills s ON s.profile_id = p.id
        WHERE p.location {op} :loc GROUP BY s.skill ORDER BY s.skill"""
STATS_SQL = {"like": _STATS.format(op="LIKE"), "eq": _STATS.format(op="=")}


class BadRequest(Exception):
    pass


class NotFound(Exception):
    pass


class ResponseCache:
    """none | lru (cleared by writes) | ttl (never cleared by writes: stale) | lru_pathkey (wrong key)."""

    def __init__(self, mode: str, size: int, ttl_s: float):
        self.mode, self.size, self.ttl_s = mode, max(1, size), ttl_s
        self._d: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, path: str) -> str:
        if self.mode == "lru_pathkey":
            return urlsplit(path).path
        parts = urlsplit(path)
        return parts.path + "?" + "&".join(sorted(parts.query.split("&")))

    def get(self, path: str):
        if self.mode == "none":
            return None
        with self._lock:
            hit = self._d.get(self.key(path))
            if hit is None:
                return None
            if self.mode == "ttl" and time.monotonic() - hit[0] > self.ttl_s:
                del self._d[self.key(path)]
                return None
            self._d.move_to_end(self.key(path))
            return hit[1], hit[2]

    def put(self, path: str, status: int, body: bytes) -> None:
        if self.mode == "none":
            return
        with self._lock:
            self._d[self.key(path)] = (time.monotonic(), status, body)
            self._d.move_to_end(self.key(path))
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def on_write(self) -> None:
        if self.mode in ("lru", "lru_pathkey"):
            with self._lock:
                self._d.clear()


class App:
    def __init__(self, db: str, cfg: dict):
        self.cfg = cfg
        self.cache = ResponseCache(cfg["cache"], cfg["cache_size"], cfg["cache_ttl_s"])
        self.pool: queue.Queue[sqlite3.Connection] = queue.Queue()
        for _ in range(max(1, cfg["workers"])):
            con = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            con.execute(f"PRAGMA cache_size = -{int(cfg['sqlite_cache_kb'])}")
            con.execute(f"PRAGMA mmap_size = {int(cfg['mmap_mb']) * 1024 * 1024}")
            con.execute("PRAGMA busy_timeout = 5000")
            self.pool.put(con)

    def query(self, sql: str, args) -> list[tuple]:
        con = self.pool.get()  # the pool size is the "workers" knob: queries running at once
        try:
            return con.execute(sql, args).fetchall()
        finally:
            self.pool.put(con)

    def get(self, path: str) -> tuple[int, object]:
        parts = urlsplit(path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        seg = [s for s in parts.path.split("/") if s]
        if seg == ["health"]:
            return 200, {"ok": True}
        if seg == ["search"]:
            skill, lvl = q.get("skill", ""), _int(q.get("min_level", "1"), "min_level")
            rows = self.query(SEARCH_SQL[self.cfg["search_query"]], {"skill": skill, "lvl": lvl})
            res = [{"id": r[0], "name": r[1], "location": r[2], "years": r[3], "available": bool(r[4]),
                    "level": r[5]} for r in rows]
            return 200, {"skill": skill, "min_level": lvl, "results": res}
        if len(seg) == 2 and seg[0] == "profiles":
            pid = _int(seg[1], "id")
            rows = self.query(DETAIL_SQL[self.cfg["detail_query"]], {"id": str(pid) if self.cfg["detail_query"] == "text_scan" else pid})
            if not rows:
                raise NotFound(f"no profile {pid}")
            r = rows[0]
            skills = [{"skill": s, "level": lv} for s, lv in self.query(SKILLS_OF_SQL, (pid,))]
            return 200, {"id": r[0], "name": r[1], "email": r[2], "location": r[3], "years": r[4],
                         "available": bool(r[5]), "skills": skills}
        if seg == ["stats", "skills"]:
            loc = q.get("location", "")
            rows = self.query(STATS_SQL[self.cfg["stats_query"]], {"loc": loc})
            return 200, {"location": loc, "skills": [stat_row(*r) for r in rows]}
        raise NotFound(parts.path)

    def post(self, path: str, body: bytes) -> tuple[int, object]:
        seg = [s for s in urlsplit(path).path.split("/") if s]
        if len(seg) == 3 and seg[0] == "profiles" and seg[2] == "availability":
            pid = _int(seg[1], "id")
            try:
                avail = json.loads(body or b"{}")["available"]
            except (ValueError, KeyError, TypeError):
                raise BadRequest('body must be {"available": true|false}') from None
            con = self.pool.get()
            try:
                n = con.execute("UPDATE profiles SET available = ? WHERE id = ?", (int(bool(avail)), pid)).rowcount
            finally:
                self.pool.put(con)
            self.cache.on_write()
            if not n:
                raise NotFound(f"no profile {pid}")
            return 200, {"id": pid, "available": bool(avail)}
        raise NotFound(path)


def stat_row(skill: str, n: int, sum_years: int, sum_level: int, n_avail: int) -> dict:
    """Shared with reference.py so both round identically."""
    return {"skill": skill, "n": n, "avg_years": round(sum_years / n, 3), "avg_level": round(sum_level / n, 3),
            "available": n_avail}


def _int(v: str, name: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the replayer reuses connections
        disable_nagle_algorithm = True  # else headers and body in two packets meet delayed ACKs: +40 ms

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self._headers_buffer.append(b"\r\n" + body)  # one write for headers and body
            self.flush_headers()

        def _handle(self, fn, *args) -> tuple[int, bytes]:
            try:
                status, obj = fn(*args)
            except NotFound as e:
                status, obj = 404, {"error": f"not found: {e}"}
            except BadRequest as e:
                status, obj = 400, {"error": str(e)}
            except Exception as e:  # a 500 is an answer too: correctness counts it wrong
                status, obj = 500, {"error": f"{type(e).__name__}: {e}"}
            return status, json.dumps(obj, separators=(",", ":")).encode()

        def do_GET(self):
            hit = app.cache.get(self.path) if self.path != "/health" else None
            if hit is not None:
                return self._send(*hit)
            status, body = self._handle(app.get, self.path)
            if status == 200 and self.path != "/health":
                app.cache.put(self.path, status, body)
            self._send(status, body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self._send(*self._handle(app.post, self.path, self.rfile.read(n)))

        def log_message(self, fmt, *args):  # quiet: thousands of requests per iteration
            pass

    return Handler


def _parse_set(items: list[str]) -> dict:
    """--set key=value (value as JSON when it parses, else a string): knobs templated on a command line."""
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="an instance database (already holding the config's indexes)")
    ap.add_argument("--rows", type=int, help="instead of --db: copy the cached base database of this size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="config JSON file (knobs)")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="override one knob")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    a = ap.parse_args(argv)
    cfg = {}
    if a.config:
        with open(a.config) as f:
            cfg = json.load(f)
    cfg.update(_parse_set(a.set))
    own_copy = None
    if a.db is None:
        if a.rows is None:
            ap.error("give --db or --rows")
        own_copy = _own_instance(a.rows, a.seed, cfg)
        cfg = own_copy[1]
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(App(a.db or str(own_copy[0]), cfg)))
    server.daemon_threads = True
    port = server.server_address[1]
    if a.port_file:
        tmp = f"{a.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, a.port_file)
    print(f"PORT {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        if own_copy:
            import shutil

            shutil.rmtree(own_copy[0].parent, ignore_errors=True)


def _own_instance(rows: int, seed: int, cfg: dict):
    """Standalone mode (the generic target's example): validate knobs, copy the base db, add indexes.

    The copy lives under the cache's tmp/ named by pid, so a SIGKILLed server's copy is removed later."""
    import signal
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # autoloop, for config validation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from api_demo import config as knobs
    from api_demo import data

    cfg = knobs.validate(cfg, "server --set/--config")
    base = data.ensure_db(rows, seed)
    root = data.default_cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"inst-{os.getpid()}-", dir=root))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the copy
    return data.prepare_instance_db(base, work / "instance.sqlite", knobs.indexes(cfg)), cfg


if __name__ == "__main__":
    sys.exit(main())
