"""Own every process a candidate starts, however it detaches, and end them all when its phase ends.

Why three mechanisms: a process group is left by `setsid`; a double fork (the middle process exits at
once) re-parents the daemon before any sample of the process tree can see it; and no single mechanism
works everywhere. So:

1. Subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`): orphans are re-parented to the nearest subreaper
   ancestor instead of init. The candidate's child process is one (its daemons stay in its tree while it
   lives) and so is the engine (orphans of a killed child become the engine's direct children).
2. An environment marker, `AUTOLOOP_CANDIDATE=<run>/<iter>/<phase>`, inherited by everything the child
   starts; `marked()` finds those processes anywhere with psutil (the portable fallback, e.g. macOS).
3. Engine-level: `AUTOLOOP_CANDIDATE=<run>/engine` in the engine's environment, so a final sweep at the
   end of a run finds anything its own helpers started (a local model server, a service).

cgroup v2 would also do, but it is rarely writable without root or systemd delegation: not used.

Run ids are unique within a runs folder only: two runs named alike (`--run-id nightly` in two projects, or
two runs of one target started in the same second in two folders) carry the same marker. So the engine also
sets `AUTOLOOP_OWNER=<its run folder>`, and a sweep by marker ends only processes of its own owner: without
it, the first run to end killed the other run's warm worker and children mid-iteration.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Iterable

import psutil

MARKER = "AUTOLOOP_CANDIDATE"
OWNER = "AUTOLOOP_OWNER"  # the run folder of the engine that started the process (see the module docstring)
_PR_SET_CHILD_SUBREAPER = 36


_subreaper = False


def become_subreaper(on: bool = True) -> bool:
    """Make orphaned descendants of this process re-parent to it (Linux); False where unsupported."""
    global _subreaper
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    _subreaper = on and ok
    return ok


def is_subreaper() -> bool:
    """True while this process is a subreaper (become_subreaper succeeded): every orphan of a child's tree
    then re-parents to it, so `adopted()` finds them without scanning every process's environment."""
    return _subreaper


def marked(value: str | None = None, prefix: str | None = None, owner: str | None = None) -> list[psutil.Process]:
    """Processes (other than this one) whose environment carries the marker: equal to `value`, or
    starting with `prefix`; with `owner`, only those whose AUTOLOOP_OWNER is that too (another run with the
    same id is not ours). Processes we may not read (another user's) are skipped."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            environ = p.environ()
        except (psutil.Error, OSError):
            continue
        v = environ.get(MARKER)
        if owner is not None and environ.get(OWNER) != owner:
            continue
        if v is not None and ((value is not None and v == value) or (prefix is not None and v.startswith(prefix))):
            out.append(p)
    return out


def _proc_children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children (Linux): a few small reads, where psutil reads the stat
    file of every process on the machine. None when the kernel does not offer the file."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out: list[int] = []
    try:
        for t in tasks:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except FileNotFoundError:
        return None if not out and not os.path.exists(f"/proc/{pid}/task/{tasks[0]}/children") else out
    except OSError:
        return out
    return out


def children(pid: int | None = None, recursive: bool = False) -> list[psutil.Process]:
    """The children (or all descendants) of a process, cheaply where /proc allows."""
    pid = pid or os.getpid()
    direct = _proc_children(pid)
    if direct is None:
        try:
            return psutil.Process(pid).children(recursive=recursive)
        except psutil.Error:
            return []
    out: list[psutil.Process] = []
    todo = list(direct)
    while todo:
        c = todo.pop(0)
        try:
            out.append(psutil.Process(c))
        except psutil.Error:
            continue
        if recursive:
            todo.extend(_proc_children(c) or [])
    return out


def descendants(pid: int | None = None) -> list[psutil.Process]:
    return children(pid, recursive=True)


def terminate(procs: Iterable[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM, wait up to `grace` seconds, SIGKILL the rest, and reap our own children among them.
    Returns the processes still alive afterwards (should be none)."""
    procs = [p for p in dict.fromkeys(procs) if p.pid != os.getpid()]
    if not procs:
        return []
    alive = procs
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for p in alive:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=wait)
        if not alive:
            break
    _reap(procs)
    return [p for p in alive if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(procs: Iterable[psutil.Process]) -> None:
    """Collect the exit status of our own (adopted) children so no zombie is left behind."""
    for p in procs:
        try:
            os.waitpid(p.pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def adopted(before: set[int], exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Direct children of this process that were not there before (orphans a subreaper inherited),
    with their descendants."""
    skip = set(before) | set(exclude)
    out: list[psutil.Process] = []
    for k in children():
        if k.pid in skip:
            continue
        out.append(k)
        out.extend(children(k.pid, recursive=True))
    return out


def child_pids() -> set[int]:
    direct = _proc_children(os.getpid())
    if direct is not None:
        return set(direct)
    try:
        return {p.pid for p in psutil.Process().children()}
    except psutil.Error:
        return set()
