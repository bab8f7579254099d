"""The generic API target (autoloop.services.ApiTarget) on services autoloop was not built around: a tiny
stdlib app written here, and the example orders service (index, a knob that only costs, a stale-cache trap,
a payment made by GET). Real HTTP on 127.0.0.1, real child processes, real DuckDB and git."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import autoloop, journal_events, only_run

from autoloop.decide import decide
from autoloop.services import ApiTarget, ServiceError, calls_from_access_log, calls_from_har, load_calls, \
    record_expectations, write_calls
from autoloop.services.example import APP, CALLS
from autoloop.target import Candidate, TargetError, load_target

ROOT = Path(__file__).resolve().parent.parent

APP_SRC = r'''
import argparse, json, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs
ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int); ap.add_argument("--delay-ms", type=float); ap.add_argument("--mode")
a = ap.parse_args()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        u = urlsplit(self.path)
        if u.path == "/ready":
            body = b"{}"
        else:
            time.sleep(a.delay_ms / 1000)
            q = parse_qs(u.query).get("q", [""])[0]
            n = len(q) + (1 if a.mode == "wrong" and q.startswith("b") else 0)
            body = json.dumps({"q": q, "n": n}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *x): pass
ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()
'''

ORDERS = ("{python} -m autoloop.services.example.orders --port {port} --db {scratch}/orders.sqlite "
          "--index {index} --cache {cache} --threads {threads} --sync-log {sync_log}")
SPACE = {"index": ("cat", [False, True]), "cache": ("cat", ["none", "lru", "stale"]), "threads": ("int", 1, 4),
         "sync_log": ("cat", [False, True])}
BASE = {"index": False, "cache": "none", "threads": 1, "sync_log": False}


def orders(tmp: Path, **kw) -> ApiTarget:
    return ApiTarget(name="orders", command=ORDERS, calls=CALLS, space=SPACE, baseline=BASE,
                     scratch_dir=tmp / "scratch", **kw)


def ours(marker: str) -> list[psutil.Process]:
    """Guardians and services whose command line names `marker` (a tmp dir of this test)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with_marker = marker in " ".join(p.info["cmdline"] or [])
        if with_marker and p.pid != os.getpid():
            out.append(p)
    return out


def assert_clean(root: Path, within: float = 10.0) -> None:
    """No process names this test's dir, and its scratch root holds nothing."""
    end = time.monotonic() + within
    scratch = root / "scratch"
    while time.monotonic() < end and (ours(str(root)) or (scratch.exists() and any(scratch.iterdir()))):
        time.sleep(0.1)
    assert not ours(str(root)), [p.info["cmdline"] for p in ours(str(root))]
    assert not scratch.exists() or not any(scratch.iterdir()), list(scratch.rglob("*"))[:10]


@pytest.fixture
def user(tmp_path):
    (tmp_path / "app.py").write_text(APP_SRC)
    raw = tmp_path / "calls_raw.jsonl"
    raw.write_text("".join(json.dumps({"id": f"c{i}", "path": f"/items?q={w}"}) + "\n"
                           for i, w in enumerate(["apple", "banana", "cherry", "blue", "avocado"] * 6)))
    t = ApiTarget(name="my_api", command="{python} app.py --port {port} --delay-ms {delay_ms} --mode {mode}",
                  health="http://127.0.0.1:{port}/ready", calls=raw, cwd=tmp_path, repeats=6,
                  space={"delay_ms": ("float", 0.0, 50.0), "mode": ("cat", ["right", "wrong"])},
                  baseline={"delay_ms": 20.0, "mode": "right"}, scratch_dir=tmp_path / "scratch")
    t.gold = record_expectations(t, t.baseline, raw, tmp_path / "calls.jsonl")
    return t, tmp_path


def state(t, root: Path, name: str, params: dict) -> Path:
    d = root / name
    t.setup(d)
    t.run(Candidate(params=params), d, time.time() + 10)
    return d


def verdict(t, inc, cand):
    return decide(cand.score, inc.score, "min", cand_components=cand.components, inc_components=inc.components,
                  guards=t.guards, cand_items=cand.items, inc_items=inc.items, bootstrap=t.bootstrap)


