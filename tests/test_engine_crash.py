"""The engine itself dies of a crash in native code (SIGSEGV, as duckdb.connect once did on the history-writer
thread): stderr names every thread's Python stack, and `autoloop resume` finishes the run with nothing lost."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, TEST_TARGETS, autoloop, sql

BEHAVE = str(TEST_TARGETS / "behave.py")


def test_a_segfault_of_the_engine_prints_its_stacks_and_resume_loses_nothing(runs_dir: Path) -> None:
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), BEHAVE_PLAN="ok:0.5,slowok:0.6:5",
               BEHAVE_BUDGET="60", PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    p = subprocess.Popen([sys.executable, "-m", "autoloop", "run", BEHAVE, "--run-id", "segv", "--max-iters", "2",
                          "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 120
        while not (runs_dir / "segv" / "iters" / "002").exists():  # iteration 2's child sleeps (5 s)
            assert p.poll() is None, p.communicate()
            assert time.time() < end, "the run never reached iteration 2"
            time.sleep(0.2)
        time.sleep(1.0)
        p.send_signal(signal.SIGSEGV)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGSEGV, err
    assert "Fatal Python error: Segmentation fault" in err and "loop.py" in err, err
    autoloop(runs_dir, "resume", "segv", "--no-progress",
             env={"BEHAVE_BUDGET": "60"})
    rows = sql(runs_dir, "select iter, status, redo_of from iterations where run_id = 'segv' order by iter")
    by_iter = {r["iter"]: r for r in rows}
    assert len(rows) == len(by_iter) == 4, rows  # nothing recorded twice
    assert by_iter[1]["status"] == "keep" and by_iter[2]["status"] == "interrupted", rows
    assert by_iter[3]["redo_of"] == 2, rows  # the crashed iteration is redone, not lost
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "max_iters"
