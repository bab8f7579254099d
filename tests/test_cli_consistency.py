"""The CLI read as a user reads it: one sign for delta, one set of status words, one way to count
iterations, params as objects and columns, a CSV that concatenates across runs, `last_run` in SQL,
`autoloop compare`, and a README that defines every column. Real runs, real DuckDB, real git."""
from __future__ import annotations

import csv
import io
import json
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import ROOT, autoloop, sql
from test_engine import _start_engine, _wait_for


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, str, str]:
    """Two finished example_fit runs (a minimise target): 4 and 3 candidate iterations."""
    runs_dir = tmp_path_factory.mktemp("cli") / "runs"
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "4", "--no-progress", "--run-id", "fit-a")
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "3", "--no-progress", "--run-id", "fit-b")
    return runs_dir, "fit-a", "fit-b"


def test_delta_and_the_reason_say_the_same_signed_number_on_a_minimise_target(two_runs) -> None:
    runs_dir, a, _ = two_runs
    rows = sql(runs_dir, f"select iter, score, incumbent_score, delta, reason from iterations "
                         f"where run_id = '{a}' and delta is not null order by iter")
    assert rows and any(r["delta"] < 0 for r in rows)  # example_fit keeps at least one improvement (lower MAE)
    for r in rows:
        assert r["delta"] == pytest.approx(r["score"] - r["incumbent_score"])
        assert f"delta {r['delta']:+.4g}" in r["reason"], r["reason"]
        assert "lower is better" in r["reason"]
    assert "gain" not in " ".join(r["reason"] for r in rows)


def test_iterations_and_kept_count_as_max_iters_counts(two_runs) -> None:
    runs_dir, a, b = two_runs
    runs = {r["run_id"]: r for r in json.loads(autoloop(runs_dir, "runs", "--json").stdout)}
    assert runs[a]["iterations"] == 4 and runs[b]["iterations"] == 3  # --max-iters 4 / 3: the baseline is not one
    for rid in (a, b):
        keeps = sql(runs_dir, f"select count(*) n from iterations where run_id = '{rid}' and iter > 0 and status = 'keep'")
        assert runs[rid]["kept"] == keeps[0]["n"]
        st = json.loads(autoloop(runs_dir, "status", rid, "--json").stdout)
        assert (st["iterations"], st["kept"]) == (runs[rid]["iterations"], runs[rid]["kept"])


def test_status_and_runs_use_the_same_words(two_runs, tmp_path: Path) -> None:
    runs_dir, a, _ = two_runs
    runs = {r["run_id"]: r for r in json.loads(autoloop(runs_dir, "runs", "--json").stdout)}
    st = json.loads(autoloop(runs_dir, "status", a, "--json").stdout)
    assert runs[a]["status"] == st["status"] == "finished"
    assert autoloop(runs_dir, "status", a).stdout.startswith(f"{a}: finished (max_iters);")
    # An engine killed mid-run: the database still says "running", but nobody drives it.
    other = tmp_path / "runs"
    proc = _start_engine(other, {"BEHAVE_PLAN": "slowok:0.3:30", "BEHAVE_BUDGET": "60"})
    try:
        _wait_for(lambda: list(other.glob("*/iters/001/run.spec.json")))
        running = json.loads(autoloop(other, "runs", "--json").stdout)[0]
        assert running["status"] == "running"
        assert json.loads(autoloop(other, "status", "--json").stdout)["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)
    dead = json.loads(autoloop(other, "runs", "--json").stdout)[0]
    st = json.loads(autoloop(other, "status", "--json").stdout)
    assert dead["status"] == st["status"] == "interrupted"
    assert "interrupted (resumable" in autoloop(other, "status").stdout


def test_json_gives_params_as_objects(two_runs) -> None:
    runs_dir, a, _ = two_runs
    rows = sql(runs_dir, f"select iter, params, info from iterations where run_id = '{a}' order by iter")
    assert rows[0]["params"] == {} and isinstance(rows[1]["params"], dict) and len(rows[1]["params"]["coef"]) == 4
    assert isinstance(sql(runs_dir, "select config from runs")[0]["config"], dict)
    shown = json.loads(autoloop(runs_dir, "show", a, "--json").stdout)
    assert shown[1]["params"] == rows[1]["params"]


def test_params_are_columns_in_show_wide_and_the_csv(two_runs) -> None:
    runs_dir, a, _ = two_runs
    wide = autoloop(runs_dir, "show", a, "--wide").stdout
    assert "params.coef" in wide and "params.step" in wide
    text = autoloop(runs_dir, "export", a, "--csv", "-").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert header[:5] == ["run_id", "iter", "checkpoint", "elapsed_s", "status"]
    assert {"params.coef", "params.step"} <= set(header) and "time" not in header
    assert all(r["run_id"] == a for r in rows)
    t = [float(r["elapsed_s"]) for r in rows]
    assert t == sorted(t) and t[-1] > 0  # seconds since the start, not h:mm:ss text
    assert json.loads(rows[1]["params.coef"]) == sql(runs_dir, f"select params from iterations where run_id='{a}' and iter=1")[0]["params"]["coef"]


def test_last_run_in_sql_is_the_run_the_cli_calls_last(two_runs) -> None:
    runs_dir, a, b = two_runs
    newest = json.loads(autoloop(runs_dir, "status", "--json").stdout)["run_id"]
    assert newest == b
    assert sql(runs_dir, "select last_run() as r")[0]["r"] == b
    assert [r["run_id"] for r in sql(runs_dir, "select run_id from last_run")] == [b]
    n = sql(runs_dir, "select count(*) n from curve where run_id = last_run()")[0]["n"]
    assert n == 4  # baseline + 3


def test_compare_two_runs(two_runs) -> None:
    runs_dir, a, b = two_runs
    res = json.loads(autoloop(runs_dir, "compare", a, b, "--json").stdout)
    assert res["a"]["run_id"] == a and res["b"]["run_id"] == b and res["same_gold"]
    assert res["a"]["iterations"] == 4 and res["b"]["iterations"] == 3
    best_a = sql(runs_dir, f"select score from best where run_id = '{a}'")[0]["score"]
    assert res["a"]["best"] == best_a and "mae" in res["a"]["best_components"]
    assert res["items"]["n"] == 40
    assert res["items"]["a_better"] + res["items"]["b_better"] + res["items"]["equal"] == 40
    text = autoloop(runs_dir, "compare", a, b).stdout
    assert "best vs best on 40 shared gold items" in text and "lower is better" in text
    p = autoloop(runs_dir, "compare", a, "nope", check=False)
    assert p.returncode == 2 and "not found" in p.stderr


def test_readme_defines_every_column() -> None:
    from test_store import DOCUMENTED

    readme = (ROOT / "README.md").read_text()
    assert "### Columns" in readme
    section = readme.split("### Columns", 1)[1].split("\n## ", 1)[0]
    for table, cols in DOCUMENTED.items():
        block = re.search(rf"^`{table}`(.*?)(?=^`\w+`|\Z)", section, re.S | re.M)
        assert block, f"README's Columns section has no paragraph for {table}"
        for c in cols:
            assert re.search(rf"`{c}`\s*[:(—-]", block.group(1)) or f"`{c}`" in block.group(1), f"{table}.{c} undefined"
    assert re.search(r"`overhead_s`[^\n]*engine", section)
    assert re.search(r"`value`[^\n]*(item|gold)", section.split("`item_scores`", 1)[1])
    assert "per-checkpoint table" not in readme  # `show` lists every iteration