def test_faster_config_is_kept_wrong_one_rejected_nothing_left(user):
    t, root = user
    lines = [json.loads(x) for x in t.gold.read_text().splitlines()]
    assert all(len(c["expect"]) == 64 for c in lines)
    base = state(t, root, "a", {})
    fast = state(t, root, "b", {"delay_ms": 1.0})
    inc, cand = t.compare(base, fast, t.gold)
    assert inc.components["correctness"] == cand.components["correctness"] == 1.0
    d = verdict(t, inc, cand)
    assert d.keep, d.reason
    assert cand.info["config"] == "delay_ms=1" and cand.info["p95_ratio_ci"][1] < 0.90
    assert cand.info["concurrency"] == 1
    wrong = state(t, root, "c", {"delay_ms": 1.0, "mode": "wrong"})
    inc, cand = t.compare(base, wrong, t.gold)
    assert cand.components["correctness"] == pytest.approx(18 / 30)  # banana and blue answer wrong
    assert cand.info["screen"].startswith("screen: 12 wrong answers")  # no full comparison for it
    assert not verdict(t, inc, cand).keep
    assert_clean(root)


def test_without_expect_the_baselines_full_answers_are_the_gold(tmp_path):
    """No "expect" in the calls file: setup records the baseline's answers (full canonical JSON, hashed), and a
    config whose answers differ in any byte of the body is wrong, though its status is 200 like the baseline's."""
    (tmp_path / "app.py").write_text(APP_SRC)
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps({"path": f"/items?q={w}"}) + "\n" for w in ["apple", "banana", "blue"]))
    t = ApiTarget(name="my_api", command="{python} app.py --port {port} --delay-ms {delay_ms} --mode {mode}",
                  health="/ready", calls=calls, repeats=2, space={"delay_ms": ("float", 0.0, 50.0),
                                                                  "mode": ("cat", ["right", "wrong"])},
                  baseline={"delay_ms": 1.0, "mode": "right"}, scratch_dir=tmp_path / "scratch")
    assert t.cwd == Path(__file__).resolve().parent  # relative paths: from the file that built the target
    t.cwd = tmp_path
    a = state(t, tmp_path, "a", {})
    expected = json.loads((a / "expected_answers.json").read_text())
    assert sorted(expected) == ["line1", "line2", "line3"] and all(len(h) == 64 for h in expected.values())
    b = state(t, tmp_path, "b", {"mode": "wrong"})
    inc, cand = t.compare(a, b, calls)
    assert inc.components["correctness"] == 1.0 and cand.components["correctness"] == pytest.approx(1 / 3)
    assert cand.info["wrong_calls"] == ["line2", "line3"]
    assert_clean(tmp_path)


