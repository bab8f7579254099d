"""`autoloop run targets/api_tuning.py` with ANTHROPIC_API_KEY set: the LLM proposes the configs, through
the real anthropic SDK, against a local server that speaks the Messages API (no network)."""
from __future__ import annotations

import pytest

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, sql
from fake_anthropic import FakeAnthropic

KEY = "sk-" + "ant-test-apituning-0000000000"  # built at run time: no key-shaped literal in the source
FAST = {"index_skill_level": True, "index_location": True, "search_query": "join", "detail_query": "pk",
        "stats_query": "eq", "cache": "none", "cache_size": 64, "cache_ttl_s": 30.0, "workers": 4,
        "sqlite_cache_kb": 16000, "mmap_mb": 64}


def responder(body: dict) -> str:
    """An 'LLM' that reads the history in the prompt: first the fast config, then an out-of-space reply."""
    prompt = body["messages"][-1]["content"]
    prompt = prompt if isinstance(prompt, str) else "".join(b.get("text", "") for b in prompt)
    if "index_skill_level\": true" in prompt:  # its own suggestion is in the history now
        return 'More workers. {"workers": 64}'
    return "Index the filters and use the primary key.\n" + json.dumps(FAST)


@pytest.mark.slow  # ~20-30 s: runs in .ci/run's slow step, keeping the README's test command under 10 minutes
def test_llm_proposes_engine_records_calls_and_falls_back_to_tpe(tmp_path):
    runs = tmp_path / "runs"
    with FakeAnthropic(api_key=KEY, responder=responder) as server:
        env = {**os.environ, "AUTOLOOP_RUNS_DIR": str(runs), "AUTOLOOP_API_DEMO_CACHE": str(tmp_path / "cache"),
               "API_TUNING_ROWS": "5000", "API_TUNING_CALLS": "40", "API_TUNING_REPEATS": "3",
               "API_TUNING_BATCH": "2", "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.base_url,
               "AUTOLOOP_CACHE_DIR": str(tmp_path / "llm_cache")}
        p = subprocess.run([sys.executable, "-m", "autoloop", "run", "targets/api_tuning.py", "--max-iters", "2",
                            "--max-cost", "1", "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        assert server.message_requests == 2
    # Each iteration is an engine batch of 2: the LLM's config first, the sampler's second, both in `trials`.
    rows = sql(runs, "select iter, member, description from trials where iter > 0 order by iter, member")
    assert [(r["iter"], r["member"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert rows[0]["description"].startswith("llm: index_skill_level=True") and "primary key" in rows[0]["description"]
    assert rows[1]["description"].startswith("tpe")
    assert re.search(r"llm reply unusable: ValueError: workers=64 is outside the space", rows[2]["description"])
    calls = sql(runs, "select iter, purpose, status, cost_usd from llm_calls order by iter")
    assert [(c["iter"], c["purpose"], c["status"]) for c in calls] == [(1, "propose", "ok"), (2, "propose", "ok")]
    assert all(c["cost_usd"] > 0 for c in calls)
    assert KEY not in (runs / "history.duckdb").read_bytes().decode("latin-1")
