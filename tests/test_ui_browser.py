"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright) against a run in
progress that the test starts: the curve gains a point when an iteration ends, clicking a checkpoint (in
the table or on the chart) shows its diff and per-item changes, and two runs overlay.

Skipped, with the reason, when /usr/bin/chromium or the playwright package is missing (.ci/run installs
both). Playwright never downloads a browser here: it drives the system chromium through executable_path.
Screenshots go to $AUTOLOOP_UI_SCREENSHOTS (bench/results for the committed ones), else a temp dir.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import ROOT, autoloop, journal_events
from test_engine import _start_engine
from test_ui import get, get_json, ui_server

CHROMIUM = os.environ.get("AUTOLOOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does) to run the browser tests"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright (Python) not installed: pip install -e '.[test]'"),
]

# Flags the closed network here needs (no background connections, no component updates), and no sandbox
# because the tests run as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]


@pytest.fixture
def browser(tmp_path: Path):
    profile = tmp_path / "chromium-profile"  # an empty --user-data-dir for every test
    profile.mkdir()
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                   headless=True, viewport={"width": 1400, "height": 1000},
                                                   bypass_csp=True)  # wait_for_function evaluates strings
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("AUTOLOOP_UI_SCREENSHOTS") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_ids(base: str) -> set[str]:
    """The runs the server lists; none yet while the engine has not created the history file (a 404)."""
    code, body, _ = get(base + "/api/runs")
    if code == 404 and "no history yet" in body:
        return set()
    assert code == 200, (code, body)
    return {r["run_id"] for r in json.loads(body)}


def _iters_on_chart(page) -> int:
    return int(page.get_attribute("#score-chart", "data-iterations") or 0)


def test_live_run_curve_candidate_and_overlay_in_chromium(runs_dir: Path, browser, shots: Path) -> None:
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "3", "--no-progress", "--run-id", "fit-first")
    plan = "slowok:0.3:1.5,crash,big:0.5,slowok:0.45:1,paid:0.6:1,slowok:0.55:1.5,slowok:0.7:2"
    engine = _start_engine(runs_dir, {"BEHAVE_PLAN": plan, "BEHAVE_BUDGET": "30"}, "--max-iters", "7",
                           "--run-id", "live")
    errors: list[str] = []
    try:
        with ui_server(runs_dir, extra_env={"PYTHONWARNINGS": "ignore"}) as (base, _):
            end = time.time() + 60
            while "live" not in _run_ids(base):
                assert time.time() < end, "the live run never reached the history"
                time.sleep(0.2)
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/run/live?poll=300")
            page.wait_for_selector("#score-chart[data-iterations]")
            page.evaluate("window.__sameDocument = true")
            n0 = _iters_on_chart(page)
            assert n0 < 8, "the run finished before the page could watch it"
            # The curve gains a point when an iteration ends, without a reload.
            page.wait_for_function(
                f"Number(document.querySelector('#score-chart').dataset.iterations) > {n0}", timeout=90_000)
            n1 = _iters_on_chart(page)
            ends = [e for e in journal_events(runs_dir, "live") if e["kind"] == "iter_end"]
            assert len(ends) >= n1 > n0
            assert page.evaluate("window.__sameDocument") is True
            if engine.poll() is None:
                page.wait_for_selector("#live:has-text('running')", timeout=10_000)
                page.screenshot(path=str(shots / "ui_run_live.png"), full_page=False)
            engine.wait(timeout=180)
            assert engine.returncode == 0, engine.stdout.read()
            # Every iteration of the finished run is on the chart, the failure drawn in its own colour.
            page.wait_for_function("document.querySelector('#score-chart').dataset.iterations === '8'", timeout=30_000)
            page.wait_for_selector("#title .badge:has-text('finished')")
            labels = page.evaluate("window._charts.score.series.map(s => s.label)")
            assert "kept checkpoint" in labels and any(lb.startswith("crash") for lb in labels)
            assert "lower is better" not in page.inner_text("#score-title")  # behave maximises
            assert "higher is better" in page.inner_text("#score-title")
            assert page.locator("#iters thead th", has_text="params.step").count() == 1
            assert page.locator("#iters tr.s-row-crash").count() == 1
            assert "candidate crashed on purpose" in page.inner_text("#iters tr.s-row-crash")
            page.wait_for_selector("#llm-box:not([hidden])")
            page.screenshot(path=str(shots / "ui_run.png"), full_page=True)
            page.locator("#llm-box").screenshot(path=str(shots / "ui_llm.png"))

            # Clicking a checkpoint in the table: its diff against the incumbent and the per-item changes.
            page.click('#iters tr[data-iter="3"] a.ckpt')
            page.wait_for_selector('#candidate[data-iter="3"][data-loaded="1"]')
            cand = page.inner_text("#candidate")
            assert "value.json" in cand and "against the incumbent (#1" in cand  # #2 crashed and was reverted
            assert '+{"step": "big", "value": 0.5' in page.inner_text("#candidate pre.diff")
            assert "weights.bin" in page.inner_text("#large-files") and "1.9 MiB" in page.inner_text("#large-files")
            assert "2 better" in page.inner_text("#item-summary")
            page.locator("#candidate").screenshot(path=str(shots / "ui_candidate.png"))

            # Clicking a point on the chart opens that candidate too.
            page.click("#close-cand")
            page.locator("#score-chart").scroll_into_view_if_needed()
            x, y = page.evaluate("""() => { const u = window._charts.score; const i = u.data[0].indexOf(1);
                const r = u.over.getBoundingClientRect();
                return [r.left + u.valToPos(u.data[0][i], 'x'), r.top + u.valToPos(u.data[1][i], 'y')]; }""")
            page.mouse.move(x, y)
            page.mouse.click(x, y)
            page.wait_for_selector('#candidate[data-iter="1"][data-loaded="1"]')
            assert "against the incumbent (#0" in page.inner_text("#candidate")

            # The same curve over wall time.
            page.click("#close-cand")
            page.select_option("#x-axis", "time")
            page.wait_for_function("window._charts.score.axes[0].label.startsWith('wall time')")
            assert _iters_on_chart(page) == 8
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shots / "ui_run_walltime.png"))

            # Two runs overlaid on one curve, from the runs list.
            page.goto(base + "/")
            page.wait_for_function("document.body.dataset.overlay === '2'")
            legend = page.inner_text("#overlay")
            assert "live best" in legend and "fit-first best" in legend
            row = page.locator('#runs tr[data-run="live"]').inner_text()
            assert "finished" in row and "max_iters" in row and "$0.03" in row
            page.screenshot(path=str(shots / "ui_runs.png"), full_page=True)
            page.uncheck('input.ov[value="fit-first"]')
            page.wait_for_function("document.body.dataset.overlay === '1'")
            page.check('input.ov[value="fit-first"]')
            page.wait_for_function("document.body.dataset.overlay === '2'")

            page.goto(base + "/run/nope")
            assert "no run 'nope'" in page.inner_text("main")
    finally:
        if engine.poll() is None:
            engine.send_signal(signal.SIGINT)
            engine.wait(timeout=60)
    assert not errors, errors


