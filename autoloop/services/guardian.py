"""Run a command so that it can never outlive the process that started it, nor leave its files behind.

    python guardian.py --parent-pid N [--grace 3] [--remove DIR] -- cmd args...

The starter launches this with start_new_session=True, so the guardian leads a process group
that holds the command and everything it forks. The guardian ends that whole group when
(a) it gets SIGTERM/SIGINT, (b) its parent dies -- PR_SET_PDEATHSIG on Linux, plus polling
os.getppid() every 0.2 s, which also works on macOS -- even when the parent was SIGKILLed and
could run no cleanup of its own, or (c) the command exits (stragglers it forked get SIGTERM; the starter
SIGKILLs the group). In cases (a) and (b) the guardian SIGKILLs every other member of the group, removes
DIR (the instance's scratch directory, given with --remove) once nothing can write there any more, and
exits. Standard library only, plus psutil when present (to list the group's members).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: find the autoloop package
from autoloop.proc import die_with_parent, signal_group  # noqa: E402  (standard library only)


def _others_in_group(pgid: int) -> list[int]:
    """Pids of the group other than this process (psutil when importable, else /proc)."""
    me, out = os.getpid(), []
    try:
        import psutil

        pids = psutil.pids()
    except ImportError:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []
    for pid in pids:
        if pid == me:
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid:
                out.append(pid)
    return out


def _end_group(child: subprocess.Popen, grace: float, remove: str | None) -> None:
    """SIGTERM the group (ignoring it here), wait up to `grace`, SIGKILL the rest, remove DIR, exit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pgid = os.getpgid(0)
    signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    if remove:
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            others = _others_in_group(pgid)
            if not others:
                break
            for pid in others:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                child.poll()
            time.sleep(0.05)
        shutil.rmtree(remove, ignore_errors=True)
    os.killpg(pgid, signal.SIGKILL)  # also ends this process: nothing of the group survives


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run a command that dies with its parent")
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--grace", type=float, default=3.0)
    ap.add_argument("--remove", help="a directory to delete once the group is gone (the instance's scratch)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command after --")
    die_with_parent(signal.SIGTERM)  # polling below covers systems without it
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.getppid() != a.parent_pid:  # the parent died before prctl took effect
        if a.remove:
            shutil.rmtree(a.remove, ignore_errors=True)
        return 1
    try:
        child = subprocess.Popen(cmd)  # same process group as this guardian
    except OSError as e:  # no such program: say so in the service log, as a shell would
        print(f"guardian: cannot start {cmd[0]!r}: {e.strerror}", file=sys.stderr, flush=True)
        return 127
    while True:
        if stop["now"] or os.getppid() != a.parent_pid:
            _end_group(child, a.grace, a.remove)
        rc = child.poll()
        if rc is not None:  # SIGTERM stragglers it forked; the starter's stop() SIGKILLs the group after
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal_group(os.getpgid(0), signal.SIGTERM)
            return rc
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
