"""bench/prompt_optimisers.py with an API task model (--task-model anthropic:MODEL): every arm's task calls go
through a counting proxy on 127.0.0.1, counted there as the local server's log counts them. Here the
"API" is the local Anthropic-speaking server of tests/fake_anthropic.py (real SDK, real HTTP); DSPy and GEPA
are the [bench] extra, so only the engine's arm runs end to end."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "prompt_optimisers.py"
KEY = "sk-" + "ant-test-0000000000"


def _bench():
    spec = importlib.util.spec_from_file_location("prompt_optimisers_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_proxy_counts_task_calls_at_one_place(monkeypatch):
    bench = _bench()
    with FakeAnthropic(api_key=KEY) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        ep = bench.AnthropicEndpoint("claude-haiku-4-5")
        try:
            rows = [{"id": f"r{i}", "input": f"ad {i}", "skills": [{"code": "PROG", "level": 3}]} for i in range(3)]
            reqs = [[{"role": "system", "content": "map it"}, {"role": "user", "content": r["input"]}] for r in rows]
            bench.test_score(ep, reqs, rows)
            bench.test_score(ep, reqs, rows)  # the same program again: its replies are reused, nothing is sent
            assert (ep.count(), fake.message_requests) == (3, 3)
            assert {b["model"] for b in fake.bodies} == {"claude-haiku-4-5"}
            # another model through the same proxy (e.g. a proposer) is not a task call
            from autoloop.llm.anthropic_client import AnthropicClient
            from autoloop.llm.types import LLMRequest

            AnthropicClient("claude-sonnet-4-5", base_url=ep.base_url, cache=False).complete_many(
                [LLMRequest(system="", messages=[{"role": "user", "content": "hi"}], max_tokens=8)])
            assert (ep.count(), fake.message_requests) == (3, 4)
        finally:
            ep.stop()


@pytest.mark.parametrize("argv, key, says", [
    (["--task-model", "anthropic:"], KEY, "use local or anthropic:MODEL"),
    (["--task-model", "openai:gpt"], KEY, "use local or anthropic:MODEL"),
    (["--task-model", "anthropic:claude-haiku-4-5"], "", "set ANTHROPIC_API_KEY"),
])
def test_a_bad_task_model_is_one_line_and_exit_2(argv, key, says):
    env = {**os.environ, "ANTHROPIC_API_KEY": key}
    p = subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2
    assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.slow
def test_the_engine_arm_runs_on_an_api_task_model(tmp_path):
    """The whole bench, our arm only, against the fake API: the engine's history and the proxy agree."""
    with FakeAnthropic(api_key=KEY) as fake:
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url}
        out = tmp_path / "table.txt"
        argv = [sys.executable, str(BENCH), "--task-model", "anthropic:claude-haiku-4-5", "--arms", "ours",
                "--budgets", "10", "--seeds", "0", "--test", "4", "--select", "8", "--library", "off", "--out", str(out)]
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        sent = fake.message_requests
        # --resume with the same options: the finished run is kept, nothing is sent again
        p = subprocess.run(argv + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        assert fake.message_requests == sent and "the 1 optimiser runs finished before were kept" in out.read_text()
        # ... and with other options it refuses, in one line
        p = subprocess.run(argv[:-4] + ["--seeds", "0,1", "--out", str(out), "--resume"], capture_output=True,
                           text=True, env=env, timeout=600)
        assert p.returncode == 2 and "resume with exactly those options" in p.stderr
    rows = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["arm"] for r in rows] == ["autoloop engine"] and "error" not in rows[0]
    assert rows[0]["history_calls_total"] == rows[0]["server_calls_total"] > 0
    assert "task model anthropic:claude-haiku-4-5" in out.read_text()


@pytest.mark.slow
def test_jobs_run_groups_in_parallel_and_a_resume_takes_what_they_wrote(tmp_path):
    with FakeAnthropic(api_key=KEY) as fake:
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url}
        out = tmp_path / "table.txt"
        argv = [sys.executable, str(BENCH), "--task-model", "anthropic:claude-haiku-4-5", "--arms", "ours",
                "--budgets", "10", "--seeds", "0", "--test", "4", "--select", "8", "--library", "off,on", "--out", str(out)]
        p = subprocess.run(argv + ["--jobs", "2"], capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        rows = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines()]
        assert sorted(r["library"] for r in rows) == ["off", "on"] and all("error" not in r for r in rows)
        assert all(r["history_calls_total"] == r["server_calls_total"] > 0 for r in rows)
        # stopped before the table took the groups' rows: a resume, with or without --jobs, takes them, sends nothing
        out.with_suffix(".jsonl").write_text("")
        sent = fake.message_requests
        p = subprocess.run(argv + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        assert fake.message_requests == sent
        assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 2
