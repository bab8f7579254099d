"""LLMSearchProposer: the real anthropic SDK against a local server that speaks the Messages API.

The scripted "LLM" answers with configs (good, out of range, already tried, no JSON, an HTTP 500);
every unusable reply hands the iteration to the TPE fallback, and the description says so."""
from __future__ import annotations

import json
import re

import pytest

from autoloop.history import History, IterationRecord
from autoloop.llm.anthropic_client import AnthropicClient
from autoloop.llm.budget import Budget
from autoloop.llm.cache import ResponseCache
from autoloop.proposers.search import LLMSearchProposer, OptunaProposer, SearchSpace
from fake_anthropic import FakeAnthropic

KEY = "sk-" + "ant-test-searchkey-000000000000"  # built at run time: no key-shaped literal in the source
SPACE = {"workers": ("int", 1, 8), "cache": ("cat", ["none", "lru"]), "index": ("cat", [False, True])}
BASE = {"workers": 1, "cache": "none", "index": False}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path / "iter"))
    monkeypatch.setenv("AUTOLOOP_PHASE", "propose")
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("AUTOLOOP_COST_REMAINING", raising=False)
    return tmp_path


def history(*params_scores) -> History:
    h = History(run_id="t", direction="min")
    for i, (p, s, status) in enumerate(params_scores):
        h.iterations.append(IterationRecord(iter=i, status=status, params=p, score=s, reason="r"))
    return h


def proposer(server, tmp_path, budget=None) -> LLMSearchProposer:
    client = AnthropicClient("claude-haiku-4-5", base_url=server.base_url, cache=ResponseCache(tmp_path / "c.sqlite"),
                             budget=budget or Budget(), backoff_s=0.01, max_wait_s=1, max_attempts=2)
    fallback = OptunaProposer(SPACE, seed=1, defaults=BASE)
    return LLMSearchProposer(SPACE, fallback=fallback, client=client, defaults=BASE,
                             context="A web service; latency matters.")


def test_a_good_reply_becomes_the_candidate_and_the_prompt_holds_space_and_history(env):
    replies = ['Workers queue requests; use 4 and an index.\n{"workers": 4, "cache": "none", "index": true}']
    with FakeAnthropic(api_key=KEY, responder=lambda body: replies.pop(0)) as server:
        p = proposer(server, env)
        h = history(({}, 100.0, "keep"), ({"workers": 2, "cache": "lru", "index": False}, 90.0, "revert"))
        cand = p.propose(h)
        prompt = server.bodies[0]["messages"][0]["content"]
        prompt = prompt if isinstance(prompt, str) else prompt[0]["text"]
    assert cand.params == {"workers": 4, "cache": "none", "index": True}
    assert cand.description.startswith("llm: ") and "Workers queue requests" in cand.description
    assert "workers: integer in [1, 8]" in prompt and '"lru"' in prompt and "latency matters" in prompt
    assert '#1 revert score=90 {"workers": 2, "cache": "lru", "index": false}' in prompt
    assert server.bodies[0]["temperature"] == 0.0
    rec = [json.loads(x) for x in (env / "iter" / "llm_calls.jsonl").read_text().splitlines()]
    assert rec[0]["status"] == "ok" and rec[0]["purpose"] == "propose"


@pytest.mark.parametrize("reply, why", [
    ('{"workers": 99, "cache": "none", "index": true}', r"workers=99 is outside the space"),
    ('{"workers": 1, "cache": "none", "index": false}', r"already tried"),
    ('{"threads": 4}', r"unknown knob 'threads'"),
    ("I would rather not say.", r"no JSON object"),
])
def test_an_unusable_reply_falls_back_to_tpe(env, reply, why):
    with FakeAnthropic(api_key=KEY, responder=lambda body: reply) as server:
        cand = proposer(server, env).propose(history(({}, 100.0, "keep")))
    assert re.search(why, cand.description), cand.description
    assert cand.description.startswith("tpe") and "llm reply unusable" in cand.description
    assert SearchSpace(SPACE).contains(cand.params) and cand.params != BASE


def test_an_api_failure_or_the_dollar_cap_falls_back_without_raising(env):
    with FakeAnthropic(api_key=KEY, responder=lambda body: '{"workers": 3, "cache": "none", "index": false}') as server:
        server.faults = [{"status": 500}, {"status": 500}]
        cand = proposer(server, env).propose(history(({}, 100.0, "keep")))
        assert "llm reply unusable" in cand.description and "500" in cand.description
        n = server.message_requests
        capped = proposer(server, env, budget=Budget(cap=0.0)).propose(history(({}, 100.0, "keep")))
        assert "budget" in capped.description and server.message_requests == n  # refused before sending


def test_resume_gets_the_cached_reply_without_a_new_request(env):
    with FakeAnthropic(api_key=KEY, responder=lambda body: '{"workers": 3, "cache": "lru", "index": true}') as server:
        h = history(({}, 100.0, "keep"))
        a = proposer(server, env).propose(h)
        b = proposer(server, env).propose(h)  # a new process after kill -9 would build a new proposer
        assert a.params == b.params and server.message_requests == 1
