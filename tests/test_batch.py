"""The engine's batch step (autoloop/loop.py): N candidates per iteration, each run in its own copy of the
incumbent's state, screened, the best measured in full and kept or reverted once, every member recorded in
`trials` (journal first; `db rebuild` replays it) and told back to the proposer; kill -9 mid-batch, then
resume: nothing lost, nothing twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autoloop import store
from autoloop.journal import replay
from conftest import ROOT, TEST_TARGETS, autoloop, journal_events, only_run, sql

SLEEPER = str(TEST_TARGETS / "sleeper.py")
EXAMPLE = str(ROOT / "targets" / "example_fit.py")


def test_a_batch_of_4_on_the_example_target(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", EXAMPLE, "--max-iters", "3", "--batch", "4", "--no-progress")
    trials = sql(runs_dir, "select iter, member, chosen, status, score, params, description from trials "
                           "order by iter, member")
    iters = sql(runs_dir, "select iter, status, score, params, description from iterations order by iter")
    assert [t["iter"] for t in trials] == [0] + [1] * 4 + [2] * 4 + [3] * 4
    best = iters[0]["score"]
    for it in iters[1:]:
        members = [t for t in trials if t["iter"] == it["iter"]]
        assert len({json.dumps(t["params"], sort_keys=True) for t in members}) == 4  # four different moves, one of each
        chosen = [t for t in members if t["chosen"]]
        assert len(chosen) == 1 and chosen[0]["score"] == min(t["score"] for t in members)  # the best (min)
        assert it["params"] == chosen[0]["params"] and it["description"] == chosen[0]["description"]
        assert it["score"] == chosen[0]["score"]
        # The keep rule is unchanged: the best member is kept only when it beats the incumbent (min_delta 0).
        assert (it["status"] == "keep") == (it["score"] < best)
        if it["status"] == "keep":
            best = it["score"]
    rid = only_run(runs_dir)
    kept = [e for e in journal_events(runs_dir, rid) if e["kind"] == "iter_end" and e["status"] == "keep"]
    state = json.loads((runs_dir / rid / "state" / "model.json").read_text())
    want = next(t for t in trials if t["iter"] == kept[-1]["iter"] and t["chosen"])
    assert state["coef"] == want["params"]["coef"]  # the kept member's state is the run's state
    assert not list((runs_dir / rid / "iters").glob("*/members"))  # member copies are gone


def test_every_member_is_told_back_and_the_proposer_sees_pending(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", SLEEPER, "--max-iters", "2", "--batch", "3", "--parallel", "2", "--no-progress")
    trials = sql(runs_dir, "select iter, member, chosen, score, description from trials where iter > 0 "
                           "order by iter, member")
    assert [round(t["score"], 4) for t in trials] == [0.2, 0.21, 0.22, 0.3, 0.31, 0.32]
    assert [t["chosen"] for t in trials] == [False, False, True] * 2
    assert all("told 1 trials" in t["description"] for t in trials[:3])  # the baseline: one member
    assert all("told 3 trials" in t["description"] for t in trials[3:])  # iteration 1's three, every one
    hist = replay(journal_events(runs_dir, only_run(runs_dir)))
    assert [len(r.trials) for r in hist] == [1, 3, 3] and hist.iterations[-1].params["value"] == 0.32


def test_a_screen_below_the_incumbent_costs_no_full_score(runs_dir: Path) -> None:
    env = {"SLEEPER_SCREEN": "1", "SLEEPER_STEP": "-0.05"}
    autoloop(runs_dir, "run", SLEEPER, "--max-iters", "1", "--batch", "2", "--no-progress", env=env)
    it = sql(runs_dir, "select status, reason, score from iterations where iter = 1")[0]
    assert it["status"] == "invalid" and it["reason"].startswith("screening: best 0.06 vs incumbent 0.1")
    assert it["score"] is None
    trials = sql(runs_dir, "select member, status, screen_score, score from trials where iter = 1 order by member")
    assert [(t["screen_score"], t["score"]) for t in trials] == [(0.05, None), (0.06, None)]
    it_dir = runs_dir / only_run(runs_dir) / "iters" / "001"
    assert (it_dir / "screen.log").exists() and not (it_dir / "score.log").exists()
    # A batch that screens above the incumbent: its best is scored in full and kept.
    autoloop(runs_dir, "resume", only_run(runs_dir), "--max-iters", "2", env={"SLEEPER_SCREEN": "1"})
    last = sql(runs_dir, "select status, score from iterations where iter = 2")[0]
    assert last == {"status": "keep", "score": 0.31}


def test_kill9_during_a_batch_then_resume_loses_and_duplicates_nothing(runs_dir: Path) -> None:
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), SLEEPER_SLEEP="4")
    cmd = [sys.executable, "-m", "autoloop", "run", SLEEPER, "--max-iters", "2", "--batch", "3", "--run-id", "b9",
           "--no-progress"]
    eng = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    journal = runs_dir / "b9" / "journal.jsonl"
    try:
        t0 = time.time()
        while time.time() - t0 < 120:  # iteration 1 has started: its members are running
            if journal.exists() and '"iter": 1' in journal.read_text() and (runs_dir / "b9" / "iters" / "001" / "run.m0.log").exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("iteration 1 never started")
        time.sleep(1.0)
        os.killpg(eng.pid, signal.SIGKILL)
        eng.wait(timeout=10)
    finally:
        if eng.poll() is None:
            os.killpg(eng.pid, signal.SIGKILL)
    autoloop(runs_dir, "resume", "b9", "--max-iters", "2", env={"SLEEPER_SLEEP": "0"})
    events = journal_events(runs_dir, "b9")
    ends = [(e["iter"], e["status"]) for e in events if e["kind"] == "iter_end"]
    assert ends[:2] == [(0, "keep"), (1, "interrupted")] and len(ends) == 4, ends
    starts = {e["iter"]: e for e in events if e["kind"] == "iter_start"}
    assert starts[2]["redo_of"] == 1  # the interrupted batch, run again as it was proposed
    assert [c["params"]["value"] for c in starts[2]["candidates"]] == [c["params"]["value"] for c in starts[1]["candidates"]]
    rows = sql(runs_dir, "select iter, count(*) as n, count(distinct member) as members from trials group by iter order by iter")
    assert rows == [{"iter": 0, "n": 1, "members": 1}, {"iter": 2, "n": 3, "members": 3}, {"iter": 3, "n": 3, "members": 3}]
    before = sql(runs_dir, "select * from trials order by iter, member")
    store.rebuild(runs_dir / "history.duckdb", runs_dir)  # the journal alone rebuilds the same trials
    assert sql(runs_dir, "select * from trials order by iter, member") == before
