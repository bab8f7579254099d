"""The prompt target end to end through the real `autoloop` CLI, the real anthropic SDK and a local HTTP
server speaking the Messages API: faults are retried (never scored), the cache survives kill -9, the
dollar cap holds, and the key never reaches DuckDB, the journal or git."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from fake_anthropic import FakeAnthropic, _text_of

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "targets" / "prompt_generic.py"
KEY = "sk-" + "ant-e2e-SECRET-abcdef0123456789"  # built at run time: no key-shaped literal in the source
GOLD = [json.loads(x) for x in (ROOT / "targets" / "prompt_example" / "gold.jsonl").read_text().splitlines()]
CAPITAL = {r["input"]: r["expected"] for r in GOLD}
CAPITAL.update({json.loads(x)["input"]: json.loads(x)["reply"]
                for x in (ROOT / "targets" / "prompt_example" / "train.jsonl").read_text().splitlines()})


def responder(body: dict) -> str:
    """A deterministic stand-in model: terse (hence right) only when told to be, or for short names."""
    system = _text_of(body.get("system") or "")
    if system.startswith("You improve the system prompt"):
        return "<prompt>Reply with the name of the city only, nothing else.</prompt>\n<prompt>Be brief.</prompt>"
    question = _text_of(body["messages"][-1]["content"])
    city = CAPITAL[question]
    terse = "city only" in system or len(body["messages"]) > 1 or len(city) <= 4
    return city if terse else f"The capital is {city}."


def base_correct(ids: set[str]) -> float:
    rows = [r for r in GOLD if r["id"] in ids]
    return sum(len(r["expected"]) <= 4 for r in rows) / len(rows)


@pytest.fixture
def server():
    with FakeAnthropic(api_key=KEY, responder=responder) as s:
        yield s


def env_for(server, tmp_path) -> dict:
    env = dict(os.environ)
    env.update({"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.base_url,
                "AUTOLOOP_RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)})
    env.pop("AUTOLOOP_CACHE_DIR", None)
    env.pop("AUTOLOOP_MAX_COST", None)
    return env


def cli(env, *args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoloop.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sql(tmp_path, q):
    con = duckdb.connect(str(tmp_path / "runs" / "history.duckdb"), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def assert_no_key(tmp_path):
    runs = tmp_path / "runs"
    for f in runs.rglob("*"):
        if f.is_file() and ".git" not in f.parts:
            assert KEY.encode() not in f.read_bytes(), f"key found in {f}"
    for state in runs.glob("*/state"):
        git = subprocess.run(["git", "-C", str(state), "log", "--all", "-p"], capture_output=True, text=True).stdout
        tags = subprocess.run(["git", "-C", str(state), "tag", "-n99"], capture_output=True, text=True).stdout
        assert git and KEY not in git + tags


def test_run_with_faults_keeps_better_prompt_and_records_calls(server, tmp_path):
    server.faults = [{"status": 429, "retry_after": "1"}, {"status": 529}, {"drop": True}]
    r = cli(env_for(server, tmp_path), "run", str(TARGET), "--max-iters", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = sql(tmp_path, "select iter, status, score from iterations order by iter")
    assert rows[0][1] == "keep"
    from autoloop.target import load_target

    t = load_target(TARGET)
    heldout = {str(x["id"]) for x in t.split()[1]}
    assert rows[0][2] == pytest.approx(base_correct(heldout))  # the failed attempts were retried, not scored 0
    assert any(s == "keep" and sc == 1.0 for _, s, sc in rows[1:])  # the reflective rewrite wins on held-out
    calls = sql(tmp_path, "select sum(retries), count(*), sum(cast(cache_hit as int)) from llm_calls")[0]
    assert calls[0] >= 3 and calls[1] > 0
    assert sql(tmp_path, "select count(*) from llm_calls where purpose = 'propose'")[0][0] >= 1
    show = cli(env_for(server, tmp_path), "show", "--wide")
    assert show.returncode == 0, show.stderr[-2000:]
    assert "calls" in show.stdout and "usd" in show.stdout
    versions = [d for (d,) in sql(tmp_path, "select description from iterations where iter > 0")]
    assert versions and all(re.match(r"prompt [0-9a-f]{8}", d) for d in versions)  # the prompt version
    assert_no_key(tmp_path)


@pytest.mark.slow
def test_kill9_and_resume_reuses_the_cache(server, tmp_path):
    env = env_for(server, tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "autoloop.cli", "run", str(TARGET), "--max-iters", "3"], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    journal = None
    while time.time() - t0 < 120:
        js = list((tmp_path / "runs").glob("*/journal.jsonl"))
        if js and '"iter_end"' in js[0].read_text():
            journal = js[0]
            break
        time.sleep(0.05)
    assert journal is not None
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    base = _text_of([{"text": (ROOT / "targets" / "prompt_example" / "prompt.txt").read_text().strip()}])
    n_base = sum(1 for b in server.bodies if _text_of(b.get("system") or "") == base)
    run_id = journal.parent.name
    r = cli(env, "resume", run_id)
    assert r.returncode == 0, r.stderr[-3000:]
    # no baseline item was asked twice: the resumed run read them all from the response cache
    assert sum(1 for b in server.bodies if _text_of(b.get("system") or "") == base) == n_base
    assert sql(tmp_path, "select count(*) from llm_calls where cache_hit")[0][0] > 0
    assert_no_key(tmp_path)


def test_dollar_cap_stops_spending(server, tmp_path):
    env = env_for(server, tmp_path)
    r = cli(env, "run", str(TARGET), "--max-iters", "3", "--max-cost", "0.00001")
    assert server.message_requests == 0  # every call's worst case exceeded the cap: nothing was sent
    assert sql(tmp_path, "select coalesce(sum(cost_usd), 0) from llm_calls")[0][0] <= 0.00001
    assert "budget" in (r.stdout + r.stderr + json.dumps(sql(tmp_path, "select reason from iterations"))).lower()
