"""Faults of the machine, not of the target: a full disk, a read-only or unwritable path.

Why a module: these surface as OSError from Python, as GitCommandError from git and as IOException from
DuckDB, each worded differently, and anywhere (creating a run, the journal, a commit, a child's log).
The user needs one line naming the path, the problem and what to do, never a traceback and never a hint
that blames the target. `describe(exc)` returns that line, or None when the error is something else.
"""
from __future__ import annotations

import errno
import re

# errno -> (what happened, what to do)
_KINDS = {
    errno.ENOSPC: ("no space left on the device", "free some space (or use --runs-dir on a larger disk)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space (or use --runs-dir on a larger disk)"),
    errno.EROFS: ("read-only file system", "use a writable --runs-dir (or AUTOLOOP_RUNS_DIR)"),
    errno.EACCES: ("permission denied", "make it writable by this user, or use another --runs-dir"),
    errno.EPERM: ("operation not permitted", "make it writable by this user, or use another --runs-dir"),
    errno.ENOTDIR: ("a file stands where a directory is needed", "move the file away, or use another --runs-dir"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) and try again"),
}
# How git and DuckDB word the same faults.
_TEXTS = [
    (re.compile(r"no space left on device", re.I), errno.ENOSPC),
    (re.compile(r"disk quota exceeded", re.I), errno.EDQUOT),
    (re.compile(r"read-only file system", re.I), errno.EROFS),
    (re.compile(r"permission denied", re.I), errno.EACCES),
    (re.compile(r"operation not permitted", re.I), errno.EPERM),
]
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")


class EnvironmentFault(Exception):
    """The machine refused (disk full, read-only, permissions). str() is the one line to show."""


def describe(exc: BaseException, path: object = None, then: str = "") -> str | None:
    """One line for an environment fault, or None if `exc` is not one. `path` names the place when the
    error itself does not; `then` is the next step once fixed (e.g. "then `autoloop resume RUN`")."""
    if isinstance(exc, EnvironmentFault):
        return str(exc)
    code, where = None, None
    if isinstance(exc, OSError) and exc.errno in _KINDS:
        code, where = exc.errno, exc.filename
    else:
        text = _text(exc)
        if text is None:
            return None
        for pat, c in _TEXTS:
            if pat.search(text):
                code = c
                m = _QUOTED_PATH.search(text)
                where = m.group(1) if m else None
                break
    if code is None:
        return None
    what, fix = _KINDS[code]
    where = where or path or "the runs directory"
    return f"{where}: {what}; {fix}" + (f", {then}" if then else "")


def _text(exc: BaseException) -> str | None:
    """The message of a git or DuckDB error (matched by module, so neither is imported here)."""
    mod = type(exc).__module__ or ""
    if mod.startswith("git"):
        return f"{getattr(exc, 'stderr', '')} {exc}"
    if mod.startswith(("duckdb", "_duckdb")):
        return str(exc)
    if isinstance(exc, OSError):
        return str(exc)
    return None


def fault(exc: BaseException, path: object = None, then: str = "") -> EnvironmentFault | None:
    line = describe(exc, path, then)
    return EnvironmentFault(line) if line else None
