"""The engine end to end through the real CLI: real child processes, real git, real DuckDB files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, TEST_TARGETS, autoloop, journal_events, only_run, sql

BEHAVE = str(TEST_TARGETS / "behave.py")


def _children_of(runs_dir: Path) -> list:
    """Candidate processes of this test's runs (other processes on the machine are not ours)."""
    return [p for p in psutil.process_iter(["cmdline"])
            if "autoloop.child" in " ".join(p.info["cmdline"] or []) and str(runs_dir) in " ".join(p.info["cmdline"] or [])]


def statuses(runs_dir: Path, run_id: str) -> list[str]:
    return [r["status"] for r in sql(runs_dir, f"select status from iterations where run_id = '{run_id}' order by iter")]


def test_example_target_end_to_end(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "5", "--no-progress")
    run_id = only_run(runs_dir)
    assert "stopped: max_iters" in p.stdout
    show = autoloop(runs_dir, "show", run_id).stdout
    assert "ckpt-000" in show and "mae" in show and "baseline" in show
    # git tag -n in the state repo lists the kept checkpoints with their scores
    tags = subprocess.run(["git", "tag", "-n"], cwd=runs_dir / run_id / "state", capture_output=True, text=True).stdout
    kept = sql(runs_dir, f"select iter, tag, score from iterations where run_id='{run_id}' and status='keep'")
    assert len(kept) >= 2
    for k in kept:
        assert k["tag"] in tags and f"score={k['score']:.6g}" in tags
    assert f"autoloop/{run_id}/best" in tags
    # journal and DuckDB agree: 1 baseline + 5 candidates
    ends = [e for e in journal_events(runs_dir, run_id) if e["kind"] == "iter_end"]
    assert len(ends) == 6 == len(sql(runs_dir, f"select * from iterations where run_id='{run_id}'"))
    curve = sql(runs_dir, "select * from curve")
    assert [c["iter"] for c in curve] == list(range(6))
    assert curve[-1]["best_so_far"] == min(k["score"] for k in kept)
    # every reverted candidate stays reachable
    refs = subprocess.run(["git", "for-each-ref", f"refs/autoloop/{run_id}/discarded"], cwd=runs_dir / run_id / "state",
                          capture_output=True, text=True).stdout
    assert len(refs.splitlines()) == 6 - len(kept)
    # runs table carries provenance
    run = sql(runs_dir, "select * from runs")[0]
    assert run["stop_reason"] == "max_iters" and len(run["target_sha256"]) == 64 and len(run["gold_sha256"]) == 64
    assert run["host"] and "duckdb" in run["packages"]


def test_every_failure_is_an_outcome_and_the_loop_goes_on(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "sleep:60,crash,oom,nan,none,ok:0.9", "BEHAVE_BUDGET": "6"}
    t0 = time.time()
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "6", "--patience", "10", "--memory-cap-mb", "300", "--no-progress", env=env)
    assert time.time() - t0 < 55  # the sleeper was killed at its 6 s budget, not after 60 s
    run_id = only_run(runs_dir)
    assert statuses(runs_dir, run_id) == ["keep", "timeout", "crash", "oom", "nonfinite", "invalid", "keep"]
    rows = {r["iter"]: r for r in sql(runs_dir, f"select iter, error, score, peak_rss_mb, run_s from iterations where run_id='{run_id}'")}
    assert "candidate crashed on purpose" in rows[2]["error"] and "Traceback" in rows[2]["error"]
    assert rows[3]["peak_rss_mb"] > 300
    assert rows[4]["score"] != rows[4]["score"]  # NaN is kept as NaN: its own outcome, never 0
    assert rows[5]["score"] is None  # a missing score is NULL, never 0
    # a kept candidate after failures starts from the restored incumbent, and no child outlived its budget
    assert not _children_of(runs_dir)


