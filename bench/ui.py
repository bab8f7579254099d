"""The dashboard's two budgets, measured in one run: page load and what an open page costs the loop.

1. Page load of a 1,000-iteration run in Debian's chromium (Playwright, system browser): from navigation
   start to the first frame with the score chart (every iteration), the component charts and the table's
   newest rows drawn, by the browser's own clock (goal < 500 ms); and to the complete 1,001-row table. The
   run is synthesised as journal events in the engine's own format (1,001 iterations, 3 components, 40 gold
   items each, params, a few failures) and loaded into DuckDB by the engine's own `db rebuild`; a real loop
   would take an hour to write it. The first load is cold (empty browser cache).
2. The loop's per-iteration overhead on a no-op target (bench/noop_target.py, the engine_overhead bench's)
   with the run's page open in chromium and polling, against no page, in blocks ordered A B B A A B B A
   (drift cancels): each block is `autoloop run` in a child process; overhead = (run_end - run_start in the
   journal - the target's own time) / iterations, so the last DuckDB write of every iteration is included.

    python bench/ui.py [--iters 25] [--rounds 2] [--poll-ms 1000]    (needs /usr/bin/chromium and playwright)

The machine's load average is printed with the figures: on a shared 2-core box absolute times mean little.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
CHROMIUM = os.environ.get("AUTOLOOP_CHROMIUM") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]


def synth_run(runs_dir: Path, run_id: str, n: int = 1000, items: int = 40) -> None:
    """Journal of an n-candidate run in the engine's event format, then the engine's own rebuild."""
    from autoloop import store

    rng = random.Random(0)
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    t0 = time.time() - n * 30
    seq = 0
    lines = []

    def ev(kind: str, ts: float, **f) -> None:
        nonlocal seq
        seq += 1
        lines.append(json.dumps({"seq": seq, "ts": ts, "kind": kind, **f}))

    ev("run_start", t0, run_id=run_id, target_name="synthetic", target_path=str(HERE / "noop_target.py"),
       target_sha256="0" * 64, gold_path="gold.jsonl", gold_sha256="1" * 64, direction="min",
       config={"engine": {}, "target": {}}, host="bench", platform="linux", python="3", packages={},
       project_commit=None, target_info=None, state_dir=str(run_dir / "state"), show_columns=["mae", "max_err", "within_tol"])
    best, t = 1.0, t0
    for i in range(n + 1):
        params = {"coef": [round(rng.uniform(-1, 1), 4) for _ in range(4)], "step": round(0.5 ** (i // 50), 6),
                  "note": f"try {i}"}
        ev("iter_start", t, iter=i, candidate={"params": params if i else {}, "description": f"candidate {i}"},
           redo_of=None)
        t += 28 + rng.random() * 4
        status = "crash" if i and i % 97 == 0 else "timeout" if i and i % 131 == 0 else None
        if status:
            ev("iter_end", t, iter=i, status=status, scores=None, commit="%040x" % i, tag=None,
               reason="RuntimeError: boom", error="Traceback...\nRuntimeError: boom", incumbent_score=best,
               incumbent_scores=None, delta=None, ci=None,
               durations={"propose_s": 0.01, "run_s": 28.0, "score_s": 0.0, "overhead_s": 0.4, "total_s": 28.4},
               peak_rss_mb=300.0, cost_usd=0.0, llm_calls=0)
            continue
        score = best * (0.999 if rng.random() < 0.2 else 1.02) if i else 1.0
        its = {f"p{k:02d}": abs(rng.gauss(score, 0.3)) for k in range(items)}
        keep = i == 0 or score < best
        ev("iter_end", t, iter=i, status="keep" if keep else "revert",
           scores={"score": score, "components": {"mae": score, "max_err": score * 2.5, "within_tol": rng.random()},
                   "items": its, "cost_usd": 0.0, "info": {}},
           commit="%040x" % i, tag=f"autoloop/{run_id}/ckpt-{i:03d}" if keep else None,
           reason="better" if keep else "not better", error=None, incumbent_score=best if i else None,
           incumbent_scores=None, delta=(score - best) if i else None, ci=None,
           durations={"propose_s": 0.01, "run_s": 25.0, "score_s": 3.0, "overhead_s": 0.4, "total_s": 28.4},
           peak_rss_mb=300.0 + rng.random() * 50, cost_usd=0.0, llm_calls=0)
        if keep:
            best = score
    ev("run_end", t, stop_reason="max_iters", status="finished")
    (run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")
    store.rebuild(runs_dir / "history.duckdb", runs_dir)


def page_load(browser, base: str, run_id: str, loads: int) -> tuple[list[float], list[float], list[dict], list[float]]:
    """Seconds to a usable page (the score chart with all 1,001 iterations, the component charts and the
    table's newest 40 rows drawn, in the first animation frame after), to the table's default view (the
    newest 200 rows, inserted after that frame), and for 'show all' (every row) when clicked."""
    ready, complete, parts, show_all = [], [], [], []
    for k in range(loads):
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/run/{run_id}", wait_until="commit")
        page.wait_for_selector("#iters tbody[data-complete='1']", timeout=60_000)
        assert page.locator("#iters tbody tr").count() == 200
        complete.append(time.perf_counter() - t0)
        assert page.get_attribute("#score-chart", "data-iterations") == "1001"
        # Set by the page in the first animation frame after it drew the charts and the newest rows,
        # in ms since the navigation started (the browser's own clock, not this process's polling).
        ready.append(page.evaluate("window.__readyAt") / 1000)
        parts.append({e[0]: e[1] for e in page.evaluate(
            "performance.getEntriesByType('measure').map(e => [e.name, Math.round(e.duration)])")})
        if k == loads - 1:
            t1 = time.perf_counter()
            page.click("#iters-more")
            page.wait_for_function("document.querySelectorAll('#iters tbody tr').length === 1001", timeout=60_000)
            show_all.append(time.perf_counter() - t1)
        page.close()
    return ready, complete, parts, show_all


def overhead_block(runs_dir: Path, iters: int, browser, base: str | None, poll_ms: int) -> float:
    """One `autoloop run` of the no-op target; with base, its page is open in chromium from the start."""
    from autoloop.journal import read_events

    run_id = f"noop-{time.time_ns()}"
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir))
    proc = subprocess.Popen([sys.executable, "-m", "autoloop", "run", str(HERE / "noop_target.py"), "--no-progress",
                             "--max-iters", str(iters), "--patience", str(iters + 1), "--run-id", run_id],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page = None
    if base:
        end = time.time() + 60
        while True:  # the page opens as soon as the run is in the history
            try:
                with urllib.request.urlopen(f"{base}/api/runs/{run_id}", timeout=10) as r:
                    r.read()
                break
            except Exception:
                if time.time() > end or proc.poll() is not None:
                    break
                time.sleep(0.05)
        page = browser.new_page()
        page.goto(f"{base}/run/{run_id}?poll={poll_ms}")
    proc.wait()
    if page is not None:
        page.close()
    events = read_events(runs_dir / run_id / "journal.jsonl")
    start = next(e for e in events if e["kind"] == "run_start")["ts"]
    stop = next(e for e in events if e["kind"] == "run_end")["ts"]
    ends = [e for e in events if e["kind"] == "iter_end"]
    target = sum((e.get("durations") or {}).get(k, 0.0) for e in ends for k in ("propose_s", "run_s", "score_s"))
    return (stop - start - target) / len(ends)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=25, help="candidate iterations per overhead block")
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each: 2 blocks without, 2 with the page)")
    ap.add_argument("--loads", type=int, default=6, help="page loads of the 1,000-iteration run")
    ap.add_argument("--poll-ms", type=int, default=1000, help="the page's polling interval (its default: 1000)")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright
    from test_ui import ui_server

    print(f"load average at the start: {os.getloadavg()[0]:.1f} (2 cores)")
    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        runs_dir = Path(d) / "runs"
        t = time.perf_counter()
        synth_run(runs_dir, "synthetic-1000")
        print(f"synthesised a 1,001-iteration run (40 items, 3 components) in {time.perf_counter() - t:.1f} s; "
              f"history.duckdb {(runs_dir / 'history.duckdb').stat().st_size / 1e6:.1f} MB")
        browser = p.chromium.launch_persistent_context(str(Path(d) / "profile"), executable_path=CHROMIUM, args=ARGS,
                                                       headless=True, viewport={"width": 1400, "height": 1000},
                                                       bypass_csp=True)  # wait_for_function evaluates strings
        with ui_server(runs_dir) as (base, _):
            t = time.perf_counter()
            with urllib.request.urlopen(f"{base}/api/runs/synthetic-1000", timeout=30) as r:
                size = len(r.read())
            api_s = time.perf_counter() - t
            ready, complete, parts, show_all = page_load(browser, base, "synthetic-1000", a.loads)
            med = statistics.median(ready)
            print(f"page load, 1,001 iterations, to a usable page (score chart with every iteration, component "
                  f"charts, the newest 40 table rows; first frame after): median {med * 1000:.0f} ms over {len(ready)} loads "
                  f"(first {ready[0] * 1000:.0f} ms, min {min(ready) * 1000:.0f} ms; goal < 500 ms: "
                  f"{'MET' if med < 0.5 else 'NOT MET'})")
            print(f"  to the table's default view (newest 200 rows): median {statistics.median(complete) * 1000:.0f} ms; "
                  f"'show all' (1,001 rows) once clicked: {show_all[0] * 1000:.0f} ms")
            print("  in-page timings (median ms): " + ", ".join(
                f"{k} {statistics.median(p_[k] for p_ in parts if k in p_):.0f}" for k in parts[-1]))
            print(f"  /api/runs/<run> after the first load's snapshot: {api_s * 1000:.0f} ms for {size / 1e3:.0f} kB of JSON "
                  "(its first call includes copying the history file)")

            without, with_page = [], []
            for _ in range(a.rounds):
                for arm in ("without", "with", "with", "without"):
                    v = overhead_block(runs_dir, a.iters, browser, base if arm == "with" else None, a.poll_ms)
                    (with_page if arm == "with" else without).append(v)
                    print(f"  block {arm:>7} page: {v * 1000:.0f} ms/iteration", flush=True)
        browser.close()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    mw, mo = statistics.median(with_page), statistics.median(without)
    spread = (max(without) - min(without)) / mo
    print(f"loop overhead per iteration (no-op target, {a.iters} iterations a block, {len(without)} blocks each, "
          f"page polling every {a.poll_ms} ms): without page median {mo * 1000:.0f} ms, with page median "
          f"{mw * 1000:.0f} ms; ratio with/without {mw / mo:.2f} (spread between blocks without the page: "
          f"{spread:.0%})")


if __name__ == "__main__":
    main()
