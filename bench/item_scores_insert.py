"""How the engine writes an iteration's per-item scores into DuckDB (autoloop/store.py), against the multi-row
VALUES insert it used before, measured in the same run on the same rows (ratios: absolute times are noisy).

    python bench/item_scores_insert.py [--items 500,20000,100000] [--repeat 3]

Each insert goes into a fresh table of a real DuckDB file; the best of --repeat runs is taken per method."""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import duckdb

SCHEMA = "CREATE OR REPLACE TABLE item_scores (run_id VARCHAR, iter INTEGER, role VARCHAR, item_id VARCHAR, value DOUBLE)"


def multirow(con: duckdb.DuckDBPyConnection, items: list[list]) -> None:
    con.execute("INSERT INTO item_scores VALUES " + ",".join(["(?,?,?,?,?)"] * len(items)), [v for r in items for v in r])


def unnest(con: duckdb.DuckDBPyConnection, items: list[list]) -> None:
    con.execute("INSERT INTO item_scores SELECT ?, ?, unnest(?), unnest(?), unnest(?)",
                [items[0][0], items[0][1], [r[2] for r in items], [r[3] for r in items], [r[4] for r in items]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="500,20000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(str(Path(d) / "h.duckdb"))
        print(f"{'items':>8} {'multi-row VALUES':>17} {'unnest (autoloop)':>18} {'ratio':>7}")
        for n in (int(x) for x in a.items.split(",")):
            items = [["run", 1, "candidate", f"item-{i}", rng.random()] for i in range(n)]
            best = {}
            for name, fn in (("multirow", multirow), ("unnest", unnest)):
                times = []
                for _ in range(a.repeat):
                    con.execute(SCHEMA)
                    t = time.perf_counter()
                    fn(con, items)
                    times.append(time.perf_counter() - t)
                    assert con.execute("SELECT count(*) FROM item_scores").fetchone()[0] == n
                best[name] = min(times)
            print(f"{n:>8} {best['multirow']:>16.3f}s {best['unnest']:>17.3f}s {best['multirow'] / best['unnest']:>6.1f}x")


if __name__ == "__main__":
    main()
