"""Wall-clock limits on target code that runs inside the engine process (setup, propose).

Candidates run in child processes that the sandbox can kill; a target's setup() and propose() run here, so
the engine bounds them with SIGALRM instead: the exception is raised inside the target's code, which then
unwinds normally (finally blocks run, nothing of the engine is left half-done)."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class TimeLimit(Exception):
    """Target code ran past its limit (raised inside it by SIGALRM)."""


@contextlib.contextmanager
def deadline(seconds: float, message: str, exc: type[Exception] = TimeLimit) -> Iterator[None]:
    """Raise `exc(message)` in the code under the block after `seconds`. Python code, sleeps and blocking I/O are
    interrupted; a C call is interrupted when it returns. Only the main thread can take signals: driven from
    another thread (or where there is no setitimer) the block runs without a limit."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise exc(message)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
