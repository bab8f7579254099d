"""The Anthropic client against a real local HTTP server, with the real SDK: retries, cache, cap, keys."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from autoloop.llm.anthropic_client import AnthropicClient
from autoloop.llm.budget import Budget
from autoloop.llm.cache import ResponseCache
from autoloop.llm.redact import redact
from autoloop.llm.types import BudgetExceeded, LLMError, LLMRequest
from fake_anthropic import FakeAnthropic

WRONG_KEY = "sk-" + "ant-wrong-key-abcdefghijklmnop"
KEY = "sk-" + "ant-test-SECRETKEY-1234567890abcdef"  # built at run time: no key-shaped literal in the source


@pytest.fixture
def server():
    with FakeAnthropic(api_key=KEY) as s:
        yield s


@pytest.fixture
def iterdir(tmp_path, monkeypatch):
    d = tmp_path / "iter"
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(d))
    monkeypatch.setenv("AUTOLOOP_PHASE", "score")
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("AUTOLOOP_COST_REMAINING", raising=False)
    return d


def records(d: Path) -> list[dict]:
    f = d / "llm_calls.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def client(server, tmp_path, **kw):
    kw.setdefault("cache", ResponseCache(tmp_path / "cache.sqlite"))
    kw.setdefault("budget", Budget())
    return AnthropicClient("claude-haiku-4-5", base_url=server.base_url, backoff_s=0.05, max_wait_s=5, **kw)


def req(text: str, system: str = "You answer in capitals. " * 20, **kw) -> LLMRequest:
    return LLMRequest(system=system, messages=[{"role": "user", "content": text}], **kw)


def test_call_is_recorded_with_prompt_cache_tokens(server, iterdir, tmp_path):
    c = client(server, tmp_path)
    a = c.complete(req("hello"))
    b = c.complete(req("world"))
    assert a.ok and a.text == "HELLO" and b.text == "WORLD"
    recs = records(iterdir)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert recs[0]["cache_creation_tokens"] > 0 and recs[1]["cache_read_tokens"] > 0  # shared system prefix cached
    assert server.bodies[0]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert recs[0]["cost_usd"] > recs[1]["cost_usd"] > 0  # cache reads are billed at 10%
    assert recs[0]["model"] == "claude-haiku-4-5" and recs[0]["phase"] == "score" and recs[0]["purpose"] == "task"


def test_429_529_and_dropped_connection_are_retried(server, iterdir, tmp_path):
    server.faults = [{"status": 429, "retry_after": "1"}, {"status": 529}, {"drop": True}]
    c = client(server, tmp_path)
    t0 = time.time()
    r = c.complete(req("retry me"))
    assert r.ok and r.text == "RETRY ME" and r.retries == 3
    assert time.time() - t0 >= 1.0  # retry-after honoured
    assert server.message_requests == 4  # SDK retries are off: exactly our 3 retries + the first try
    (rec,) = records(iterdir)
    assert rec["retries"] == 3 and rec["status"] == "ok"


def test_persistent_error_is_an_error_not_an_answer(server, iterdir, tmp_path):
    server.faults = [{"status": 500}] * 3
    c = client(server, tmp_path, max_attempts=3)
    r = c.complete(req("never"))
    assert not r.ok and r.text is None and "InternalServerError" in r.error
    with pytest.raises(LLMError):
        r.unwrap()
    (rec,) = records(iterdir)
    assert rec["status"] == "error" and rec["retries"] == 2 and rec["cost_usd"] == 0
    # the failure was not cached: the next call asks the server again and succeeds
    assert c.complete(req("never")).text == "NEVER"


def test_non_retryable_status_fails_fast(server, iterdir, tmp_path):
    c = AnthropicClient("claude-haiku-4-5", api_key=WRONG_KEY, base_url=server.base_url,
                        cache=ResponseCache(tmp_path / "c.sqlite"), budget=Budget(), backoff_s=0.05)
    r = c.complete(req("x"))
    assert not r.ok and "AuthenticationError" in r.error and server.message_requests == 0 and server.requests == 1
    assert WRONG_KEY not in r.error + json.dumps(records(iterdir))


def test_cache_hit_makes_no_http_request_even_in_a_new_client(server, iterdir, tmp_path):
    c = client(server, tmp_path)
    first = c.complete(req("same"))
    n = server.requests
    again = client(server, tmp_path).complete(req("same"))  # a new client = a resumed process
    assert server.requests == n
    assert again.text == first.text and again.cache_hit and again.cost_usd == 0
    assert records(iterdir)[-1]["cache_hit"] is True
    c.complete(req("same", temperature=0.7))  # sampling is not deterministic: never cached
    assert server.requests == n + 1


def test_dollar_cap_refuses_the_call_that_could_exceed_it(server, iterdir, tmp_path, monkeypatch):
    c = client(server, tmp_path)
    one = c.max_cost(req("a", max_tokens=1000))
    monkeypatch.setenv("AUTOLOOP_COST_REMAINING", str(one * 0.9))
    with pytest.raises(BudgetExceeded, match="budget"):
        c.complete(req("a", max_tokens=1000))
    assert server.requests == 0  # refused before sending
    assert c.complete(req("a", max_tokens=10)).ok  # a smaller worst case fits
    monkeypatch.setenv("AUTOLOOP_COST_REMAINING", str(c.budget.spent + one * 1.5))
    n = server.requests
    # four concurrent calls: the reservations of the running ones count, so at most one can start while the
    # first is in flight (held 5 s at the server: on a starved box a first call that ended before the others were
    # checked would leave room for a second, rightly, and the check would measure the scheduler)
    server.faults = [{"sleep": 5.0}] * 4
    with pytest.raises(BudgetExceeded):
        c.complete_many([req(f"m{i}", max_tokens=1000) for i in range(4)])
    assert server.requests - n <= 1
    assert c.budget.spent <= c.budget.cap()
    server.faults = []


def test_concurrent_calls_are_bounded_and_ordered(server, iterdir, tmp_path):
    c = client(server, tmp_path, max_concurrency=3)
    out = c.complete_many([req(f"item {i}") for i in range(12)])
    assert [r.text for r in out] == [f"ITEM {i}" for i in range(12)]
    assert c.stats.calls == 12 and c.stats.http_calls == 12


def test_message_batches_are_half_price_and_cached(server, iterdir, tmp_path):
    c = client(server, tmp_path)
    solo = client(server, tmp_path, cache=False).complete(req("z0", system="S" * 400))
    out = c.complete_batch([req(f"z{i}", system="S" * 400) for i in range(3)], poll_s=0.01)
    assert [r.text for r in out] == ["Z0", "Z1", "Z2"]
    assert out[0].cost_usd < solo.cost_usd
    n = server.requests
    again = c.complete_batch([req("z1", system="S" * 400)], poll_s=0.01)
    assert again[0].cache_hit and server.requests == n
    assert {r["provider"] for r in records(iterdir)} >= {"anthropic-batch"}


def test_keys_never_appear_in_records_or_errors(server, iterdir, tmp_path):
    server.faults = [{"status": 529}] * 2
    c = client(server, tmp_path, max_attempts=2)
    r = c.complete(req("k"))
    text = (iterdir / "llm_calls.jsonl").read_text() + r.error
    assert KEY not in text
    assert KEY not in redact(f"boom x-api-key: {KEY} and {KEY}")
    assert "[REDACTED]" in redact("Authorization: Bearer abcdefghijklmnop")


def test_price_override_file(tmp_path, monkeypatch):
    from autoloop.llm.prices import price_for
    from autoloop.target import TargetError

    f = tmp_path / "prices.toml"
    f.write_text('[claude-haiku-4-5]\ninput = 2.0\noutput = 10.0\n')
    monkeypatch.setenv("AUTOLOOP_PRICES", str(f))
    assert price_for("claude-haiku-4-5-20251001").input == 2.0
    assert price_for("claude-unknown-9").input == 15.0  # unknown paid model: priced at the dearest
    f.write_text("[x]\ninput = 'a'\noutput = 1\n")
    with pytest.raises(TargetError, match="non-numeric"):
        price_for("x")
