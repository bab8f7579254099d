"""No process and no listening port of the API target survives: a normal run, a timeout (the engine
SIGTERMs the child's group), a SIGKILLed scoring process, and kill -9 of the engine followed by resume."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "targets"))

from api_demo.gold import write_gold  # noqa: E402

from autoloop.services.service import ServiceProcess  # noqa: E402
from autoloop.target import Candidate, load_target  # noqa: E402

ROWS, CALLS = 20_000, 60


def ours(cache: Path) -> list[psutil.Process]:
    """Guardians and servers started for this cache dir (their command lines name it)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(cache) in cmd and ("server.py" in cmd or "guardian.py" in cmd):
            out.append(p)
    return out


def listening(ports: set[int]) -> list[int]:
    busy = [c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    for port in ports:  # and nobody answers there
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def ports_of(procs: list[psutil.Process]) -> set[int]:
    out = set()
    for p in procs:
        try:
            out |= {c.laddr.port for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return out


def wait_servers(cache: Path, n: int, timeout: float = 60) -> list[psutil.Process]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        # the command line read once by process_iter: a server that just exited is a zombie for a moment
        procs = [p for p in ours(cache) if "guardian.py" not in " ".join(p.info["cmdline"] or [])]
        if len(procs) >= n and len(ports_of(procs)) >= n:
            return procs
        time.sleep(0.1)
    raise AssertionError(f"{n} servers never came up")


def assert_gone(cache: Path, ports: set[int], within: float = 10.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end and ours(cache):
        time.sleep(0.1)
    assert not ours(cache), [p.info["cmdline"] for p in ours(cache)]
    assert not listening(ports), ports


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("api_clean")
    gold = write_gold(cache / "gold.jsonl", ROWS, 0, CALLS, cache_dir=cache)
    return cache, gold


def _child_compare(cache: Path, gold: Path, tmp: Path) -> subprocess.Popen:
    """A scoring child like the engine's: its own process group, running compare(baseline, baseline)."""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from autoloop.target import load_target, Candidate
t = type(load_target({str(ROOT / 'targets' / 'api_tuning.py')!r}))(gold=Path({str(gold)!r}), repeats=50,
        cache_dir=Path({str(cache)!r}))
for d in ("a", "b"):
    t.setup(Path({str(tmp)!r}) / d)
t.compare(Path({str(tmp)!r}) / "a", Path({str(tmp)!r}) / "b", Path({str(gold)!r}))
"""
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True, cwd=ROOT)


def test_no_leftovers_after_a_compare(env, tmp_path, monkeypatch):
    cache, gold = env
    seen: set[int] = set()
    orig = ServiceProcess._wait_ready

    def record(self):  # observe the ports the real services bound
        orig(self)
        seen.add(self.port)

    monkeypatch.setattr(ServiceProcess, "_wait_ready", record)
    t = type(load_target(ROOT / "targets" / "api_tuning.py"))(gold=gold, repeats=2, cache_dir=cache)
    for d in ("a", "b"):
        t.setup(tmp_path / d)
    t.run(Candidate(params={"search_query": "join"}), tmp_path / "b", time.time() + 10)
    t.compare(tmp_path / "a", tmp_path / "b", gold)
    assert len(seen) == 2
    assert_gone(cache, seen, within=0.5)
    assert not list((cache / "tmp").glob("inst-*")), "instance databases are removed"


def test_timeout_sigterm_of_the_child_group(env, tmp_path):
    cache, gold = env
    child = _child_compare(cache, gold, tmp_path)
    try:
        ports = ports_of(wait_servers(cache, 2))
        os.killpg(child.pid, signal.SIGTERM)  # what the engine does at the deadline
        child.wait(timeout=15)
        assert_gone(cache, ports)
        assert not list((cache / "tmp").glob(f"inst-{child.pid}-*")), "finally removed the instance dbs"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)


def test_sigkill_of_the_scoring_process(env, tmp_path):
    cache, gold = env
    child = _child_compare(cache, gold, tmp_path)
    try:
        ports = ports_of(wait_servers(cache, 2))
        os.kill(child.pid, signal.SIGKILL)  # no handler, no finally: only the guardians can act
        child.wait(timeout=5)
        assert_gone(cache, ports)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    from api_tuning import _remove_stale

    _remove_stale(cache / "tmp")  # what the next measurement does with the dead process's copies
    assert not list((cache / "tmp").glob(f"inst-{child.pid}-*"))


@pytest.mark.slow  # ~20-30 s: runs in .ci/run's slow step, keeping the README's test command under 10 minutes
def test_engine_kill9_then_resume(env, tmp_path):
    cache, _ = env
    runs = tmp_path / "runs"
    e = {**os.environ, "AUTOLOOP_RUNS_DIR": str(runs), "AUTOLOOP_API_DEMO_CACHE": str(cache),
         "API_TUNING_ROWS": str(ROWS), "API_TUNING_CALLS": str(CALLS), "API_TUNING_REPEATS": "3"}
    cmd = [sys.executable, "-m", "autoloop", "run", "targets/api_tuning.py", "--max-iters", "2", "--run-id", "api-k9",
           "--no-progress"]
    eng = subprocess.Popen(cmd, cwd=ROOT, env=e, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        # iteration 1 is a batch of 6: the engine's screen starts the incumbent and 6 candidate services at once
        ports = ports_of(wait_servers(cache, 7, timeout=120))
        assert len(ports) >= 7
        os.kill(eng.pid, signal.SIGKILL)
        eng.wait(timeout=5)
        assert_gone(cache, ports)
    finally:
        if eng.poll() is None:
            os.killpg(eng.pid, signal.SIGKILL)
    p = subprocess.run([sys.executable, "-m", "autoloop", "resume", "api-k9", "--max-iters", "2"], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not ours(cache)
    ends = [json.loads(line) for line in (runs / "api-k9" / "journal.jsonl").read_text().splitlines()]
    ends = [x for x in ends if x.get("kind") == "iter_end"]
    statuses = [x.get("status") for x in ends]
    assert statuses[0] == "keep" and "interrupted" not in statuses[-2:], statuses
    assert all(x["scores"]["components"]["correctness"] == 1.0 for x in ends if x.get("scores") and x["status"] == "keep")
    # Every finished iteration recorded each member of its batch once; the interrupted one recorded none.
    from autoloop import store

    store.rebuild(runs / "history.duckdb", runs)  # and a rebuild from the journal replays exactly that
    _, rows = store.query(runs / "history.duckdb", "select iter, count(*), count(distinct member), sum(chosen::int) "
                                                     "from trials group by iter order by iter")
    want = {x["iter"]: (1 if x["iter"] == 0 else 6) for x in ends if x["status"] != "interrupted"}
    assert {r[0]: r[1] for r in rows} == want and all(r[1] == r[2] and r[3] == 1 for r in rows), rows
