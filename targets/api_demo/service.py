"""Start a service under guardian.py on 127.0.0.1, wait for health, and stop its whole process tree.

Used by the demo target and by the generic target (users' own commands). Every path stops the
service: context manager, atexit, SIGTERM turned into SystemExit (`sigterm_as_exit`), and the
guardian itself when this process is SIGKILLed.
"""
from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

GUARDIAN = Path(__file__).with_name("guardian.py")


class ServiceError(RuntimeError):
    """The service did not come up (bad command, crash at start, never healthy)."""


def free_port() -> int:
    """A port that was free a moment ago (for commands that cannot report the port they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """One running service. `cmd` may contain {port} and {port_file}; give exactly one way to learn the port.

    port_file mode: the command binds port 0 and writes the port number to {port_file} (no race).
    port mode: we pick a free port and pass it as {port}.
    """

    def __init__(self, cmd: list[str], *, workdir: Path, health_path: str = "/health", port_from_file: bool = False,
                 env: dict[str, str] | None = None, cwd: Path | None = None, start_timeout_s: float = 60.0):
        self.workdir = Path(workdir)
        self.health_path = health_path
        self.port_from_file = port_from_file
        self.env, self.cwd, self.start_timeout_s = env, cwd, start_timeout_s
        self.port_file = self.workdir / "port"
        self.port: int | None = None if port_from_file else free_port()
        self.cmd = [c.replace("{port}", str(self.port)).replace("{port_file}", str(self.port_file)) for c in cmd]
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "service.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(GUARDIAN), "--parent-pid", str(os.getpid()), "--", *self.cmd],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.cwd,
                env={**os.environ, **(self.env or {})}, start_new_session=True,
            )
        finally:
            log.close()
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        end = time.monotonic() + self.start_timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise ServiceError(f"service exited with code {self.proc.returncode} before it was healthy; "
                                   f"see {self.log_path}: {self._log_tail()}")
            if self.port is None and self.port_file.exists():
                txt = self.port_file.read_text().strip()
                self.port = int(txt) if txt.isdigit() else None
            if self.port is not None and self._healthy():
                return
            time.sleep(0.05)
        raise ServiceError(f"service not healthy at {self.health_path} within {self.start_timeout_s:.0f}s; "
                           f"see {self.log_path}: {self._log_tail()}")

    def _healthy(self) -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                c.request("GET", self.health_path)
                return c.getresponse().status == 200
            finally:
                c.close()
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """Pids in the service's process group (for leak checks)."""
        import psutil

        if self.proc is None:
            return []
        out = []
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if os.getpgid(p.pid) == self.proc.pid:
                    out.append(p.pid)
        return out

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the group (the guardian relays), wait, then SIGKILL the group; idempotent."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace + 1)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _LIVE.discard(self)

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_LIVE: set[ServiceProcess] = set()


@atexit.register
def _stop_all() -> None:
    for s in list(_LIVE):
        s.stop(grace=1.0)


@contextlib.contextmanager
def sigterm_as_exit():
    """Within the block, SIGTERM raises SystemExit so `finally` and context managers stop services.

    Only the main thread can install handlers; elsewhere the guardian's parent watch is the backstop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
