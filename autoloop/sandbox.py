"""Run one target method in a child process with a deadline and a memory cap, and always clean up.

The local half of the executor seam (autoloop.executor): `Child` is one such process, started and
polled so that several can run at once; `execute(call)` runs one to its end.

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
from autoloop.proc import kill_tree as _kill_tree
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
    budget_s: float | None = None  # when set, the deadline is counted from the child's real start (queued calls)
    paths: tuple[str, ...] = ()  # keys of `args` that are engine-side paths the method reads (see autoloop.executor)
    writes: tuple[str, ...] = ()  # those of `paths` the method changes: shipped back before wait() returns


@dataclass
class ChildResult:
    status: str  # ok | crash | timeout | oom | interrupted | invalid
    value: Any = None
    error: str = ""
    peak_rss_mb: float = 0.0
    duration_s: float = 0.0  # wall time of the child, process start-up included
    method_s: float | None = None  # time inside the target's method, as the child measured it
    log_path: Path | None = None
    node: str = ""  # where the child ran: "" on this machine, else the executor's name for the node (host/id)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    if not proc.is_running():
        return []
    return [proc] + reaper.children(proc.pid, recursive=True)


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
    _kill_tree(pid, known, grace)


def _read_result(path: Path) -> dict | None:
    """The child's result, or None when it left none (or something that is not one: never trusted)."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"ok": False, "kind": "crash", "error": f"the child's result file {path} is unreadable"}
    return payload if isinstance(payload, dict) else None


_LIVE_PIDS: set[int] = set()  # children started by any Child of this process and not yet finished
_HELPER_PIDS: set[int] = set()  # the warm worker (autoloop.zygote): never an orphan to end


# -- the warm worker ---------------------------------------------------------------------------------------
_PER_CALL = ("AUTOLOOP_RUN_ID", "AUTOLOOP_ITER", "AUTOLOOP_ITER_DIR", "AUTOLOOP_COST_REMAINING", "AUTOLOOP_PHASE",
             reaper.MARKER)