@pytest.mark.slow  # ~20-30 s: runs in .ci/run's slow step, keeping the README's test command under 10 minutes
def test_members_in_flight_per_node_in_chromium(runs_dir: Path, browser, shots: Path) -> None:
    """A batch of 3 with 2 slots: the run page lists the members in flight per node (node, member, phase,
    elapsed, the elapsed time counting on between polls), the third once a slot frees, none once it ends."""
    import subprocess
    import sys

    from conftest import TEST_TARGETS

    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), SLEEPER_SLEEP="8", PYTHONPATH=str(ROOT))
    engine = subprocess.Popen([sys.executable, "-m", "autoloop", "run", str(TEST_TARGETS / "sleeper.py"),
                               "--batch", "3", "--parallel", "2", "--max-iters", "1", "--no-progress",
                               "--run-id", "batch"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    errors: list[str] = []
    try:
        with ui_server(runs_dir, extra_env={"PYTHONWARNINGS": "ignore"}) as (base, _):
            end = time.time() + 60
            while "batch" not in _run_ids(base):
                assert time.time() < end and engine.poll() is None, "the batch run never reached the history"
                time.sleep(0.2)
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/run/batch?poll=300")
            page.wait_for_function("[...document.querySelectorAll('#members tbody tr td:first-child')]"
                                   ".filter(td => td.textContent === 'this machine').length === 2", timeout=60_000)
            assert page.is_visible("#members-box")
            rows = page.evaluate("[...document.querySelectorAll('#members tbody tr')].map(tr => "
                                 "[...tr.cells].map(td => td.textContent.trim()))")
            assert [r[:3] for r in rows] == [["this machine", "m0", "run"], ["this machine", "m1", "run"],
                                            ["(waiting for a slot)", "m2", "run (queued)"]], rows
            first = page.inner_text('#members tr[data-label="run.m0"] td.num')
            page.wait_for_function(f"document.querySelector('#members tr[data-label=\"run.m0\"] td.num')"
                                   f"?.textContent !== {first!r}", timeout=10_000)  # elapsed counts on
            page.locator("#members-box").screenshot(path=str(shots / "ui_members.png"))
            page.wait_for_selector('#members tr[data-label="run.m2"]:has-text("this machine")', timeout=60_000)
            assert engine.wait(timeout=120) == 0, engine.stdout.read()
            page.wait_for_selector("#title .badge:has-text('finished')", timeout=30_000)
            assert page.is_hidden("#members-box")
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    assert not errors, errors
