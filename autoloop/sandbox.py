"""Run one target method in a child process with a deadline and a memory cap, and always clean up.

The one seam for "a candidate in a workdir with a deadline": a later executor (Ray, another machine)
implements `execute(call) -> ChildResult` the same way.

Why a process group: the child may start its own children (a model server, an HTTP service). At the
deadline the whole group gets SIGTERM, then, after a short grace, SIGKILL; descendants that moved to a
group of their own are found with psutil and killed too. Peak RSS is the sum over the whole tree.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

GRACE_S = 5.0


@dataclass
class ChildCall:
    target_path: Path
    method: str  # run | score | compare
    args: dict[str, Any]
    deadline: float  # absolute unix time
    work_dir: Path  # where spec, result and log files go
    env: dict[str, str] = field(default_factory=dict)
    memory_cap_mb: float | None = None
    label: str = ""  # file prefix, e.g. "run" or "score"


@dataclass
class ChildResult:
    status: str  # ok | crash | timeout | oom | interrupted | invalid
    value: Any = None
    error: str = ""
    peak_rss_mb: float = 0.0
    duration_s: float = 0.0  # wall time of the child, process start-up included
    method_s: float | None = None  # time inside the target's method, as the child measured it
    log_path: Path | None = None


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc] + proc.children(recursive=True)
    except psutil.Error:
        return []


def _rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


def kill_tree(pid: int, known: list[psutil.Process] | None = None, grace: float = GRACE_S) -> None:
    """SIGTERM the process group and every known descendant, wait `grace`, then SIGKILL what is left."""
    try:
        root = psutil.Process(pid)
        procs = _tree(root)
    except psutil.Error:
        procs = []
    for p in known or []:
        if p not in procs:
            procs.append(p)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        if sig == signal.SIGTERM:
            _, alive = psutil.wait_procs(procs, timeout=grace)
            if not alive:
                break
            procs = alive
    psutil.wait_procs(procs, timeout=2)


def execute(call: ChildCall, should_abort: Callable[[], bool] = lambda: False) -> ChildResult:
    call.work_dir.mkdir(parents=True, exist_ok=True)
    label = call.label or call.method
    spec_path = call.work_dir / f"{label}.spec.json"
    result_path = call.work_dir / f"{label}.result.json"
    log_path = call.work_dir / f"{label}.log"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({
        "target_path": str(call.target_path), "method": call.method,
        "args": call.args, "result_path": str(result_path),
    }))
    env = dict(os.environ)
    env.update(call.env)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.time()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoloop.child", str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # own process group: Ctrl-C in the terminal does not reach it
        )
    ps = psutil.Process(proc.pid)
    peak, known, status, poll = 0.0, [ps], None, 0.002
    last_sample = 0.0
    while True:
        try:
            proc.wait(timeout=poll)
            break
        except subprocess.TimeoutExpired:
            poll = min(poll * 2, 0.2)
        now = time.time()
        if now - last_sample >= 0.2 or call.memory_cap_mb:
            tree = _tree(ps)
            known.extend(p for p in tree if p not in known)
            peak = max(peak, _rss_mb(tree))
            last_sample = now
        if call.memory_cap_mb and peak > call.memory_cap_mb:
            status = "oom"
        elif now >= call.deadline:
            status = "timeout"
        elif should_abort():
            status = "interrupted"
        if status:
            kill_tree(proc.pid, known)
            proc.wait()
            break
    # Descendants that outlived a normally exiting child (a leaked server) are killed too.
    leftovers = [p for p in known if p.pid != proc.pid and p.is_running()]
    if leftovers:
        kill_tree(proc.pid, leftovers, grace=1.0)
    duration = time.time() - start
    res = ChildResult(status="ok", peak_rss_mb=round(peak, 1), duration_s=duration, log_path=log_path)
    if status == "timeout":
        res.status, res.error = "timeout", f"{call.method} exceeded its deadline after {duration:.1f}s; killed"
        return res
    if status == "oom":
        res.status, res.error = "oom", f"{call.method} tree RSS {peak:.0f} MB exceeded the {call.memory_cap_mb:.0f} MB cap; killed"
        return res
    if status == "interrupted":
        res.status, res.error = "interrupted", f"{call.method} interrupted by the user"
        return res
    if result_path.exists():
        payload = json.loads(result_path.read_text())
        if payload.get("ok"):
            res.value = payload.get("value")
            res.method_s = payload.get("method_s")
            return res
        kind = payload.get("kind", "crash")
        res.status = {"rejected": "invalid", "oom": "oom"}.get(kind, "crash")
        res.error = payload.get("error", "")
        return res
    rc = proc.returncode
    if rc == -signal.SIGKILL:
        res.status, res.error = "oom", "child killed by SIGKILL (likely the system's out-of-memory killer)"
    else:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        res.status, res.error = "crash", f"child exited with code {rc} and no result\n{tail}"
    return res