def test_non_idempotent_calls_stop_the_run_at_the_baseline(tmp_path):
    """The example's GET /pay changes a balance that a later call reads: replayed twice on one instance, the
    unchanged config answers differently. `autoloop run` stops before writing anything, with one line naming
    the calls and the fixes; nothing is left running, no scratch file is left."""
    target = tmp_path / "orders_api.py"
    target.write_text(f"""from autoloop.services import ApiTarget
from autoloop.services.example import CALLS
target = ApiTarget(name="orders", command={ORDERS!r}, calls=CALLS, space={SPACE!r}, baseline={BASE!r},
                   scratch_dir={str(tmp_path / 'scratch')!r})
""")
    runs = tmp_path / "runs"
    p = autoloop(runs, "run", str(target), "--no-progress", check=False, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    msg = p.stderr.strip()
    assert len(msg.splitlines()) == 1, msg
    pay = next(i for i, c in enumerate(CALLS.read_text().splitlines(), 1) if "/pay" in c)
    assert f"{CALLS}:" in msg and f"line {pay} GET /pay?order=382" in msg and f"line {pay + 1} GET /customers/42/summary" in msg
    assert "4 calls answer differently" in msg and msg.count('"balance_cents":') == 2  # its two answers, shown
    assert "restart_between_replays=True" in msg and "reset_command" in msg and '"volatile": true' in msg
    assert not runs.exists() or not [d for d in runs.iterdir() if d.name != "history.duckdb"]
    assert_clean(tmp_path)


@pytest.mark.parametrize("fix", [dict(restart_between_replays=True), dict(reset_command="POST /admin/reset"),
                                 dict(reset_command="{python} -m autoloop.services.example.orders "
                                                    "--db {scratch}/orders.sqlite --reset")])
def test_each_fix_makes_the_baseline_check_pass(tmp_path, fix):
    t = orders(tmp_path, **fix)
    expected = t.check_baseline(tmp_path / "state")
    assert len(expected) == len(load_calls(CALLS)[1])
    assert_clean(tmp_path)


def test_the_trap_is_caught_and_the_index_is_a_real_gain(tmp_path):
    """The stale cache is as fast as lru but answers from before a write: wrong, never kept, whatever its speed."""
    t = orders(tmp_path, restart_between_replays=True, repeats=4)
    base = state(t, tmp_path, "base", {})

    def state_from_base(name: str, params: dict) -> Path:  # setup (the baseline check) once is enough
        shutil.copytree(base, tmp_path / name)
        t.run(Candidate(params=params), tmp_path / name, time.time() + 10)
        return tmp_path / name

    trap = state_from_base("trap", {**BASE, "index": True, "cache": "stale"})
    inc, cand = t.compare(base, trap, t.gold)
    assert inc.components["correctness"] == 1.0 and cand.components["correctness"] < 1.0
    wrong = {c["id"]: c["path"] for c in load_calls(CALLS)[1] if c["id"] in cand.info["wrong_calls"]}
    assert "/customers/17/orders" in wrong.values() and "/customers/42/summary" in wrong.values()
    assert not verdict(t, inc, cand).keep
    good = state_from_base("good", {**BASE, "index": True})
    inc, cand = t.compare(base, good, t.gold)
    d = verdict(t, inc, cand)
    assert d.keep and cand.components["correctness"] == 1.0, d.reason
    assert_clean(tmp_path)


def test_option_and_template_errors_are_one_line(tmp_path):
    with pytest.raises(TargetError, match=r"command uses \{wrokers\}, which is neither a knob nor one of \{port\}"):
        ApiTarget(name="x", command="srv --port {port} --w {wrokers}", calls=CALLS, space={"workers": ("int", 1, 4)},
                  baseline={"workers": 1})
    with pytest.raises(TargetError, match="baseline has a value outside the space"):
        ApiTarget(name="x", command="srv", calls=CALLS, space={"workers": ("int", 1, 4)}, baseline={"workers": 9})
    with pytest.raises(TargetError, match="baseline has no value for knob 'workers'"):
        ApiTarget(name="x", command="srv", calls=CALLS, space={"workers": ("int", 1, 4)}, baseline={})
    with pytest.raises(TargetError, match=r"concurrency=0; give a whole number >= 1"):
        orders(tmp_path, concurrency=0)
    with pytest.raises(TargetError, match="restart_between_replays=True or reset_command, not both"):
        orders(tmp_path, restart_between_replays=True, reset_command="POST /reset")
    with pytest.raises(TargetError, match=r"reset_command uses \{db\}"):
        orders(tmp_path, reset_command="reset --db {db}")
    broken = ApiTarget(name="x", command="{python} -c 'import sys; print(\"boom\"); sys.exit(3)' {port}", calls=CALLS,
                       space={"w": ("int", 1, 2)}, baseline={"w": 1}, start_timeout_s=10,
                       scratch_dir=tmp_path / "scratch")
    with pytest.raises(TargetError, match=r"the baseline service did not start: service exited with code 3 before it "
                                          r"was healthy: boom; .*fix `command`"):
        broken.setup(tmp_path / "s")
    with pytest.raises(ServiceError, match="exited with code 3"):
        broken.score(tmp_path / "s", CALLS)
    assert_clean(tmp_path)


def test_calls_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "calls.jsonl"
    for lines, says in [(['{"path": "/a"}', '{"path": "/b", "expcet": "x"}'], r":2: unknown key 'expcet'"),
                        (['{"id": "a", "path": "/a"}', '{"id": "a", "path": "/b"}'], r":2: id 'a' repeats line 1"),
                        (['{"path": "/a", "method": "FETCH"}'], r":1: method 'FETCH'; use one of GET"),
                        (['{"path": "a"}'], r':1: each call needs "path" starting with "/"'),
                        (['{"path": "/a", "expect": "abc"}'], r':1: "expect" must be the 64-hex sha256'),
                        (['{"path": "/a", "volatile": "yes"}'], r':1: "volatile" must be true or false')]:
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(TargetError, match=says):
            load_calls(bad)


def test_converters_from_har_and_access_log(tmp_path):
    har = {"log": {"entries": [
        {"request": {"method": "GET", "url": "https://shop.test/api/orders?customer=7", "headers": [
            {"name": "Authorization", "value": "Bearer t"}, {"name": "User-Agent", "value": "x"}]}},
        {"request": {"method": "GET", "url": "https://shop.test/static/app.js", "headers": []}},
        {"request": {"method": "GET", "url": "https://cdn.test/x", "headers": []}},
        {"request": {"method": "post", "url": "https://shop.test/api/orders/9/status", "headers": [],
                     "postData": {"mimeType": "application/json", "text": "{\"status\": \"shipped\"}"}}}]}}
    (tmp_path / "s.har").write_text(json.dumps(har))
    calls = calls_from_har(tmp_path / "s.har")
    assert calls == [{"id": "h0001", "method": "GET", "path": "/api/orders?customer=7",
                      "headers": {"Authorization": "Bearer t"}},
                     {"id": "h0002", "method": "POST", "path": "/api/orders/9/status", "body": {"status": "shipped"}}]
    (tmp_path / "access.log").write_text(
        '127.0.0.1 - - [02/Dec/2026:10:00:00 +0000] "GET /orders?customer=7 HTTP/1.1" 200 512 "-" "curl"\n'
        '127.0.0.1 - - [02/Dec/2026:10:00:01 +0000] "GET /missing HTTP/1.1" 404 10 "-" "curl"\n'
        'garbage\n'
        '127.0.0.1 - - [02/Dec/2026:10:00:02 +0000] "POST /orders/9/status HTTP/1.1" 204 0 "-" "curl"\n')
    calls = calls_from_access_log(tmp_path / "access.log")
    assert [(c["method"], c["path"]) for c in calls] == [("GET", "/orders?customer=7"), ("POST", "/orders/9/status")]
    out = write_calls(tmp_path / "calls.jsonl", calls)
    assert [c["path"] for c in load_calls(out)[1]] == ["/orders?customer=7", "/orders/9/status"]


def test_a_sigkilled_scoring_process_leaves_no_service_and_no_scratch(tmp_path):
    """No finally, no atexit: only the guardians act. They end the services' process groups and delete the
    instances' scratch dirs (databases, logs)."""
    code = f"""
import time
from pathlib import Path
from autoloop.services import ApiTarget
from autoloop.services.example import CALLS
t = ApiTarget(name="o", command={ORDERS!r}, calls=CALLS, space={SPACE!r}, baseline={BASE!r}, repeats=50,
              scratch_dir={str(tmp_path / 'scratch')!r})
for d in ("a", "b"):
    Path({str(tmp_path)!r}, d).mkdir()
    (Path({str(tmp_path)!r}, d) / "config.json").write_text('{json.dumps(BASE)}')
t.compare(Path({str(tmp_path)!r}, "a"), Path({str(tmp_path)!r}, "b"), CALLS)
"""
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and len(list((tmp_path / "scratch").glob("inst-*/scratch/orders.sqlite"))) < 2:
            time.sleep(0.1)
        assert len(list((tmp_path / "scratch").glob("inst-*/scratch/orders.sqlite"))) == 2
        assert len([p for p in ours(str(tmp_path)) if "guardian.py" not in " ".join(p.info["cmdline"])]) >= 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
        assert_clean(tmp_path, within=15)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)


