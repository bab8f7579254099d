"""Environment writes and DuckDB opens, one at a time, in this process.

Why: glibc's setenv() may move the environment array (when a variable is added) and unsetenv() shifts it,
while getenv() in another thread walks it. `duckdb.connect()` reads the environment with the GIL released,
and the history writer opens the database on its own thread, while the loop's thread sets AUTOLOOP_ITER and
friends for each phase. Together they crashed the engine with SIGSEGV inside `duckdb.connect` (~1 run in 60;
a thread opening a DuckDB file while another adds variables crashes within 0.4-4.3 s in 5 of 5 tries on
glibc 2.36). So every Python-level environment write in this process (`os.environ[...] = ...`, `del`,
`os.putenv`, `os.unsetenv`: the engine's own and any library's, since os.environ calls the module-level
functions) waits while a DuckDB database is being opened, and vice versa. Holding the lock costs an
environment write nothing unless an open is in progress (a few ms).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

_lock = threading.RLock()
_installed = False


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()  # a fork while another thread held it must not leave the child blocked forever


def install() -> None:
    """Route os.putenv / os.unsetenv (and so os.environ's writes) through the lock. Idempotent."""
    global _installed
    if _installed:
        return
    raw_put, raw_unset = os.putenv, os.unsetenv

    def putenv(key: Any, value: Any) -> None:
        with _lock:
            raw_put(key, value)

    def unsetenv(key: Any) -> None:
        with _lock:
            raw_unset(key)

    putenv.__doc__, unsetenv.__doc__ = raw_put.__doc__, raw_unset.__doc__
    os.putenv, os.unsetenv = putenv, unsetenv
    os.register_at_fork(after_in_child=_reset_after_fork)
    _installed = True


@contextlib.contextmanager
def opening() -> Iterator[None]:
    """Hold while calling duckdb.connect(): no environment write in this process runs meanwhile."""
    install()
    with _lock:
        yield
