"""`autoloop doctor`: is this machine ready for a run? One line per check, each with the fix when it is not.

The engine checks Python, git, DuckDB (and the history database, if any) and free disk; optional parts add
their own checks (autoloop.mlx: the BLAS MLX gets, measured in child processes, and the bundled model).
A check is (status, name, detail) with status "ok", "warn" (works, but slowly or not yet) or "fail"
(a run would not work).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

MIN_FREE_GIB = 2.0  # a float32 135M model is ~0.5 GB; checkpoints and blobs grow from there


class Check(NamedTuple):
    status: str  # "ok" | "warn" | "fail"
    name: str
    detail: str


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def python_check() -> Check:
    try:
        import psutil

        ram = f", {_gib(psutil.virtual_memory().total)} RAM"
    except Exception:
        ram = ""
    return Check("ok", "python", f"{sys.version.split()[0]} ({sys.executable}); {platform.system()} "
                                 f"{platform.machine()}, {os.cpu_count()} CPUs{ram}")


def git_check() -> Check:
    git = shutil.which("git")
    if git is None:
        return Check("fail", "git", "not found: install git (e.g. sudo apt-get install git); checkpoints are git commits")
    try:
        out = subprocess.run([git, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("fail", "git", f"{git} does not run ({e})")
    return Check("ok", "git", f"{out.removeprefix('git version ')} ({git})")


def duckdb_check(runs_dir: Path) -> Check:
    try:
        import duckdb
    except Exception as e:
        return Check("fail", "duckdb", f"cannot import duckdb ({e}): pip install duckdb")
    db = runs_dir / "history.duckdb"
    if not db.exists():
        return Check("ok", "duckdb", f"{duckdb.__version__}; no history yet ({db} is made by the first run)")
    from autoloop import store

    try:
        _, rows = store.query(db, "select count(*) from runs", timeout_s=10)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160]
        return Check("warn", "duckdb", f"{duckdb.__version__}; {db} does not open ({msg}); "
                                       f"`autoloop db rebuild` recreates it from the journals")
    return Check("ok", "duckdb", f"{duckdb.__version__}; {db}: {rows[0][0]} run(s)")


def disk_check(paths: dict[str, Path]) -> Check:
    parts, low = [], []
    for label, p in paths.items():
        q = p
        while not q.exists() and q != q.parent:
            q = q.parent
        free = shutil.disk_usage(q).free
        parts.append(f"{label} {p}: {_gib(free)} free")
        if free < MIN_FREE_GIB * 2**30:
            low.append(label)
    if low:
        return Check("warn", "disk", "; ".join(parts) + f"; below {MIN_FREE_GIB:.0f} GiB for {', '.join(low)}: "
                                                        f"free space or use --runs-dir / AUTOLOOP_CACHE_DIR elsewhere")
    return Check("ok", "disk", "; ".join(parts))


def checks(runs_dir: Path) -> list[Check]:
    """All checks, engine first, then those of the optional parts that are installed."""
    out = [python_check(), git_check(), duckdb_check(runs_dir)]
    cache = Path(os.environ.get("AUTOLOOP_CACHE_DIR") or Path.home() / ".cache" / "autoloop").expanduser()
    try:
        from autoloop.mlx.doctor import checks as mlx_checks
    except Exception:  # MLX missing: the engine works without it
        mlx_checks = None
    if mlx_checks is not None:
        out.extend(mlx_checks())
    out.append(disk_check({"runs": runs_dir, "cache": cache}))
    return out
