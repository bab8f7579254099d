"""Shared fixtures: every test gets its own runs dir (real DuckDB file, real git repos)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_TARGETS = Path(__file__).resolve().parent / "targets"


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    return d


def autoloop(runs_dir: Path, *args: str, env: dict | None = None, check: bool = True, timeout: float = 300,
             **kw) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process, as a user would. The child imports this checkout's package even
    when `cwd` is outside it (PYTHONPATH), as an install of this checkout would: without it, a test run from
    a second worktree would exercise whichever checkout the venv has installed."""
    e = dict(os.environ)
    e.update({"AUTOLOOP_RUNS_DIR": str(runs_dir), "COLUMNS": "200",
              "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "autoloop", *args], capture_output=True, text=True, env=e,
                       timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"autoloop {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def sql(runs_dir: Path, query: str) -> list[dict]:
    return json.loads(autoloop(runs_dir, "sql", query, "--format", "json").stdout)


def journal_events(runs_dir: Path, run_id: str) -> list[dict]:
    from autoloop.journal import read_events

    return read_events(runs_dir / run_id / "journal.jsonl")


def only_run(runs_dir: Path) -> str:
    ids = [p.parent.name for p in runs_dir.glob("*/journal.jsonl")]
    assert len(ids) == 1, ids
    return ids[0]
