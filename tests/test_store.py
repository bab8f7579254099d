"""The DuckDB schema is the documented one, migrations apply once, and readers retry past a writer."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb

from autoloop import store

# The documented schema (README "History schema"): table -> columns, in order.
DOCUMENTED = {
    "runs": ["run_id", "target_name", "target_path", "target_sha256", "gold_path", "gold_sha256", "direction",
             "config", "host", "platform", "python", "packages", "project_commit", "target_info", "state_dir",
             "started_at", "ended_at", "stop_reason", "status", "show_columns"],
    "iterations": ["run_id", "iter", "started_at", "ended_at", "status", "score", "incumbent_score", "delta",
                   "ci_low", "ci_high", "reason", "error", "tag", "commit", "params", "description", "propose_s",
                   "run_s", "score_s", "overhead_s", "total_s", "peak_rss_mb", "cost_usd", "llm_calls", "info",
                   "redo_of"],
    "metrics": ["run_id", "iter", "name", "value"],
    "item_scores": ["run_id", "iter", "role", "item_id", "value"],
    "events": ["run_id", "seq", "ts", "kind", "payload"],
    "llm_calls": ["run_id", "iter", "n", "ts", "phase", "provider", "model", "input_tokens", "output_tokens",
                  "cache_read_tokens", "cache_creation_tokens", "cost_usd", "latency_s", "cache_hit", "status",
                  "error", "retries", "request_hash", "purpose"],
    "reference_scores": ["run_id", "name", "kind", "n", "score", "components", "error"],
    "evaluations": ["eval_id", "ts", "run_id", "checkpoint", "commit", "target_path", "target_sha256", "gold_path",
                    "gold_sha256", "split", "options", "status", "error", "duration_s", "score", "components", "info"],
    "eval_items": ["eval_id", "item_id", "value"],
    "journal_sync": ["run_id", "seq"],
    "schema_migrations": ["version", "applied_at"],
}


def test_schema_matches_documentation_and_migrations_apply_once(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    con = duckdb.connect(str(db))
    assert store.migrate(con) == store.SCHEMA_VERSION
    assert store.migrate(con) == store.SCHEMA_VERSION  # idempotent
    assert con.execute("select count(*) from schema_migrations").fetchone()[0] == store.SCHEMA_VERSION
    for table, cols in DOCUMENTED.items():
        got = [r[0] for r in con.execute(f"describe {table}").fetchall()]
        assert got == cols, table
    views = {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
    assert {"curve", "best", "last_run"} <= views
    con.close()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for table in DOCUMENTED:
        assert f"`{table}`" in readme, f"README does not document table {table}"


def test_reader_waits_for_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    # A real second process holds the read-write connection for a while, as a running loop would.
    writer = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; from autoloop import store; con = duckdb.connect(sys.argv[1]); "
        "store.migrate(con); print('locked', flush=True); time.sleep(1.5); con.close()"), str(db)],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "locked"
    t0 = time.time()
    cols, rows = store.query(db, "select count(*) from runs", timeout_s=20)
    assert rows == [(0,)]
    assert time.time() - t0 >= 0.3  # it really waited for the lock rather than failing
    writer.wait()
