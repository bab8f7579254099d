"""Two runs with the same id in two runs folders, at the same time: the first to end must not end the other's
processes. Run ids are unique within a runs folder only (`--run-id nightly` in two projects), and the end-of-run
sweep once ended every process whose marker began with `<run id>/` on the machine: the other run's warm worker
and its child mid-iteration (the run died with "the warm worker exited")."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conftest import ROOT, TEST_TARGETS, autoloop, sql

BEHAVE = str(TEST_TARGETS / "behave.py")


def _processes_of(owner: Path) -> list[int]:
    """Pids of processes started by the engine of run folder `owner` (its warm worker and the children forked from
    it show the engine's marker `same/engine` in /proc, a fresh child its phase's `same/001/run`)."""
    found = []
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if (env.get("AUTOLOOP_CANDIDATE") or "").startswith("same/") and env.get("AUTOLOOP_OWNER") == str(owner.resolve()):
            found.append(p.pid)
    return found


def test_a_run_ending_leaves_another_runs_processes_with_the_same_id_alone(tmp_path: Path) -> None:
    runs_a, runs_b = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_a), BEHAVE_PLAN="slowok:0.5:8", BEHAVE_BUDGET="60",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    a = subprocess.Popen([sys.executable, "-m", "autoloop", "run", BEHAVE, "--run-id", "same", "--max-iters", "1",
                          "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 120
        started = runs_a / "same" / "iters" / "001"
        while not (started.exists() and _processes_of(runs_a / "same")):
            assert a.poll() is None, a.communicate()
            assert time.time() < end, "run A never reached its first iteration"
            time.sleep(0.2)
        time.sleep(1.0)  # A's run child is sleeping now (8 s)
        before = _processes_of(runs_a / "same")
        # B: same id, its own folder, ends while A's child still sleeps
        autoloop(runs_b, "run", BEHAVE, "--run-id", "same", "--max-iters", "1", "--no-progress",
                 env={"BEHAVE_PLAN": "ok:0.5"})
        assert a.poll() is None and set(before) <= set(_processes_of(runs_a / "same")), \
            "run B's end took run A's processes with it"
        out, err = a.communicate(timeout=180)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, out + err
    rows = sql(runs_a, "select iter, status from iterations where run_id = 'same' order by iter")
    assert [r["status"] for r in rows] == ["keep", "keep"], rows