def test_the_copied_file_runs_outside_the_repo(tmp_path):
    """targets/api_generic.py copied alone to a folder outside the repository runs as shipped (the example
    service): the harness comes from the package. `show` prints the measurement concurrency."""
    assert not str(tmp_path).startswith(str(ROOT))
    shutil.copy(ROOT / "targets" / "api_generic.py", tmp_path / "my_api.py")
    runs = tmp_path / "runs"
    env = {"AUTOLOOP_SCRATCH_DIR": str(tmp_path / "scratch")}  # PYTHONPATH: the package only (conftest), not targets/
    autoloop(runs, "run", "my_api.py", "--max-iters", "1", "--no-progress", cwd=tmp_path, env=env, timeout=600)
    rid = only_run(runs)
    ends = [e for e in journal_events(runs, rid) if e["kind"] == "iter_end"]
    assert [e["iter"] for e in ends] == [0, 1] and ends[0]["status"] == "keep"
    assert ends[0]["scores"]["components"]["correctness"] == 1.0
    rows = json.loads(autoloop(runs, "show", rid, "--json").stdout)
    assert [r["concurrency"] for r in rows if r["status"] in ("keep", "revert")] and \
        all(r["concurrency"] == 1 for r in rows if r["status"] in ("keep", "revert"))
    assert all("p95_ratio" in r for r in rows) and rows[0]["p95_ratio"] is None  # the baseline has no incumbent
    assert (runs / rid / "state" / "expected_answers.json").exists()
    assert_clean(tmp_path)


