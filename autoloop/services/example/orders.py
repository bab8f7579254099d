"""An orders API to tune (written for the tests, not the demo): stdlib http.server over SQLite.

    python -m autoloop.services.example.orders --port 8080 --db /tmp/x/orders.sqlite [--rows 20000]
           [--index true] [--cache none|lru|stale] [--threads 1] [--sync-log false]

Like many services in dev mode it (re)builds its database at --db from a fixed seed when it starts, so two
instances must not share the file: give each its own ({scratch} in the tuning command). Knobs:

    index     index on orders(customer_id): the real win (the per-customer endpoints scan every order without it)
    cache     none | lru (a response cache cleared by every write: correct) | stale (never cleared: as fast as
              lru, but answers from before a write: the trap)
    threads   database connections serving requests at once (a sequential client never notices)
    sync_log  sign (a key-derivation checksum: ~1.5 ms of CPU) and flush an audit log line after every
              request: it only costs
Endpoints:
    GET  /health
    GET  /customers/<id>/orders        the customer's orders, by id
    GET  /customers/<id>/summary       order count, total, balance
    GET  /orders/<id>                  one order
    POST /orders/<id>/status           {"status": "shipped"}: idempotent
    GET  /pay?order=<id>               pays the order: a new payment row, the balance goes down. Not
                                       idempotent (and a GET): a second replay gets other answers
    POST /admin/reset                  puts the data back as it was built (and empties the cache)
`--reset` (with --db) does the same to a database file from the command line, and exits.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CUSTOMERS_PER_ROW = 10  # 20k orders -> 2000 customers


def build(db: str, rows: int, index: bool) -> None:
    if os.path.exists(db):
        os.remove(db)
    rng = random.Random(7)
    con = sqlite3.connect(db)
    n_cust = max(1, rows // CUSTOMERS_PER_ROW)
    con.executescript("""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance_cents INTEGER NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, amount_cents INTEGER NOT NULL,
                             status TEXT NOT NULL, day TEXT NOT NULL, note TEXT NOT NULL);
        CREATE TABLE payments (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL,
                               amount_cents INTEGER NOT NULL);""")
    con.executemany("INSERT INTO customers VALUES (?,?,?)",
                    [(c, f"customer {c}", 100_000 + rng.randint(0, 50_000)) for c in range(1, n_cust + 1)])
    con.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?)",
                    [(i, rng.randint(1, n_cust), rng.randint(100, 20_000), rng.choice(["new", "paid", "shipped"]),
                      f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "x" * rng.randint(50, 150))
                     for i in range(1, rows + 1)])
    if index:
        con.execute("CREATE INDEX idx_orders_customer ON orders(customer_id)")
    con.executescript("""
        CREATE TABLE initial_balances (id INTEGER PRIMARY KEY, balance_cents INTEGER NOT NULL);
        INSERT INTO initial_balances SELECT id, balance_cents FROM customers;
        CREATE TABLE initial_status (id INTEGER PRIMARY KEY, status TEXT NOT NULL);
        INSERT INTO initial_status SELECT id, status FROM orders;""")
    con.commit()
    con.close()


RESET = [("DELETE FROM payments", ()), ("DELETE FROM sqlite_sequence WHERE name = 'payments'", ()),
         ("UPDATE customers SET balance_cents = (SELECT balance_cents FROM initial_balances b WHERE b.id = customers.id)", ()),
         ("UPDATE orders SET status = (SELECT status FROM initial_status s WHERE s.id = orders.id)", ())]


def reset(db: str) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 5000")
    con.execute("BEGIN IMMEDIATE")
    for q, args in RESET:
        con.execute(q, args)
    con.execute("COMMIT")
    con.close()


class App:
    def __init__(self, db: str, a: argparse.Namespace):
        self.cache_mode, self.sync_log = a.cache, a.sync_log
        self.cache: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self.lock = threading.Lock()
        self.pool: queue.Queue = queue.Queue()
        for _ in range(a.threads):
            con = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            con.execute("PRAGMA busy_timeout = 5000")
            self.pool.put(con)
        self.log = open(os.path.join(os.path.dirname(db), "access.log"), "a")

    def sql(self, q: str, args=()) -> list[tuple]:
        con = self.pool.get()
        try:
            return con.execute(q, args).fetchall()
        finally:
            self.pool.put(con)

    def write(self, statements: list[tuple[str, tuple]], everything: bool = False) -> None:
        con = self.pool.get()
        try:
            con.execute("BEGIN IMMEDIATE")
            for q, args in statements:
                con.execute(q, args)
            con.execute("COMMIT")
        finally:
            self.pool.put(con)
        if self.cache_mode == "lru" or everything:  # the stale cache forgets to do this on ordinary writes
            with self.lock:
                self.cache.clear()

    def get(self, path: str) -> tuple[int, object]:
        u = urlsplit(path)
        seg = [s for s in u.path.split("/") if s]
        if seg == ["health"]:
            return 200, {"ok": True}
        if len(seg) == 3 and seg[0] == "customers" and seg[2] == "orders":
            cid = int(seg[1])
            rows = self.sql("SELECT id, amount_cents, status, day FROM orders WHERE customer_id = ? ORDER BY id",
                            (cid,))
            (last,), = self.sql("SELECT MAX(day) FROM orders WHERE customer_id = ?", (cid,))
            return 200, {"customer": cid, "last_day": last, "orders": [
                {"id": r[0], "amount_cents": r[1], "status": r[2], "day": r[3]} for r in rows]}
        if len(seg) == 3 and seg[0] == "customers" and seg[2] == "summary":
            cid = int(seg[1])
            (n, total, paid), = self.sql("SELECT COUNT(*), COALESCE(SUM(amount_cents), 0), COALESCE(SUM("
                                         "CASE WHEN status = 'paid' THEN amount_cents END), 0) FROM orders "
                                         "WHERE customer_id = ?", (cid,))
            (shipped,), = self.sql("SELECT COUNT(*) FROM orders WHERE customer_id = ? AND status = 'shipped'", (cid,))
            bal = self.sql("SELECT balance_cents FROM customers WHERE id = ?", (cid,))
            if not bal:
                return 404, {"error": f"no customer {cid}"}
            return 200, {"customer": cid, "orders": n, "shipped": shipped, "total_cents": total, "paid_cents": paid,
                         "balance_cents": bal[0][0]}
        if len(seg) == 2 and seg[0] == "orders":
            rows = self.sql("SELECT id, customer_id, amount_cents, status, day FROM orders WHERE id = ?", (int(seg[1]),))
            if not rows:
                return 404, {"error": f"no order {seg[1]}"}
            r = rows[0]
            return 200, {"id": r[0], "customer": r[1], "amount_cents": r[2], "status": r[3], "day": r[4]}
        if seg == ["pay"]:
            oid = int(parse_qs(u.query).get("order", ["0"])[0])
            rows = self.sql("SELECT customer_id, amount_cents FROM orders WHERE id = ?", (oid,))
            if not rows:
                return 404, {"error": f"no order {oid}"}
            cid, amount = rows[0]
            self.write([("INSERT INTO payments (order_id, amount_cents) VALUES (?, ?)", (oid, amount)),
                        ("UPDATE customers SET balance_cents = balance_cents - ? WHERE id = ?", (amount, cid)),
                        ("UPDATE orders SET status = 'paid' WHERE id = ?", (oid,))])
            pid = self.sql("SELECT MAX(id) FROM payments")[0][0]
            bal = self.sql("SELECT balance_cents FROM customers WHERE id = ?", (cid,))[0][0]
            return 200, {"payment": pid, "order": oid, "balance_cents": bal}
        return 404, {"error": f"not found: {u.path}"}

    def post(self, path: str, body: bytes) -> tuple[int, object]:
        seg = [s for s in urlsplit(path).path.split("/") if s]
        if seg == ["admin", "reset"]:
            self.write(RESET, everything=True)
            return 200, {"reset": True}
        if len(seg) == 3 and seg[0] == "orders" and seg[2] == "status":
            status = json.loads(body or b"{}").get("status")
            if status not in ("new", "paid", "shipped"):
                return 400, {"error": "status must be new, paid or shipped"}
            self.write([("UPDATE orders SET status = ? WHERE id = ?", (status, int(seg[1])))])
            return 200, {"id": int(seg[1]), "status": status}
        return 404, {"error": "not found"}


def handler(app: App):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def reply(self, status: int, body: bytes) -> None:
            if app.sync_log:  # the "cautious" setting: a signed audit line per request, flushed at once
                sig = hashlib.pbkdf2_hmac("sha256", body, b"audit-key", 4000).hex()[:16]  # ~1.5 ms of CPU
                app.log.write(f"{time.time():.3f} {self.command} {self.path} {status} {sig}\n")
                app.log.flush()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            cacheable = app.cache_mode != "none" and not self.path.startswith(("/pay", "/health"))
            if cacheable:
                with app.lock:
                    hit = app.cache.get(self.path)
                    if hit is not None:
                        app.cache.move_to_end(self.path)
                if hit is not None:
                    return self.reply(*hit)
            status, obj = app.get(self.path)
            body = json.dumps(obj).encode()
            if cacheable and status == 200:
                with app.lock:
                    app.cache[self.path] = (status, body)
                    while len(app.cache) > 256:
                        app.cache.popitem(last=False)
            self.reply(status, body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            status, obj = app.post(self.path, self.rfile.read(n))
            self.reply(status, json.dumps(obj).encode())

        def log_message(self, *args):
            pass

    return H


def flag(v: str) -> bool:
    if v not in ("true", "false"):
        raise argparse.ArgumentTypeError("use true or false")
    return v == "true"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--db", required=True)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--index", type=flag, default=False)
    ap.add_argument("--cache", choices=["none", "lru", "stale"], default="none")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sync-log", type=flag, default=False)
    ap.add_argument("--reset", action="store_true", help="reset the data in --db and exit")
    a = ap.parse_args()
    if a.reset:
        return reset(a.db)
    if a.port is None:
        ap.error("give --port (or --reset)")
    build(a.db, a.rows, a.index)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), handler(App(a.db, a)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