def test_a_hanging_or_exiting_propose_is_an_outcome_and_the_loop_goes_on(runs_dir: Path) -> None:
    """propose() runs in the engine process: the engine bounds it (propose_budget_s) and a sys.exit in it is
    the iteration's crash, not the engine's exit."""
    env = {"BEHAVE_PLAN": "ok:0.5", "BEHAVE_PROPOSE": "hang,sysexit,ok", "BEHAVE_PROPOSE_BUDGET": "2"}
    t0 = time.time()
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "3", "--patience", "10", "--no-progress", env=env)
    assert time.time() - t0 < 60  # not the hour propose() asked for
    run_id = only_run(runs_dir)
    assert statuses(runs_dir, run_id) == ["keep", "crash", "crash", "keep"]
    rows = {r["iter"]: r for r in sql(runs_dir, f"select iter, error, description from iterations where run_id='{run_id}'")}
    assert "propose() ran past its 2 s limit" in rows[1]["error"] and "time.sleep(3600)" in rows[1]["error"]
    assert "SystemExit: 3" in rows[2]["error"] and rows[2]["description"] == "propose() raised"
    p = autoloop(runs_dir, "run", BEHAVE, "--new", "--max-iters", "1", "--no-progress", check=False,
                 env={**env, "BEHAVE_PROPOSE_BUDGET": "-1"})
    assert p.returncode == 2 and "propose_budget_s" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_hanging_failing_or_exiting_setup_is_one_line_and_leaves_no_run(runs_dir: Path) -> None:
    """setup() runs in the engine process too: the engine bounds it (setup_budget_s); a hang, an exception or a
    sys.exit in it is one line naming the target and the fix, exit 2, and no run directory or history row."""
    cases = [({"BEHAVE_SETUP_SLEEP": "3600", "BEHAVE_SETUP_BUDGET": "1"}, "ran past its 1 s limit"),
             ({"BEHAVE_SETUP_EXIT": "4"}, "called sys.exit(4)"),
             ({"BEHAVE_SETUP_BUDGET": "0"}, "setup_budget_s")]
    for env, says in cases:
        t0 = time.time()
        p = autoloop(runs_dir, "run", BEHAVE, "--new", "--max-iters", "1", "--no-progress", check=False, env=env)
        assert time.time() - t0 < 60  # not the hour setup() asked for
        assert p.returncode == 2, p.stderr
        line = p.stderr.strip()
        assert len(line.splitlines()) == 1 and says in line and "behave.py" in line, line
        assert not list(runs_dir.glob("behave*")) and not list(runs_dir.glob(".creating-*"))
    # and a setup within its limit still makes the run
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "0", "--no-progress", env={"BEHAVE_SETUP_SLEEP": "0.2"})
    assert len(list(runs_dir.glob("behave*/journal.jsonl"))) == 1


def test_plateau_stop(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", BEHAVE, "--patience", "3", "--no-progress", env={"BEHAVE_PLAN": "ok:0.5,ok:0.5"})
    run_id = only_run(runs_dir)
    assert statuses(runs_dir, run_id) == ["keep", "keep", "revert", "revert", "revert"]
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "plateau"


def test_a_target_declares_its_patience_and_the_option_overrides_it(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "ok:0.5", "BEHAVE_PATIENCE": "2"}
    autoloop(runs_dir, "run", BEHAVE, "--no-progress", env=env)
    run_id = only_run(runs_dir)
    assert statuses(runs_dir, run_id) == ["keep", "keep", "revert", "revert"]  # the target's patience 2
    assert journal_events(runs_dir, run_id)[0]["config"]["engine"]["patience"] == 2
    other = runs_dir.parent / "runs_b"
    autoloop(other, "run", BEHAVE, "--patience", "1", "--no-progress", env=env)
    assert statuses(other, only_run(other)) == ["keep", "keep", "revert"]


def test_guard_metric_blocks_a_keep(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "ok:0.9:0.5,ok:0.8:1.0", "BEHAVE_GUARD": "0.1"}
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "2", "--no-progress", env=env)
    run_id = only_run(runs_dir)
    rows = sql(runs_dir, f"select status, reason from iterations where run_id='{run_id}' order by iter")
    assert rows[1]["status"] == "revert" and "guard guard" in rows[1]["reason"]  # better score, broken guard
    assert rows[2]["status"] == "keep"


