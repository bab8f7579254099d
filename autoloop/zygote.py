"""A warm worker: a process that has imported the engine's child code once and forks one child per phase.

Why: a fresh interpreter per child costs ~70 ms here before the target's first line runs (Python start-up,
autoloop's imports, psutil), twice per iteration. Forking a process that has them already costs a few ms.
Only autoloop's own modules are pre-imported, never the target's: target code (MLX, BLAS threads) runs
after the fork, in the child, as it did in a fresh interpreter, and a target file edited mid-run is read
fresh by every child.

    python -m autoloop.zygote FD      (FD: this end of a socketpair; the engine holds the other)

Protocol (newline-delimited JSON on the socket): the engine sends {"spec": path, "env": {...}} together
with one file descriptor (SCM_RIGHTS: the write end of the child's log pipe); the zygote forks, the child
starts a session of its own (so the engine can stop its process group), points stdout/stderr at that pipe,
applies env and runs autoloop.child.main(spec), exactly what `python -m autoloop.child spec` would do. The
zygote answers {"pid": n} and, when the child ends, {"exit": n, "rc": code} (negative: killed by a signal).
It dies with the engine (PR_SET_PDEATHSIG plus polling), and its children die with it (autoloop.child).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys


def _child(spec: str, env: dict, log_fd: int, sock: socket.socket) -> None:
    """In the forked child: become what `python -m autoloop.child spec` would have been, then exit."""
    rc = 1
    try:
        sock.close()
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(env)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        from autoloop import child

        rc = child.main(spec)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported in the log, as a fresh interpreter would
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc if isinstance(rc, int) else 1)


def serve(fd: int) -> int:
    from autoloop import child, proc, reaper, target  # noqa: F401  (warm: imported once, inherited by every fork)

    sock = socket.socket(fileno=fd)
    parent = os.getppid()
    proc.die_with_parent(signal.SIGKILL)
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buf = b""

    def send(msg: dict) -> None:
        sock.sendall((json.dumps(msg) + "\n").encode())

    while True:
        if os.getppid() != parent:
            return 0
        ready, _, _ = select.select([sock, r], [], [], 0.25)
        if r in ready:
            os.read(r, 4096)
        while True:  # reap every child that ended, and say so
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            send({"exit": pid, "rc": os.waitstatus_to_exitcode(status)})
        if sock not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
        if not data:
            return 0  # the engine closed its end
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            log_fd = fds.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(msg["spec"], msg["env"], log_fd, sock)
            os.close(log_fd)
            send({"pid": pid})


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
