"""Start a service under guardian.py on 127.0.0.1, wait for health, and stop its whole process tree.

Each instance gets its own directory under the scratch root (`inst-<pid of the starter>-<random>/`):
`scratch/` is the service's to use (`{scratch}` in the command: its database, cache files, sockets),
beside it the service's log and port file. stop() deletes the directory; so does the guardian when the
starter dies without cleaning up (SIGKILL), and the next start sweeps the directories of starters that
no longer exist. Every path stops the service: context manager, atexit, SIGTERM turned into SystemExit
(`sigterm_as_exit`), and the guardian itself when this process is SIGKILLed.
"""
from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from autoloop.proc import free_port, stop_group  # noqa: E402,F401  (free_port: re-exported for callers)

GUARDIAN = Path(__file__).with_name("guardian.py")
SCRATCH_ENV = "AUTOLOOP_SCRATCH_DIR"


class ServiceError(RuntimeError):
    """The service did not come up (bad command, crash at start, never healthy)."""


def scratch_root(root: Path | str | None = None) -> Path:
    """Where instance directories live: `root`, else $AUTOLOOP_SCRATCH_DIR, else <tmp>/autoloop-scratch."""
    if root:
        return Path(root)
    env = os.environ.get(SCRATCH_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / "autoloop-scratch"


def remove_stale(root: Path) -> None:
    """Instance directories whose starter process is gone (it was SIGKILLed, and so was its guardian)."""
    if not root.exists():
        return
    import psutil

    for d in root.glob("inst-*"):
        with contextlib.suppress(ValueError, IndexError):
            if not psutil.pid_exists(int(d.name.split("-")[1])):
                shutil.rmtree(d, ignore_errors=True)


class ServiceProcess:
    """One running service. `cmd` may hold {port}, {port_file} and {scratch}.

    port_file mode: the command binds port 0 and writes the port number to {port_file} (no race).
    port mode: we pick a free port and pass it as {port}.
    workdir: a directory the caller owns (kept after stop); without it the instance gets its own
    directory under the scratch root, deleted on stop (see the module docstring).
    """

    def __init__(self, cmd: list[str], *, workdir: Path | None = None, health_path: str = "/health",
                 port_from_file: bool = False, env: dict[str, str] | None = None, cwd: Path | None = None,
                 start_timeout_s: float = 60.0, scratch_dir: Path | str | None = None):
        self.owns_dir = workdir is None
        if workdir is None:
            root = scratch_root(scratch_dir)
            root.mkdir(parents=True, exist_ok=True)
            remove_stale(root)
            workdir = Path(tempfile.mkdtemp(prefix=f"inst-{os.getpid()}-", dir=root))
        self.workdir = Path(workdir)
        self.scratch = self.workdir / "scratch"
        self.health_path = health_path
        self.port_from_file = port_from_file
        self.env, self.cwd, self.start_timeout_s = env, cwd, start_timeout_s
        self.port_file = self.workdir / "port"
        self.port: int | None = None if port_from_file else free_port()
        self.cmd = [c.replace("{port}", str(self.port)).replace("{port_file}", str(self.port_file))
                    .replace("{scratch}", str(self.scratch)) for c in cmd]
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None  # kept after stop, for leak checks
        self.log_path = self.workdir / "service.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        """Launch and wait until healthy (ServiceError, with the log's tail, when it never gets there)."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> "ServiceProcess":
        """Start the process under its guardian without waiting (several instances can then start at once)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        remove = ["--remove", str(self.workdir)] if self.owns_dir else []
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(GUARDIAN), "--parent-pid", str(os.getpid()), *remove, "--", *self.cmd],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.cwd,
                env={**os.environ, **(self.env or {})}, start_new_session=True,
            )
        finally:
            log.close()
        self.pgid = self.proc.pid
        _LIVE.add(self)
        return self

    def wait_ready(self) -> "ServiceProcess":
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
                raise ServiceError(f"service exited with code {self.proc.returncode} before it was healthy: "
                                   f"{self._log_tail() or '(no output)'}; command: {' '.join(self.cmd)}")
            if self.port is None and self.port_file.exists():
                txt = self.port_file.read_text().strip()
                self.port = int(txt) if txt.isdigit() else None
            if self.port is not None and self._healthy():
                return
            time.sleep(0.05)
        raise ServiceError(f"service not healthy at {self.health_path} within {self.start_timeout_s:.0f}s: "
                           f"{self._log_tail() or '(no output)'}; command: {' '.join(self.cmd)}")

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

        if self.pgid is None:
            return []
        out = []
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == self.pgid:
                    out.append(p.pid)
        return out

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the group (the guardian relays), wait, SIGKILL the group, delete the instance dir; idempotent."""
        proc = self.proc
        if proc is not None:
            stop_group(proc, grace=grace + 1)
            self.proc = None  # never signal that group again: its id may be reused
        if self.owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
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
