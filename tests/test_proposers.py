"""Proposers chosen per run (`--proposer`, autoloop/proposers/__init__.py): recorded in the run's config,
kept by resume (which then proposes exactly what an uninterrupted run would), refused in one line when
unusable, and a guard failure is infeasible to TPE."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoloop.history import IterationRecord
from autoloop.proposers import guard_constraint, make_proposer
from autoloop.proposers.search import LLMSearchProposer, OptunaProposer, RandomProposer
from autoloop.target import TargetError, load_target
from conftest import TEST_TARGETS, autoloop, journal_events, sql

SPACEY = str(TEST_TARGETS / "spacey.py")


def _params(runs_dir: Path, run_id: str) -> list[dict]:
    return [e["candidate"]["params"] for e in journal_events(runs_dir, run_id) if e["kind"] == "iter_start"
            and not e.get("baseline")]


def test_make_proposer_builds_what_the_spec_names(monkeypatch) -> None:
    t = load_target(SPACEY)
    assert make_proposer(None, t) is t and make_proposer("", t) is t
    assert isinstance(make_proposer("random", t), RandomProposer)
    tpe = make_proposer("tpe", t)
    assert isinstance(tpe, OptunaProposer) and tpe.constraint is guard_constraint and tpe.n_startup_trials == 2
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(TargetError, match="ANTHROPIC_API_KEY"):
        make_proposer("llm", t)
    llm = make_proposer("llm", t, client=object())  # the client is handed over, never imported by the proposer
    assert isinstance(llm, LLMSearchProposer) and isinstance(llm.fallback, OptunaProposer)
    assert type(make_proposer("spacey:GridProposer", t)).__name__ == "GridProposer"
    behave = load_target(TEST_TARGETS / "behave.py")
    with pytest.raises(TargetError, match="declares no `space`"):
        make_proposer("tpe", behave)
    for bad in ("nosuch.module:X", "spacey:Nope", "what"):
        with pytest.raises(TargetError, match="--proposer"):
            make_proposer(bad, t)


def test_a_guard_failure_is_infeasible_to_tpe() -> None:
    assert guard_constraint(IterationRecord(iter=3, status="revert", reason="guard ok: 0 fell below incumbent 1 - 0")) == 1.0
    assert guard_constraint(IterationRecord(iter=3, status="revert", reason="not better by more than min_delta")) == 0.0


def test_proposer_is_per_run_recorded_and_kept_by_resume(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", SPACEY, "--max-iters", "3", "--proposer", "random", "--run-id", "whole", "--no-progress")
    autoloop(runs_dir, "run", SPACEY, "--max-iters", "1", "--proposer", "random", "--run-id", "split", "--no-progress")
    autoloop(runs_dir, "resume", "split", "--max-iters", "3")  # no --proposer: the recorded one
    whole, split = _params(runs_dir, "whole"), _params(runs_dir, "split")
    assert len(whole) == 3 and whole == split  # resume proposes exactly what the uninterrupted run did
    assert all(not d["description"].startswith("own:") for d in
               sql(runs_dir, "select description from iterations where run_id = 'whole' and iter > 0"))
    cfg = sql(runs_dir, "select config from runs where run_id = 'split'")[0]["config"]
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    assert cfg["engine"]["proposer"] == "random"
    # A resume may change the proposer; the change is recorded and a later resume keeps it.
    autoloop(runs_dir, "resume", "split", "--max-iters", "4", "--proposer", "spacey:GridProposer")
    autoloop(runs_dir, "resume", "split", "--max-iters", "5")
    assert [p["x"] for p in _params(runs_dir, "split")[3:]] == [0.5, 1.0]  # GridProposer at iterations 4 and 5
    # Without --proposer the target proposes for itself; a module:Class proposer is found beside the target.
    autoloop(runs_dir, "run", SPACEY, "--max-iters", "1", "--run-id", "own", "--no-progress")
    assert sql(runs_dir, "select description from iterations where run_id = 'own' and iter = 1")[0]["description"] == "own: x=0.25"
    autoloop(runs_dir, "run", SPACEY, "--max-iters", "2", "--run-id", "grid", "--proposer", "spacey:GridProposer",
             "--no-progress")
    assert [p["x"] for p in _params(runs_dir, "grid")] == [-1.0, -0.5]


def test_an_unusable_proposer_is_one_line_exit_2_nothing_written(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", str(TEST_TARGETS / "behave.py"), "--proposer", "tpe", "--no-progress", check=False)
    assert p.returncode == 2 and "declares no `space`" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not runs_dir.exists() or not list(runs_dir.glob("*/journal.jsonl"))
