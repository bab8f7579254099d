"""The executor seam (autoloop/executor.py): real child processes, several at once, budgets counted from
a child's real start, state moved by archive only (tests/archive_executor.py), and a whole run driven
through an executor that shares no file system with its children."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from autoloop.executor import ChildCall, LocalExecutor, executor_factory, make_executor, pack, unpack
from conftest import TEST_TARGETS, autoloop, journal_events, only_run, sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive_executor import ArchiveExecutor  # noqa: E402

SLEEPER = TEST_TARGETS / "sleeper.py"


def _state(tmp: Path, name: str) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "value.txt").write_text("0.1\n")
    (d / "gone.txt").write_text("x\n")
    return d


def _run_call(tmp: Path, name: str, sleep: float, value: float, budget: float = 20.0, stamp: bool = False) -> ChildCall:
    state = _state(tmp, name)
    return ChildCall(target_path=SLEEPER, method="run",
                     args={"candidate": {"params": {"sleep": sleep, "value": value, "stamp": stamp}}, "state": str(state),
                           "deadline": time.time() + budget},
                     deadline=time.time() + budget, work_dir=tmp / f"work-{name}", label=f"run.{name}",
                     budget_s=budget, paths=("state",), writes=("state",))


def test_members_run_concurrently_up_to_parallel(tmp_path: Path) -> None:
    """Judged by when each child slept (its own clock readings), not by the wall time of the whole batch,
    which a busy machine stretches: with two slots the sleeps overlap, with one they follow each other."""
    def slept(name: str) -> tuple[float, float]:
        a, b = (tmp_path / name / "slept.txt").read_text().split()
        return float(a), float(b)

    ex = LocalExecutor(parallel=2)
    hs = [ex.submit(_run_call(tmp_path, f"m{i}", 1.5, 0.5 + i, stamp=True)) for i in range(2)]
    res = ex.wait(hs)
    assert [r.status for r in res] == ["ok", "ok"]
    assert [float((tmp_path / f"m{i}" / "value.txt").read_text()) for i in range(2)] == [0.5, 1.5]
    (a0, a1), (b0, b1) = slept("m0"), slept("m1")
    assert max(a0, b0) < min(a1, b1), "two slots: the members' sleeps must overlap"
    ex1 = LocalExecutor(parallel=1)
    ex1.wait([ex1.submit(_run_call(tmp_path, f"s{i}", 1.5, 0.5, stamp=True)) for i in range(2)])
    (a0, a1), (b0, b1) = slept("s0"), slept("s1")
    assert a1 <= b0 or b1 <= a0, "one slot: the second member starts after the first ends"


def test_a_queued_call_gets_its_whole_budget(tmp_path: Path) -> None:
    """With one slot, the second call waits > 5 s in the queue, longer than its 4 s budget: that budget
    starts when the child starts, so the queued call still finishes."""
    ex = LocalExecutor(parallel=1)
    hs = [ex.submit(_run_call(tmp_path, "q0", 5.0, 0.3, budget=20)), ex.submit(_run_call(tmp_path, "q1", 0.1, 0.3, budget=4.0))]
    assert [r.status for r in ex.wait(hs)] == ["ok", "ok"]


def test_one_member_times_out_the_other_finishes(tmp_path: Path) -> None:
    ex = LocalExecutor(parallel=2)
    slow, fast = _run_call(tmp_path, "slow", 30, 0.2, budget=1.5), _run_call(tmp_path, "fast", 0.1, 0.9)
    res = ex.wait([ex.submit(slow), ex.submit(fast)])
    assert res[0].status == "timeout" and "deadline" in res[0].error
    assert res[1].status == "ok"
    assert (tmp_path / "fast" / "value.txt").read_text().strip() == "0.9"


def test_abort_interrupts_every_running_member(tmp_path: Path) -> None:
    ex = LocalExecutor(parallel=2)
    t0 = time.time()
    res = ex.wait([ex.submit(_run_call(tmp_path, f"a{i}", 30, 0.2)) for i in range(2)],
                  should_abort=lambda: time.time() - t0 > 1.0)
    assert [r.status for r in res] == ["interrupted", "interrupted"]
    assert time.time() - t0 < 15


def test_pack_unpack_moves_a_directory_by_value(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / ".git").mkdir(parents=True)
    (src / ".git" / "HEAD").write_text("ref\n")
    (src / "sub").mkdir()
    (src / "sub" / "a.txt").write_text("A")
    (src / "b.bin").write_bytes(bytes(range(256)))
    dest = tmp_path / "dest"
    (dest / ".git").mkdir(parents=True)
    (dest / ".git" / "keep").write_text("mine")
    (dest / "stale.txt").write_text("not in the archive")
    unpack(pack(src), dest)
    assert (dest / "sub" / "a.txt").read_text() == "A" and (dest / "b.bin").read_bytes() == bytes(range(256))
    assert not (dest / "stale.txt").exists()  # a file the method deleted is deleted here too
    assert (dest / ".git" / "keep").read_text() == "mine" and not (dest / ".git" / "HEAD").exists()


def test_archive_executor_ships_state_and_brings_changes_back(tmp_path: Path) -> None:
    ex = ArchiveExecutor(parallel=2)
    calls = [_run_call(tmp_path, f"r{i}", 0.1, 0.4 + i) for i in range(2)]
    res = ex.wait([ex.submit(c) for c in calls])
    assert [r.status for r in res] == ["ok", "ok"], [r.error for r in res]
    for i in range(2):
        assert (tmp_path / f"r{i}" / "value.txt").read_text().strip() == str(0.4 + i)
        assert not (tmp_path / f"r{i}" / "gone.txt").exists()
        assert (tmp_path / f"work-r{i}" / f"run.r{i}.log").exists()
    assert ex.shipped_bytes > 0


def test_executor_specs() -> None:
    assert executor_factory("local") is LocalExecutor and executor_factory(None) is LocalExecutor
    assert isinstance(make_executor("archive_executor:ArchiveExecutor", 3), ArchiveExecutor)
    for bad in ("nosuchmodule:X", "archive_executor", "archive_executor:Nope", "json:JSONDecodeError"):
        with pytest.raises(ValueError, match="--executor"):
            executor_factory(bad)
    with pytest.raises(ValueError, match="parallel"):
        LocalExecutor(0)


def _env() -> dict:
    import os

    tests = str(Path(__file__).resolve().parent)
    return {"PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_a_whole_run_through_an_executor_that_shares_no_files(runs_dir: Path) -> None:
    """Baseline, candidates, keep and revert, with every child in its own scratch copy: the results are
    what the local executor gives."""
    autoloop(runs_dir, "run", str(SLEEPER), "--max-iters", "3", "--no-progress",
             "--executor", "archive_executor:ArchiveExecutor", env=_env())
    rid = only_run(runs_dir)
    rows = sql(runs_dir, "select iter, status, score from iterations order by iter")
    assert [(r["status"], round(r["score"], 3)) for r in rows] == [("keep", 0.1), ("keep", 0.2), ("keep", 0.3), ("keep", 0.4)]
    start = next(e for e in journal_events(runs_dir, rid) if e["kind"] == "run_start")
    assert start["config"]["engine"]["executor"] == "archive_executor:ArchiveExecutor"
    state = runs_dir / rid / "state"
    assert (state / "value.txt").read_text().strip() == "0.4" and not (state / "gone.txt").exists()
    comps = sql(runs_dir, "select value from metrics where name = 'gone_present' and iter = 3")
    assert comps == [{"value": 0.0}]


def test_bad_executor_option_is_one_line_exit_2(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", str(SLEEPER), "--executor", "nosuch.module:Thing", check=False)
    assert p.returncode == 2, p.stderr
    assert "--executor" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not runs_dir.exists() or not list(runs_dir.glob("*/journal.jsonl"))


@pytest.mark.parametrize("warm", [True, False])
def test_a_child_that_ended_before_the_engine_looked_is_still_a_result(tmp_path: Path, monkeypatch, warm) -> None:
    """A trivial phase on a loaded machine can end, and be reaped by the warm worker, before the engine asks
    psutil about it (seen once: NoSuchProcess took the engine down). Injected here: the first lookup of the
    child finds no process; the real child's outcome must still come back."""
    import psutil

    from autoloop import sandbox

    real, calls = psutil.Process, []

    def gone_first(pid=None):
        calls.append(pid)
        if len(calls) == 1:
            raise psutil.NoSuchProcess(pid)
        return real(pid)

    monkeypatch.setattr(sandbox.psutil, "Process", gone_first)
    call = _run_call(tmp_path, "quick", 0.0, 0.75)
    child = sandbox.Child(call, warm=warm).start()
    while not child.poll(timeout=0.05):
        pass
    res = child.finish()
    assert res.status == "ok", res.error
    assert float((tmp_path / "quick" / "value.txt").read_text()) == 0.75
