"""Progress inside phases (the hook, the log lines, `status`), reference points, and readable tables:
through the real CLI, real child processes, real DuckDB and git."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TEST_TARGETS, autoloop, journal_events, only_run, sql

REFS = str(TEST_TARGETS / "refs_target.py")
FAST = {"AUTOLOOP_PROGRESS_MIN_S": "0.1"}


# -- the hook ------------------------------------------------------------------------------------------
def test_report_writes_a_small_file_rate_limited_and_does_nothing_outside_a_run(tmp_path, monkeypatch) -> None:
    from autoloop import progress

    monkeypatch.delenv("AUTOLOOP_ITER_DIR", raising=False)
    progress.report(done=1, total=2)  # outside a run: nothing, no error
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOLOOP_PHASE", "score")
    monkeypatch.setenv("AUTOLOOP_PROGRESS_MIN_S", "60")
    progress.report(done=0, total=200, unit="items", task="generate")
    first = progress.read_progress(tmp_path, "score")
    assert first["done"] == 0 and first["total"] == 200 and first["eta_s"] is None
    time.sleep(0.05)
    progress.report(done=50, total=200, unit="items", task="generate", tokens_per_s=40.0)
    assert progress.read_progress(tmp_path, "score")["done"] == 0  # within the minimum interval: skipped
    progress.report(done=200, total=200, unit="items", task="generate", tokens_per_s=40.0)
    last = progress.read_progress(tmp_path, "score")
    assert last["done"] == 200 and last["eta_s"] == 0.0  # the last report of a task is always written
    progress.report(done=3, unit="steps", task="GRPO", step=40, reward=0.41234, loss=0.02, eta_s=125)
    p = progress.read_progress(tmp_path, "score")
    assert p["task"] == "GRPO" and p["metrics"]["reward"] == 0.41234  # a new task is always written
    line = progress.describe(p, now=p["ts"])
    assert line == "GRPO 3 steps · step 40 · loss 0.0200 · mean reward 0.4123 · ETA 0:02:05"
    assert progress.read_progress(tmp_path, "score", since=time.time() + 60) is None  # older than the phase
    assert progress.read_progress(tmp_path, "run") is None


def test_eta_comes_from_the_rate_of_the_current_task(tmp_path, monkeypatch) -> None:
    from autoloop import progress

    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOLOOP_PHASE", "run")
    monkeypatch.setenv("AUTOLOOP_PROGRESS_MIN_S", "0")
    progress.report(done=0, total=40, task="generate")
    time.sleep(0.2)
    progress.report(done=10, total=40, task="generate")
    eta = progress.read_progress(tmp_path, "run")["eta_s"]
    assert 0.4 < eta < 1.5  # 10 items in ~0.2 s, 30 left: ~0.6 s


# -- the engine shows it --------------------------------------------------------------------------------
def _lines(out: str, phase: str) -> list[str]:
    return [ln for ln in out.splitlines() if re.search(rf"iter 1: {phase} \d+:\d\d:\d\d", ln)]


def test_a_non_terminal_run_logs_progress_lines_during_a_long_phase(runs_dir: Path) -> None:
    env = dict(FAST, REFS_SLEEP="3")
    p = autoloop(runs_dir, "run", REFS, "--max-iters", "1", "--progress-every", "0.5", env=env)
    out = p.stdout
    run_lines = _lines(out, "run")
    assert len(run_lines) >= 3, out  # ~3 s of run() at one line per 0.5 s (even before the child reports)
    assert all("/ 0:01:00" in ln for ln in run_lines)
    reported = [ln for ln in run_lines if "SFT" in ln]
    done = [int(re.search(r"SFT (\d+)/10 items", ln).group(1)) for ln in reported]
    assert len(done) >= 2 and done == sorted(done) and done[-1] > done[0], run_lines
    # once the rate is known: ETA, loss and tokens/s
    assert all("ETA" in ln and "loss" in ln and "tok/s" in ln for ln, d in zip(reported, done) if d > 0)
    score_lines = _lines(out, "score")
    # a line may come before the scoring child's first report (elapsed only); every later one carries it
    scored = [ln for ln in score_lines if "generate" in ln]
    assert scored and all(re.search(r"generate \d+/20 items \(\d+%\)", ln) for ln in scored), score_lines
    assert all(ln.endswith("/ 0:01:00") for ln in score_lines if ln not in scored), score_lines
    lines = out.splitlines()
    # logged while the phase ran, not after it
    assert lines.index(run_lines[-1]) < lines.index(next(ln for ln in lines if "iter 1: score (budget" in ln))
    # the default (30 s) stays quiet in a short phase, and 0 turns the lines off
    quiet = autoloop(runs_dir.parent / "q", "run", REFS, "--max-iters", "1", "--progress-every", "0", env=env).stdout
    assert not _lines(quiet, "run")


@pytest.mark.slow  # 20-27 s; the progress lines of a long phase stay in the default run
def test_status_shows_the_progress_of_the_phase_in_flight(runs_dir: Path) -> None:
    e = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), REFS_SLEEP="8", **FAST)
    proc = subprocess.Popen([sys.executable, "-m", "autoloop", "run", REFS, "--max-iters", "1", "--no-progress"],
                            env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.time() + 60
        while time.time() < end and not list(runs_dir.glob("*/iters/001/run.progress.json")):
            time.sleep(0.1)
        time.sleep(1.5)
        st = json.loads(autoloop(runs_dir, "status", "--json").stdout)
        assert st["running"] and st["phase"] == "run" and st["iter"] == 1
        prog = st["progress"]
        assert prog["task"] == "SFT" and prog["total"] == 10 and 0 < prog["done"] < 10 and prog["eta_s"] > 0
        assert prog["metrics"]["loss"] > 0 and prog["metrics"]["tokens_per_s"] == 41.26
        text = autoloop(runs_dir, "status").stdout
        assert re.search(r"progress: SFT \d+/10 items \(\d+%\) · loss 0\.\d{4} · 41\.3 tok/s · ETA 0:00:0\d", text), text
        assert "reference points: constant valid reply 0.4583 · untrained model (iteration 0) 0.0000" in text
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out


# -- reference points -----------------------------------------------------------------------------------
def test_reference_points_are_scored_once_and_shown_beside_the_score(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", REFS, "--max-iters", "1", "--no-progress")
    run_id = only_run(runs_dir)
    autoloop(runs_dir, "resume", run_id, "--max-iters", "2", "--no-progress")
    assert len([e for e in journal_events(runs_dir, run_id) if e["kind"] == "references"]) == 1  # once per run
    refs = sql(runs_dir, "select name, kind, score from reference_scores order by n")
    assert [(r["name"], r["kind"]) for r in refs] == [("constant valid reply", "target"),
                                                      ("untrained model (iteration 0)", "baseline")]
    base = sql(runs_dir, "select score from iterations where iter = 0")[0]["score"]
    assert refs[0]["score"] == pytest.approx(0.4583333333333) and refs[1]["score"] == base
    show = autoloop(runs_dir, "show", env={"COLUMNS": ""}).stdout
    ref_line = next(ln for ln in show.splitlines() if "constant valid reply" in ln)
    assert "0.4583" in ref_line and "0.5958" in ref_line  # the score and its components, in the same columns
    assert "untrained model (iteration 0)" in show
    assert "reference points: constant valid reply 0.4583" in autoloop(runs_dir, "status").stdout
    best = autoloop(runs_dir, "best").stdout
    assert "reference points: constant valid reply 0.4583 · untrained model (iteration 0) 0.0000" in best
    assert json.loads(autoloop(runs_dir, "best", "--json").stdout)["references"]["constant valid reply"] > 0.45
    (runs_dir / "history.duckdb").unlink()
    autoloop(runs_dir, "db", "rebuild")
    assert sql(runs_dir, "select name, kind, score from reference_scores order by n") == refs


def test_a_failing_reference_hook_is_reported_and_the_run_goes_on(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", REFS, "--max-iters", "1", "--no-progress", env={"REFS_FAIL": "1"})
    assert "reference points could not be scored" in p.stdout and "stopped: max_iters" in p.stdout
    show = autoloop(runs_dir, "show").stdout
    assert "reference_scores() failed" in show and "reference scoring broke on purpose" in show
    assert "untrained model (iteration 0)" in show  # the baseline is still a reference point


# -- tables that fit and read well ------------------------------------------------------------------------
def test_show_fits_120_columns_and_wide_shows_everything(runs_dir: Path) -> None:
    autoloop(runs_dir, "run", REFS, "--max-iters", "2", "--no-progress")
    show = autoloop(runs_dir, "show", env={"COLUMNS": ""}).stdout
    assert max(len(ln) for ln in show.splitlines()) <= 120, show
    for needle in ("forge_", "json_", "skill_f1", "within_1", "hallucination", "grounding", "0.6342", "ref"):
        assert needle in show, needle
    assert "0.63416" not in show
    wide = autoloop(runs_dir, "show", "--wide", env={"COLUMNS": ""}).stdout
    for col in ("dev_json_validity", "stage_grpo", "peak_rss_mb", "overhead_s", "reason", "checkpoint"):
        assert col in wide, col
    assert "0.63416" not in wide
    assert re.search(r"│ 0\.\d +│", wide)  # durations to one decimal
    narrow = autoloop(runs_dir, "show", env={"COLUMNS": "100"}).stdout
    assert max(len(ln) for ln in narrow.splitlines()) <= 100
    for cmd in (["status"], ["best"], ["runs"]):
        out = autoloop(runs_dir, *cmd).stdout
        assert "0.6342" in out and "0.63416" not in out, (cmd, out)
    # machine-readable output keeps the stored value
    assert json.loads(autoloop(runs_dir, "best", "--json").stdout)["score"] == 0.63416666666669


def test_bad_progress_every_is_one_line_exit_2(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", REFS, "--progress-every", "-1", check=False)
    assert p.returncode == 2 and "--progress-every" in p.stderr
    assert not (runs_dir / "history.duckdb").exists()


def test_number_formats() -> None:
    from autoloop import fmt

    assert fmt.num(0.63416666666669) == "0.6342"
    assert fmt.num(12.3456, "p95_ms") == "12.3"
    assert fmt.num(301.27, "run_s") == "301.3"
    assert fmt.num(512.7, "peak_rss_mb") == "513"
    assert fmt.num(3) == "3" and fmt.num(None) == "" and fmt.num("x") == "x"
    assert fmt.num(float("nan")) == "nan" and fmt.num(1234567.0) == "1.235e+06"
    assert fmt.score(None) == "-" and fmt.hms(3725) == "1:02:05"