def test_target_score_and_stop_file(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", BEHAVE, "--target-score", "0.7", "--no-progress", env={"BEHAVE_PLAN": "ok:0.5,ok:0.8,ok:0.9"})
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "target_score"
    runs_dir2 = runs_dir.parent / "runs2"
    runs_dir2.mkdir()
    (runs_dir2 / "STOP").touch()
    autoloop(runs_dir2, "run", BEHAVE, "--no-progress")
    assert sql(runs_dir2, "select stop_reason from runs")[0]["stop_reason"] == "stop_file"
    assert statuses(runs_dir2, only_run(runs_dir2)) == ["keep"]  # the baseline is always measured


def test_large_files_live_outside_git_and_checkout_restores_them(runs_dir: Path, tmp_path: Path) -> None:
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "1", "--no-progress", env={"BEHAVE_PLAN": "big:0.7"})
    run_id = only_run(runs_dir)
    state = runs_dir / run_id / "state"
    tracked = subprocess.run(["git", "ls-files"], cwd=state, capture_output=True, text=True).stdout.split()
    assert "weights.bin" not in tracked and ".autoloop-manifest.json" in tracked
    assert list((runs_dir / "blobs").rglob("*"))
    dest = tmp_path / "ckpt"
    autoloop(runs_dir, "checkout", f"autoloop/{run_id}/ckpt-001", str(dest))
    assert (dest / "weights.bin").read_bytes() == (state / "weights.bin").read_bytes()
    assert (dest / "value.json").exists()
    # the baseline checkpoint has no weights file
    autoloop(runs_dir, "checkout", f"autoloop/{run_id}/ckpt-000", str(tmp_path / "base"))
    assert not (tmp_path / "base" / "weights.bin").exists()