def test_the_shipped_example_loads():
    t = load_target(ROOT / "targets" / "api_generic.py")
    assert t.name == "orders" and t.direction == "min" and t.guards == {"correctness": 0.0}
    assert t.concurrency == 1 and t.restart_between_replays and "concurrency" in t.show_columns
    cmd = t.command_for(t.baseline, Path("."))
    assert cmd[:3] == [sys.executable, "-m", "autoloop.services.example.orders"]
    assert "--index" in cmd and cmd[cmd.index("--index") + 1] == "false" and "{scratch}/orders.sqlite" in cmd
    assert APP.exists() and t.gold == CALLS


def final_config(events: list[dict]) -> dict:
    kept = [e for e in events if e["kind"] == "iter_end" and e["status"] == "keep"]
    return {**BASE, **(kept[-1]["scores"]["info"].get("config_params") or {})}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_acceptance_finds_the_index_drops_the_costly_knob_never_keeps_the_trap(tmp_path, seed):
    """The issue's acceptance on the example orders service, with the shipped defaults (TPE with constraints and
    ablation, 8 interleaved repeats, concurrency 1, patience 8): the run ends within 15 iterations on a config
    with the index and without sync_log, no kept config ever used the stale cache or answered wrong, and nothing
    is left. All five seeds with -m slow (~1 min each on a quiet 2-core box), so the README's test command stays
    under 10 minutes; .ci/run runs seed 0 when CI time allows (seeds 1-4 need a quiet box: seed 1 failed once
    beside a niced benchmark, its ablation of sync_log inside the noise); bench/results/api_generic_acceptance.txt."""
    target = tmp_path / "orders_api.py"
    target.write_text(f"""from autoloop.services import ApiTarget
from autoloop.services.example import CALLS
target = ApiTarget(name="orders", command={ORDERS!r}, calls=CALLS, space={SPACE!r}, baseline={BASE!r},
                   restart_between_replays=True, seed={seed}, scratch_dir={str(tmp_path / 'scratch')!r})
""")
    runs = tmp_path / "runs"
    t0 = time.time()
    autoloop(runs, "run", str(target), "--max-iters", "15", "--no-progress", cwd=tmp_path, timeout=3600)
    rid = only_run(runs)
    events = journal_events(runs, rid)
    ends = [e for e in events if e["kind"] == "iter_end"]
    kept = [e for e in ends if e["status"] == "keep"]
    cfg = final_config(events)
    trail = [(e["iter"], e["status"], (e["scores"] or {}).get("info", {}).get("config")) for e in ends]
    print(f"seed {seed}: {len(ends) - 1} iterations in {time.time() - t0:.0f}s, final {cfg}; {trail}")
    assert len(ends) - 1 <= 15
    assert cfg["index"] is True and cfg["sync_log"] is False, trail
    for e in kept:
        info = e["scores"]["info"]
        assert (info.get("config_params") or BASE)["cache"] != "stale", trail
        assert e["scores"]["components"]["correctness"] == 1.0
    assert_clean(tmp_path)
