"""Run one target method in a child process with a deadline and a memory cap, and always clean up.

The one seam for "a candidate in a workdir with a deadline": a later executor (Ray, another machine)
implements `execute(call) -> ChildResult` the same way.

Why a process group: the child may start its own children (a model server, an HTTP service). At the
deadline the whole group gets SIGTERM, then, after a short grace, SIGKILL; descendants that moved to a
group or session of their own are found through `reaper` (the child is a subreaper, so double-forked
daemons stay in its tree; the environment marker finds the rest) and ended when the phase ends, however
the child ended. Peak RSS is the sum over the whole tree. Output goes through a pipe into a `CappedLog`,
so a flood cannot fill the disk.
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

from autoloop import reaper
from autoloop.logcap import DEFAULT_CAP_MB, CappedLog

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
    marker: str = ""  # AUTOLOOP_CANDIDATE value (<run>/<iter>/<phase>) that everything the child starts inherits
    log_cap_bytes: int = int(DEFAULT_CAP_MB * 1e6)


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


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


def _read_result(path: Path) -> dict | None:
    """The child's result, or None when it left none (or something that is not one: never trusted)."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"ok": False, "kind": "crash", "error": f"the child's result file {path} is unreadable"}
    return payload if isinstance(payload, dict) else None


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
    if call.marker:
        env[reaper.MARKER] = call.marker
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    before = reaper.child_pids()  # our own children now: anything new later is the candidate's orphan
    start = time.time()
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoloop.child", str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, env=env,
            start_new_session=True,  # own process group: Ctrl-C in the terminal does not reach it
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    log = CappedLog(read_fd, log_path, call.log_cap_bytes)
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
            tree = _tree(ps) + reaper.adopted(before, exclude=[proc.pid])
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
    duration = time.time() - start
    # Whatever the candidate started is ended now, however it detached: descendants seen while it ran,
    # orphans this (subreaper) process inherited, and anything carrying the phase's marker.
    leftovers = [p for p in known if p.pid != proc.pid and _alive(p)]
    leftovers += reaper.adopted(before, exclude=[proc.pid])
    if call.marker:
        leftovers += reaper.marked(value=call.marker)
    reaper.terminate(leftovers, grace=1.0 if status is None else GRACE_S)
    log.close()
    if log.error is not None:
        raise log.error  # the disk is full or the log is not writable: an environment fault, not the candidate's
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
    payload = _read_result(result_path)
    if payload is not None:
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
        how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else f"exited with code {rc}"
        # The summary goes last: the iteration's reason is the error's last line.
        res.status, res.error = "crash", f"{tail}\n{call.method}: the child {how} and left no result"
    return res