class _Forked:
    """A child forked by the warm worker, shaped like the subprocess.Popen the rest of this module uses."""

    def __init__(self, zygote: "_Zygote", pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None

    def wait(self, timeout: float | None = None) -> int:
        rc = self.zygote.wait_exit(self.pid, timeout)
        if rc is None:
            raise subprocess.TimeoutExpired(["autoloop.child"], timeout or 0)
        self.returncode = rc
        return rc

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


class _Zygote:
    """The engine's end of autoloop.zygote: started once per distinct base environment, reused by every child."""

    def __init__(self, env: dict[str, str]):
        import socket

        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen([sys.executable, "-m", "autoloop.zygote", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        _HELPER_PIDS.add(self.proc.pid)
        self.sock, self.buf, self.exits, self.started = mine, b"", {}, []

    def _read(self, timeout: float | None) -> None:
        import select

        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        data = self.sock.recv(65536)
        if not data:
            raise OSError("the warm worker exited")
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "exit" in msg:
                self.exits[msg["exit"]] = msg["rc"]
            else:
                self.started.append(msg["pid"])

    def spawn(self, spec_path: Path, env: dict[str, str], log_fd: int) -> _Forked:
        import socket

        socket.send_fds(self.sock, [(json.dumps({"spec": str(spec_path), "env": env}) + "\n").encode()], [log_fd])
        end = time.time() + 30
        while not self.started:
            if time.time() > end:
                raise OSError("the warm worker did not answer")
            self._read(1.0)
        return _Forked(self, self.started.pop(0))

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        end = None if timeout is None else time.time() + timeout
        while pid not in self.exits:
            left = None if end is None else max(0.0, end - time.time())
            self._read(left)  # at least one look, even with no time left
            if pid not in self.exits and left == 0.0:
                return None
        return self.exits.pop(pid)

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=2)  # it leaves when its socket closes
        except subprocess.TimeoutExpired:
            _kill_tree(self.proc.pid, grace=1.0)
        _HELPER_PIDS.discard(self.proc.pid)


_zygote: tuple[str, _Zygote] | None = None


def _warm_spawn(spec_path: Path, env: dict[str, str], log_fd: int) -> _Forked | None:
    """Fork the child from the warm worker for this base environment (started on first use); None (the caller
    starts a fresh interpreter) when it cannot be used."""
    global _zygote
    base = {k: v for k, v in env.items() if k not in _PER_CALL}
    if os.environ.get(reaper.MARKER):
        # The worker carries the engine's marker (<run>/engine), and so, in /proc/PID/environ, does every child
        # it forks (a fork keeps the environment the worker was started with; the call's own marker reaches
        # only what the child execs): the end-of-run sweep finds them all.
        base[reaper.MARKER] = os.environ[reaper.MARKER]
    key = json.dumps(base, sort_keys=True)
    try:
        if _zygote is not None and (_zygote[0] != key or _zygote[1].proc.poll() is not None):
            close_warm()
        if _zygote is None:
            _zygote = (key, _Zygote(base))
        return _zygote[1].spawn(spec_path, env, log_fd)
    except OSError:
        close_warm()
        return None


def close_warm() -> None:
    """End the warm worker (the executor's close; a changed environment starts a new one)."""
    global _zygote
    z, _zygote = _zygote, None
    if z is not None:
        z[1].close()


class Child:
    """One child process running one target method: start(), then poll() until it returns True, then
    finish() -> ChildResult. Several can run at once (autoloop.executor.LocalExecutor drives them); each
    watches its own deadline, memory cap and abort flag, and ends its own tree."""

    def __init__(self, call: ChildCall, should_abort: Callable[[], bool] = lambda: False, warm: bool = False):
        self.call, self.should_abort, self.warm = call, should_abort, warm
        self.status: str | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        call = self.call
        call.work_dir.mkdir(parents=True, exist_ok=True)
        label = call.label or call.method
        spec_path = call.work_dir / f"{label}.spec.json"
        self.result_path = call.work_dir / f"{label}.result.json"
        self.log_path = call.work_dir / f"{label}.log"
        self.result_path.unlink(missing_ok=True)
        spec_path.write_text(json.dumps({
            "target_path": str(call.target_path), "method": call.method,
            "args": call.args, "result_path": str(self.result_path),
        }))
        env = dict(os.environ)
        env.update(call.env)
        if call.marker:
            env[reaper.MARKER] = call.marker
        pkg_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # Our own children now (and every sibling started later): anything else that appears is an orphan.
        self.before = reaper.child_pids()
        self.start_t = time.time()
        read_fd, write_fd = os.pipe()
        try:
            self.proc = _warm_spawn(spec_path, env, write_fd) if self.warm else None
            if self.proc is None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "autoloop.child", str(spec_path)],
                    stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, env=env,
                    start_new_session=True,  # own process group: Ctrl-C in the terminal does not reach it
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        _LIVE_PIDS.add(self.proc.pid)
        self.log = CappedLog(read_fd, self.log_path, call.log_cap_bytes)
        try:
            self.ps: psutil.Process | None = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            # It has already ended and been reaped (a warm worker reaps its forks at once; a trivial phase on a
            # loaded machine can end before this line): poll() gets its status, there is no tree to watch.
            self.ps = None
        # The first tree sample waits 0.2 s (a short child reports its own peak RSS in its result instead):
        # listing the tree reads every process's /proc entry, the largest engine cost of a short phase.
        self.peak, self.known, self.last_sample = 0.0, [self.ps] if self.ps else [], self.start_t
        return self

    def _adopted(self) -> list[psutil.Process]:
        """Orphans re-parented to this process that are not a sibling child of another call."""
        return reaper.adopted(self.before, exclude=_LIVE_PIDS | _HELPER_PIDS)

    def poll(self, timeout: float = 0.0) -> bool:
        """Wait up to `timeout` for the child; enforce deadline, memory cap and abort. True when it has ended."""
        call, proc = self.call, self.proc
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            pass
        now = time.time()
        if now - self.last_sample >= 0.2 or call.memory_cap_mb:
            tree = (_tree(self.ps) if self.ps else []) + self._adopted()
            self.known.extend(p for p in tree if p not in self.known)
            self.peak = max(self.peak, _rss_mb(tree))
            self.last_sample = now
        if call.memory_cap_mb and self.peak > call.memory_cap_mb:
            self.status = "oom"
        elif now >= call.deadline:
            self.status = "timeout"
        elif self.should_abort():
            self.status = "interrupted"
        if self.status:
            kill_tree(proc.pid, self.known)
            proc.wait()
            return True
        return False

    def finish(self) -> ChildResult:
        call, proc, status, peak = self.call, self.proc, self.status, self.peak
        duration = time.time() - self.start_t
        _LIVE_PIDS.discard(proc.pid)
        # Whatever the candidate started is ended now, however it detached: descendants seen while it ran,
        # orphans this (subreaper) process inherited, and anything carrying the phase's marker.
        leftovers = [p for p in self.known if p.pid != proc.pid and _alive(p)]
        leftovers += [p for p in self._adopted() if p.pid != proc.pid]
        if call.marker and not reaper.is_subreaper():  # the portable fallback (macOS): scan for the marker
            leftovers += reaper.marked(value=call.marker, owner=os.environ.get(reaper.OWNER))
        reaper.terminate(leftovers, grace=1.0 if status is None else GRACE_S)
        self.log.close()
        if self.log.error is not None:
            raise self.log.error  # the disk is full or the log is not writable: an environment fault, not the candidate's
        return _result(call, proc.returncode, status, peak, duration, self.result_path, self.log_path)


def execute(call: ChildCall, should_abort: Callable[[], bool] = lambda: False) -> ChildResult:
    """Run one call to its end (the sequential path; see autoloop.executor for several at once)."""
    child = Child(call, should_abort).start()
    poll = 0.002
    while not child.poll(timeout=poll):
        poll = min(poll * 2, 0.2)
    return child.finish()


def _result(call: ChildCall, rc: int, status: str | None, peak: float, duration: float, result_path: Path,
            log_path: Path) -> ChildResult:
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
            res.peak_rss_mb = round(max(res.peak_rss_mb, float(payload.get("maxrss_mb") or 0.0)), 1)
            return res
        kind = payload.get("kind", "crash")
        res.status = {"rejected": "invalid", "oom": "oom"}.get(kind, "crash")
        res.error = payload.get("error", "")
        return res
    if rc == -signal.SIGKILL:
        res.status, res.error = "oom", "child killed by SIGKILL (likely the system's out-of-memory killer)"
    else:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else f"exited with code {rc}"
        # The summary goes last: the iteration's reason is the error's last line.
        res.status, res.error = "crash", f"{tail}\n{call.method}: the child {how} and left no result"
    return res
