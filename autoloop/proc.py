"""Process control in one place: die with the parent, stop a process group, kill a tree, find a free port.

Why one module: the engine's child (autoloop.child), the service guardian, the local model server and
the sandbox each needed the same three tricks, and three copies drifted (SIGTERM vs SIGKILL on parent
death, different grace periods). Standard library only at import time: the service guardian imports
this from a bare `python guardian.py` process; psutil is imported where a tree must be listed.

Ownership of orphans (subreaper, environment marker) is autoloop.reaper's job; this module signals.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot report the port they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send `sig` to this process when the thread that forked it exits.
    False where unsupported (macOS): pair it with `watch_parent` for a portable backstop."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def new_session_dying_with_parent() -> None:
    """A `preexec_fn`: own session/process group (so the group can be stopped as one) + die with the parent.
    PR_SET_PDEATHSIG fires when the *thread* that forked exits: fork from a thread that lives as long as
    the child (see LocalModelServer.start)."""
    os.setsid()
    die_with_parent(signal.SIGKILL)


def watch_parent(on_death: Callable[[], Any], every_s: float = 0.25, parent: int | None = None) -> threading.Thread:
    """Poll getppid() in a daemon thread and call `on_death` once the parent is gone (portable; works after
    kill -9 of the parent, which can run no cleanup of its own)."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        on_death()

    t = threading.Thread(target=watch, daemon=True, name="autoloop-parent-watch")
    t.start()
    return t


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_group(proc: subprocess.Popen, grace: float = 3.0, kill_wait: float = 5.0) -> None:
    """Stop a process started with `start_new_session=True` and everything in its group: SIGTERM the
    group, wait up to `grace` for the leader, then SIGKILL the group (stragglers included) and reap."""
    if not signal_group(proc.pid, signal.SIGTERM) and proc.poll() is not None:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=kill_wait)
    except subprocess.TimeoutExpired:
        pass


def kill_tree(pid: int, known: list | None = None, grace: float = 5.0) -> None:
    """SIGTERM the process group `pid` leads and every known descendant (psutil.Process), wait `grace`,
    then SIGKILL what is left. Descendants that left the group are covered by `known`."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        procs = []
    for p in known or []:
        if p not in procs:
            procs.append(p)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signal_group(pid, sig)
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
