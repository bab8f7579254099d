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
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Iterable

import psutil

MARKER = "AUTOLOOP_CANDIDATE"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper(on: bool = True) -> bool:
    """Make orphaned descendants of this process re-parent to it (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def marked(value: str | None = None, prefix: str | None = None) -> list[psutil.Process]:
    """Processes (other than this one) whose environment carries the marker: equal to `value`, or
    starting with `prefix`. Processes we may not read (another user's) are skipped."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            v = p.environ().get(MARKER)
        except (psutil.Error, OSError):
            continue
        if v is not None and ((value is not None and v == value) or (prefix is not None and v.startswith(prefix))):
            out.append(p)
    return out


def descendants(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


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
    try:
        kids = psutil.Process().children()
    except psutil.Error:
        return out
    for k in kids:
        if k.pid in skip:
            continue
        out.append(k)
        try:
            out.extend(k.children(recursive=True))
        except psutil.Error:
            pass
    return out


def child_pids() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children()}
    except psutil.Error:
        return set()
