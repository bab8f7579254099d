"""`autoloop ui` over real HTTP on 127.0.0.1: pages, JSON, 404s, no writes, a newer schema, the host
warning, and reads that never take the DuckDB lock from the loop. (The browser tests are in
test_ui_browser.py.)"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

from autoloop.proc import free_port
from conftest import ROOT, TEST_TARGETS, autoloop, sql

BEHAVE = str(TEST_TARGETS / "behave.py")


@contextlib.contextmanager
def ui_server(runs_dir: Path, host: str = "127.0.0.1", extra_env: dict | None = None):
    """`autoloop ui` as a user starts it, in a child process; yields (base url, process)."""
    port = free_port()
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir.parent / "not-this-one"), **(extra_env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "autoloop", "ui", "--port", str(port), "--host", host,
                             "--runs-dir", str(runs_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/static/app.css", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.time() > end:
                    raise AssertionError(f"ui did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str, method: str = "GET") -> tuple[int, str, dict]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def get_json(url: str):
    code, body, _ = get(url)
    assert code == 200, (code, body)
    return json.loads(body)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> Path:
    """A behave run with a keep, a crash, a 2 MB file (outside git) and LLM calls; and an example_fit run."""
    runs_dir = tmp_path_factory.mktemp("ui") / "runs"
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "4", "--no-progress", "--run-id", "behave-a",
             env={"BEHAVE_PLAN": "ok:0.4,crash,big:0.6,paid:0.7", "BEHAVE_BUDGET": "20"})
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "3", "--no-progress", "--run-id", "fit-b")
    return runs_dir


def test_pages_and_api_over_real_http(finished_runs: Path) -> None:
    with ui_server(finished_runs) as (base, _):
        code, page, headers = get(base + "/")
        assert code == 200 and 'data-page="runs"' in page and "no-store" in headers["cache-control"]
        # Offline: every script and stylesheet comes from this server, and the CSP forbids anything else.
        assert not re.search(r'(src|href)="(https?:)?//', page)
        assert "default-src 'self'" in headers["content-security-policy"]
        code, js, _ = get(base + "/static/uPlot.iife.min.js")
        assert code == 200 and "uPlot" in js
        assert get(base + "/static/uPlot.LICENSE")[0] == 200

        runs = {r["run_id"]: r for r in get_json(base + "/api/runs")}
        assert set(runs) == {"behave-a", "fit-b"}
        a = runs["behave-a"]
        assert (a["status"], a["stop_reason"], a["iterations"], a["kept"]) == ("finished", "max_iters", 4, 3)
        assert a["cost_usd"] == pytest.approx(0.03) and a["llm_calls"] == 3 and a["best"] == 0.7
        # The same numbers as the CLI's `runs`.
        cli = {r["run_id"]: r for r in json.loads(autoloop(finished_runs, "runs", "--json").stdout)}
        for k in ("iterations", "kept", "best", "status", "stop_reason"):
            assert cli["behave-a"][k] == a[k], k

        d = get_json(base + "/api/runs/behave-a")
        assert [i["status"] for i in d["iterations"]] == ["keep", "keep", "crash", "keep", "keep"]
        assert d["components"] == ["acc", "guard"] and d["params"] == ["step"]
        crash = d["iterations"][2]
        assert "candidate crashed on purpose" in crash["error_excerpt"] and crash["params"] == {"step": "crash"}
        assert [i["best_so_far"] for i in d["iterations"]] == [0.1, 0.4, 0.4, 0.6, 0.7]

        c = get_json(base + "/api/runs/behave-a/iter/1")
        assert c["incumbent"]["iter"] == 0
        (f,) = c["diff"]["files"]
        assert f["path"] == "value.json" and '+{"step": "ok", "value": 0.4' in f["diff"]
        assert c["items"]["better"] == 2 and c["items"]["n"] == 2
        big = get_json(base + "/api/runs/behave-a/iter/3")
        assert big["incumbent"]["iter"] == 1  # the crash in between was reverted
        (lf,) = big["diff"]["large_files"]
        assert lf["path"] == "weights.bin" and lf["size_after"] == 2_000_000 and lf["status"] == "A"
        assert all(x["path"] != ".autoloop-manifest.json" for x in big["diff"]["files"])

        llm = get_json(base + "/api/runs/behave-a/llm")
        assert llm["total_calls"] == 3 and llm["calls"]["usd"][-1] == pytest.approx(0.03)
        assert llm["models"]["fake-model"]["calls"] == 3

        curves = get_json(base + "/api/curves?run=behave-a&run=fit-b")
        assert [c["run_id"] for c in curves] == ["behave-a", "fit-b"] and len(curves[1]["points"]) == 4

        code, body, _ = get(base + "/run/fit-b")
        assert code == 200 and 'data-run="fit-b"' in body


def test_unknown_run_is_a_404_page_and_nothing_writes(finished_runs: Path) -> None:
    with ui_server(finished_runs) as (base, _):
        code, body, headers = get(base + "/run/no-such-run")
        assert code == 404 and "text/html" in headers["content-type"] and "no run 'no-such-run'" in body
        assert get(base + "/api/runs/no-such-run")[0] == 404
        assert get(base + "/api/runs/behave-a/iter/99")[0] == 404
        assert get(base + "/nowhere")[0] == 404
        before = (finished_runs / "history.duckdb").stat().st_mtime_ns
        for path in ("/", "/run/behave-a", "/api/runs", "/api/runs/behave-a", "/api/runs/behave-a/iter/1",
                     "/api/version", "/api/curves"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                assert get(base + path, method)[0] == 405, (method, path)
        assert (finished_runs / "history.duckdb").stat().st_mtime_ns == before
        # A request naming another host (DNS rebinding) is refused on a loopback bind.
        req = urllib.request.Request(base + "/api/runs", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400


def test_a_newer_schema_gets_a_clear_message(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    con = duckdb.connect(str(runs_dir / "history.duckdb"))
    from autoloop import store

    store.migrate(con)
    con.execute("INSERT INTO schema_migrations VALUES (?, now())", [store.SCHEMA_VERSION + 5])
    con.close()
    with ui_server(runs_dir) as (base, _):
        code, body, _ = get(base + "/")
        assert code == 409 and f"schema version {store.SCHEMA_VERSION + 5}" in body and "newer autoloop" in body
        code, body, _ = get(base + "/api/runs")
        assert code == 409 and "newer autoloop" in json.loads(body)["error"]
    # The writer refuses it too, rather than writing into it.
    with pytest.raises(store.NewerSchemaError):
        con = duckdb.connect(str(runs_dir / "history.duckdb"))
        try:
            store.migrate(con)
        finally:
            con.close()


def test_no_history_yet_is_a_message_not_a_trace(tmp_path: Path) -> None:
    with ui_server(tmp_path / "empty") as (base, _):
        code, body, _ = get(base + "/")
        assert code == 404 and "no history yet" in body and "Traceback" not in body


def test_another_host_prints_a_warning(finished_runs: Path) -> None:
    with ui_server(finished_runs, host="0.0.0.0") as (base, proc):
        assert get(base + "/api/runs")[0] == 200
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "warning: --host 0.0.0.0" in err and "no login" in err
    with ui_server(finished_runs) as (base, proc):
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "warning" not in err


def test_reads_never_hold_the_database_lock(finished_runs: Path) -> None:
    """While the page is read as fast as it can be, a writer opens the history read-write at once, every
    time: the dashboard reads a private snapshot, so the loop never waits for it."""
    db = finished_runs / "history.duckdb"
    stop = threading.Event()
    served = [0]
    with ui_server(finished_runs) as (base, _):
        def hammer() -> None:
            while not stop.is_set():
                for p in ("/api/runs", "/api/runs/behave-a", "/api/runs/behave-a/iter/3", "/api/curves?run=fit-b"):
                    assert get(base + p)[0] == 200
                    served[0] += 1

        t = threading.Thread(target=hammer)
        t.start()
        try:
            opened = 0
            while opened < 25 or served[0] < 20:
                con = duckdb.connect(str(db))  # no retry: a reader holding the file would make this raise
                con.execute("UPDATE runs SET show_columns = show_columns")  # a real write, new mtime
                con.close()
                opened += 1
                time.sleep(0.02)
        finally:
            stop.set()
            t.join()
        assert opened >= 25 and served[0] >= 20
        # and it follows the writes: a run written after the page started shows up
        autoloop(finished_runs, "run", "targets/example_fit.py", "--max-iters", "1", "--no-progress", "--run-id", "fit-c")
        assert "fit-c" in {r["run_id"] for r in get_json(base + "/api/runs")}
    assert sql(finished_runs, "select count(*) n from runs")[0]["n"] == 3


def test_members_in_flight_per_node_while_a_batch_runs(tmp_path: Path) -> None:
    """`--batch 3 --parallel 2` on this machine: while the batch runs, the run's JSON (and so its page) lists
    the members in flight per node, with phase and elapsed time, from the same members.json `autoloop
    status` reads: two running here, one waiting for a slot, then the third once a slot frees (the page's
    version stamp changes with it, so an open page redraws). Once the run ends, nothing is in flight."""
    runs_dir = tmp_path / "runs"
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), SLEEPER_SLEEP="8", PYTHONPATH=str(ROOT))
    engine = subprocess.Popen([sys.executable, "-m", "autoloop", "run", str(TEST_TARGETS / "sleeper.py"),
                               "--batch", "3", "--parallel", "2", "--max-iters", "1", "--no-progress",
                               "--run-id", "batch"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        with ui_server(runs_dir) as (base, _):
            def members() -> list[dict]:
                try:
                    d = get_json(base + "/api/runs/batch")
                except AssertionError:  # the run is not in the history yet
                    return []
                return (d.get("live") or {}).get("members") or []

            end = time.time() + 120
            while len([m for m in members() if m["status"] == "running"]) < 2:
                assert time.time() < end and engine.poll() is None, engine.stdout.read() if engine.poll() is not None else members()
                time.sleep(0.1)
            # `status` (a CLI start, seconds on a loaded box) read between two identical answers of the page's
            # JSON: both saw the same moment of the batch
            while True:
                rows = members()
                version = get_json(base + "/api/version?run=batch")["version"]
                shown = json.loads(autoloop(runs_dir, "status", "batch", "--json").stdout)["members"]
                same = lambda a, b: [(m["node"], m["label"], m["status"]) for m in a] == [  # noqa: E731
                    (m["node"], m["label"], m["status"]) for m in b]
                if same(rows, members()):
                    break
                assert time.time() < end and engine.poll() is None, (rows, shown)
            running = [m for m in rows if m["status"] == "running"]
            assert [(m["node"], m["member"], m["phase"]) for m in running] == [
                ("this machine", "m0", "run"), ("this machine", "m1", "run")], rows
            assert all(0 <= m["elapsed_s"] < 60 for m in running)
            assert [(m["node"], m["label"], m["elapsed_s"]) for m in rows if m["status"] == "queued"] == [
                ("(waiting for a slot)", "run.m2", None)]
            # the same members on the same nodes as `autoloop status`
            assert shown == {"this machine": ["run.m0", "run.m1"], "(waiting for a slot)": ["run.m2"]}, (shown, rows)
            code, page, _ = get(base + "/run/batch")
            assert code == 200 and 'id="members-box"' in page and "<th>node</th><th>member</th><th>phase</th>" in page

            # m0 and m1 end after ~8 s; m2 then runs here, and the version the page polls has moved.
            while not any(m["label"] == "run.m2" and m["status"] == "running" for m in members()):
                assert time.time() < end and engine.poll() is None, members()
                time.sleep(0.1)
            assert [m["node"] for m in members() if m["label"] == "run.m2"] == ["this machine"]
            assert get_json(base + "/api/version?run=batch")["version"] != version
            assert engine.wait(timeout=120) == 0, engine.stdout.read()
            d = get_json(base + "/api/runs/batch")
            assert d["run"]["status"] == "finished" and d["live"] is None
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    # members are history once the iteration ends: trials has all three, none placed on a remote node
    assert sql(runs_dir, "select member, node from trials where iter = 1 order by member") == [
        {"member": 0, "node": None}, {"member": 1, "node": None}, {"member": 2, "node": None}]
