"""One run through every way a candidate can misbehave: each iteration gets its own status, the loop goes
on, the logs stay small, and nothing the run started is alive afterwards.

Run with `-s` to see the figures (statuses, exit code, log sizes, survivors)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from conftest import TEST_TARGETS, autoloop, only_run, sql

BEHAVE = str(TEST_TARGETS / "behave.py")
PLAN = [  # step -> the status it must get
    ("hang", "timeout"),  # ignores SIGTERM, with a grandchild that ignores it too
    ("crash", "crash"),
    ("nan", "nonfinite"),
    ("oom", "oom"),  # grows past --memory-cap-mb
    ("flood:60:0.5", "keep"),  # 60 MB to stdout, then a valid result
    ("exit:7", "crash"),  # os._exit: no result, no traceback
    ("daemon:0.6", "keep"),  # double-forked setsid daemon, still running when run() returns
]
CAP_BYTES = 4_000_000  # the default log cap


def _survivors(run_id: str, pids: Path) -> list[str]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("AUTOLOOP_CANDIDATE", "").startswith(f"{run_id}/"):
                found.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.Error:
            pass
    for f in pids.glob("*.pid"):
        pid = int(f.read_text())
        if psutil.pid_exists(pid):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{pid} ({f.name})")
            except psutil.NoSuchProcess:
                pass
    return found


def test_torture(runs_dir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A budget long enough for a child to start on a loaded 2-core box; the hang pays it plus the grace.
    env = {"BEHAVE_PLAN": ",".join(step for step, _ in PLAN), "BEHAVE_BUDGET": "10", "BEHAVE_PIDS": str(pids)}
    t0 = time.time()
    p = autoloop(runs_dir, "run", BEHAVE, "--max-iters", str(len(PLAN)), "--patience", "99",
                 "--memory-cap-mb", "300", "--no-progress", env=env, check=False)
    took = time.time() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    run_id = only_run(runs_dir)
    rows = sql(runs_dir, f"select iter, status, reason, peak_rss_mb from iterations where run_id = '{run_id}' order by iter")
    got = [r["status"] for r in rows]
    assert got == ["keep"] + [status for _, status in PLAN], [(r["iter"], r["status"], r["reason"]) for r in rows]
    logs = {str(f.relative_to(runs_dir / run_id / "iters")): f.stat().st_size
            for f in sorted((runs_dir / run_id / "iters").glob("*/*.log"))}
    assert max(logs.values()) <= CAP_BYTES + 200, logs
    flood = (runs_dir / run_id / "iters" / "005" / "run.log").read_bytes()
    assert b"bytes dropped ...]" in flood and flood.rstrip().endswith(b"FLOOD-END")
    assert "exited with code 7" in rows[6]["reason"]
    assert rows[4]["peak_rss_mb"] > 300
    survivors = _survivors(run_id, pids)
    assert len(list(pids.glob("*.pid"))) == 2  # the grandchild and the daemon did start
    assert survivors == []
    print(f"\ntorture: {len(PLAN)} faults, exit code {p.returncode}, {took:.1f}s")
    for (step, _), r in zip(PLAN, rows[1:]):
        print(f"  #{r['iter']} {step:14s} -> {r['status']:9s} {r['reason'][:70]}")
    print(f"  largest log {max(logs.values())} bytes (flood of {60 * 1024 * 1024 + 10} bytes); survivors {len(survivors)}")
    assert os.path.getsize(runs_dir / run_id / "journal.jsonl") < 100_000