@pytest.mark.parametrize("content,needle", [
    (None, "no such target file"),
    ("x = (\n", ":1: syntax error"),
    ("x = 1\n", "defines no module-level `target`"),
    ("class T:\n name='t'; direction='up'; budget_s=1; gold='g'\n def propose(s,h): pass\n def run(s,*a): pass\n"
     " def score(s,*a): pass\ntarget = T()\n", "target.direction"),
    ("class T:\n name='t'; direction='max'; budget_s=1; gold='missing.jsonl'\n def propose(s,h): pass\n"
     " def run(s,*a): pass\n def score(s,*a): pass\ntarget = T()\n", "target.gold names missing.jsonl"),
    ("import nonexistent_module_xyz\n", ":1: importing the target raised ModuleNotFoundError"),
])
def test_broken_target_is_one_line_exit_2_nothing_written(runs_dir: Path, tmp_path: Path, content, needle) -> None:
    f = tmp_path / "bad_target.py"
    if content is not None:
        f.write_text(content)
    p = autoloop(runs_dir, "run", str(f), check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not runs_dir.exists() or not list(runs_dir.glob("*/journal.jsonl"))
    assert not (runs_dir / "history.duckdb").exists()


def test_bad_options_exit_2(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", "targets/example_fit.py", "--until", "25:99", check=False)
    assert p.returncode == 2 and "--until" in p.stderr
    p = autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "-1", check=False)
    assert p.returncode == 2 and "--max-iters" in p.stderr
    assert not (runs_dir / "history.duckdb").exists()


def _start_engine(runs_dir: Path, env: dict, *args: str) -> subprocess.Popen:
    e = dict(os.environ)
    e.update({"AUTOLOOP_RUNS_DIR": str(runs_dir)}, **env)
    return subprocess.Popen([sys.executable, "-m", "autoloop", "run", BEHAVE, "--no-progress", *args], env=e,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(pred, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_kill_9_mid_iteration_then_resume_loses_and_duplicates_nothing(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "slowok:0.3:0.5,slowok:0.5:0.5,slowok:0.4:0.5,slowok:0.6:3,slowok:0.7:0.5", "BEHAVE_BUDGET": "20"}
    proc = _start_engine(runs_dir, env, "--max-iters", "5")

    def in_flight_iter_4() -> bool:
        ev = [e for e in journal_events(runs_dir, only_run(runs_dir))] if list(runs_dir.glob("*/journal.jsonl")) else []
        return any(e["kind"] == "iter_start" and e["iter"] == 4 for e in ev)

    _wait_for(in_flight_iter_4)
    time.sleep(0.5)  # inside iteration 4's 3-second run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = only_run(runs_dir)
    # the orphaned candidate dies with its engine
    _wait_for(lambda: not _children_of(runs_dir), 10)
    st = autoloop(runs_dir, "status", run_id).stdout
    assert "resumable" in st
    autoloop(runs_dir, "resume", run_id, "--no-progress", env=env)
    events = journal_events(runs_dir, run_id)
    ends = [e for e in events if e["kind"] == "iter_end"]
    iters = [e["iter"] for e in ends]
    assert len(iters) == len(set(iters)), "an iteration was recorded twice"
    rows = sql(runs_dir, f"select iter, status, tag, redo_of from iterations where run_id='{run_id}' order by iter")
    assert [r["iter"] for r in rows] == sorted(iters)  # DuckDB = journal
    by_iter = {r["iter"]: r for r in rows}
    assert by_iter[4]["status"] == "interrupted"
    assert by_iter[5]["redo_of"] == 4 and by_iter[5]["status"] == "keep"  # redone, not lost
    done = [r for r in rows if r["iter"] > 0 and r["status"] != "interrupted"]
    assert len(done) == 5
    tags = subprocess.run(["git", "tag", "-l"], cwd=runs_dir / run_id / "state", capture_output=True, text=True).stdout.split()
    kept = [r for r in rows if r["status"] == "keep"]
    assert sorted(t for t in tags if not t.endswith("/best")) == sorted(r["tag"] for r in kept)
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "max_iters"


def test_ctrl_c_abandons_the_iteration_and_restores_state(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "ok:0.4,slowok:0.9:30", "BEHAVE_BUDGET": "60"}
    proc = _start_engine(runs_dir, env)
    _wait_for(lambda: list(runs_dir.glob("*/iters/002/run.spec.json")))
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    run_id = only_run(runs_dir)
    assert statuses(runs_dir, run_id) == ["keep", "keep", "interrupted"]
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "sigint"
    state = (runs_dir / run_id / "state" / "value.json").read_text()
    assert '"value": 0.4' in state  # back at the incumbent


def test_sql_works_while_another_run_is_writing(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "2", "--no-progress")
    env = {"BEHAVE_PLAN": "slowok:0.3:0.2,slowok:0.4:0.2", "BEHAVE_BUDGET": "20"}
    proc = _start_engine(runs_dir, env, "--max-iters", "12")
    seen = 0
    try:
        while proc.poll() is None:
            rows = sql(runs_dir, "select * from curve")
            assert rows and {"run_id", "iter", "score", "best_so_far"} <= set(rows[0])
            seen += 1
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert seen >= 3
    assert len(sql(runs_dir, "select distinct run_id from curve")) == 2


def test_db_rebuild_reproduces_the_store(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "3", "--no-progress")
    before = sql(runs_dir, "select iter, status, score, tag from iterations order by iter")
    metrics = sql(runs_dir, "select count(*) n from metrics")[0]["n"]
    (runs_dir / "history.duckdb").unlink()
    autoloop(runs_dir, "db", "rebuild")
    assert sql(runs_dir, "select iter, status, score, tag from iterations order by iter") == before
    assert sql(runs_dir, "select count(*) n from metrics")[0]["n"] == metrics
    assert autoloop(runs_dir, "db", "path").stdout.strip() == str(runs_dir / "history.duckdb")


def test_listings_and_export(runs_dir: Path, tmp_path: Path) -> None:
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "3", "--no-progress")
    import json

    runs = json.loads(autoloop(runs_dir, "runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["iterations"] == 3  # candidates, as --max-iters counts (baseline not one)
    best = json.loads(autoloop(runs_dir, "best", "--json").stdout)
    assert best["tag"].endswith(f"ckpt-{best['iter']:03d}")
    shown = json.loads(autoloop(runs_dir, "show", "--json").stdout)
    assert [r["iter"] for r in shown] == [0, 1, 2, 3] and "mae" in shown[0]
    csv_text = autoloop(runs_dir, "export", "--csv", "-").stdout
    assert csv_text.splitlines()[0].startswith("run_id,iter,checkpoint,elapsed_s,status,score,mae")
    png = tmp_path / "curve.png"
    autoloop(runs_dir, "export", "--png", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    st = json.loads(autoloop(runs_dir, "status", "--json").stdout)
    assert st["running"] is False and st["stop_reason"] == "max_iters"


def test_a_target_edited_mid_run_is_on_record(runs_dir: Path, tmp_path: Path) -> None:
    import shutil

    f = tmp_path / "behave_copy.py"
    shutil.copy(BEHAVE, f)
    (tmp_path / "behave_gold.jsonl").write_text((TEST_TARGETS / "behave_gold.jsonl").read_text())
    env = {"BEHAVE_PLAN": "slowok:0.3:0.2,slowok:0.4:1.5,ok:0.5", "BEHAVE_BUDGET": "20"}
    e = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), **env)
    proc = subprocess.Popen([sys.executable, "-m", "autoloop", "run", str(f), "--no-progress", "--max-iters", "3"],
                            env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: list(runs_dir.glob("*/iters/002/run.spec.json")))
    f.write_text(f.read_text() + "\n# edited while running\n")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    notes = [e for e in journal_events(runs_dir, only_run(runs_dir)) if e["kind"] == "note"]
    assert len(notes) == 1 and "changed" in notes[0]["text"]
