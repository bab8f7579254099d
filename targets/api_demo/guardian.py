"""Run a command so that it can never outlive the process that started it.

    python guardian.py --parent-pid N [--grace 3] -- cmd args...

The starter launches this with start_new_session=True, so the guardian leads a process group
that holds the command and everything it forks. The guardian ends that whole group when
(a) it gets SIGTERM/SIGINT, (b) its parent dies -- PR_SET_PDEATHSIG on Linux, plus polling
os.getppid() every 0.2 s, which also works on macOS -- even when the parent was SIGKILLed and
could run no cleanup of its own, or (c) the command exits (stragglers it forked get SIGTERM; the starter SIGKILLs the group).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # polling below still covers it


def _end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM the group (ignoring it here), wait up to `grace`, then SIGKILL the group (self included)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pgid = os.getpgid(0)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)  # also ends this process: nothing of the group survives


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run a command that dies with its parent")
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--grace", type=float, default=3.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command after --")
    _set_pdeathsig()
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.getppid() != a.parent_pid:  # the parent died before prctl took effect
        return 1
    child = subprocess.Popen(cmd)  # same process group as this guardian
    while True:
        if stop["now"] or os.getppid() != a.parent_pid:
            _end_group(child, a.grace)
        rc = child.poll()
        if rc is not None:  # SIGTERM stragglers it forked; the starter's stop() SIGKILLs the group after
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(0), signal.SIGTERM)
            return rc
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
