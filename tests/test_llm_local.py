"""OpenAI-compatible client (retries, cache) over real HTTP, the offline proposer, and the real mlx_lm.server."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autoloop.history import History, IterationRecord
from autoloop.llm.budget import Budget
from autoloop.llm.cache import ResponseCache
from autoloop.llm.openai_compat import OpenAICompatClient
from autoloop.proposers.prompt import OfflineProposer, params_key
from autoloop.llm.types import LLMRequest


class Chat(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    faults: list = []
    count = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).count += 1
        f = self.faults.pop(0) if self.faults else None
        if f == "drop":
            self.close_connection = True
            return
        if f == "slow":
            import time

            time.sleep(1.0)
        if f == 429:
            data = b'{"error":"slow down"}'
            self.send_response(429)
            self.send_header("retry-after", "0.2")
        else:
            data = json.dumps({"choices": [{"message": {"content": body["messages"][-1]["content"][::-1]}}],
                               "usage": {"prompt_tokens": 7, "completion_tokens": 3}}).encode()
            self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def chat_server():
    Chat.faults, Chat.count = [], 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_openai_compat_retries_and_caches(chat_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path / "it"))
    c = OpenAICompatClient(chat_server, model_id="local:test", cache=ResponseCache(tmp_path / "c.sqlite"),
                           budget=Budget(), backoff_s=0.05)
    Chat.faults = [429, "drop"]
    r = c.complete(LLMRequest(messages=[{"role": "user", "content": "abc"}]))
    assert r.ok and r.text == "cba" and r.retries == 2 and r.cost_usd == 0 and Chat.count == 3
    again = c.complete(LLMRequest(messages=[{"role": "user", "content": "abc"}]))
    assert again.cache_hit and Chat.count == 3
    recs = [json.loads(x) for x in (tmp_path / "it" / "llm_calls.jsonl").read_text().splitlines()]
    assert [x["provider"] for x in recs] == ["openai-compatible"] * 2 and recs[0]["retries"] == 2


def test_llm_timeout_comes_from_the_environment(chat_server, tmp_path, monkeypatch):
    """A local model on a busy CPU can need more than 120 s: AUTOLOOP_LLM_TIMEOUT_S raises the wait."""
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path / "it"))
    req = LLMRequest(messages=[{"role": "user", "content": "abc"}])
    monkeypatch.setenv("AUTOLOOP_LLM_TIMEOUT_S", "0.3")
    c = OpenAICompatClient(chat_server, model_id="local:test", cache=False, budget=Budget(), max_attempts=1)
    Chat.faults = ["slow"]
    assert c.timeout_s == 0.3 and not c.complete(req).ok
    monkeypatch.setenv("AUTOLOOP_LLM_TIMEOUT_S", "5")
    c = OpenAICompatClient(chat_server, model_id="local:test", cache=False, budget=Budget(), max_attempts=1)
    Chat.faults = ["slow"]
    assert c.complete(req).text == "cba"
    monkeypatch.setenv("AUTOLOOP_LLM_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="AUTOLOOP_LLM_TIMEOUT_S='soon'"):
        OpenAICompatClient(chat_server, model_id="local:test", cache=False)


def test_offline_proposer_is_seeded_and_never_repeats(tmp_path):
    train = [{"id": f"t{i}", "input": f"x{i}", "reply": "r", "k": {f"K{i % 5}"}} for i in range(30)]
    prop = OfflineProposer(train, {"a": "Be brief.", "b": "Be exact."}, demo_keys=lambda r: r["k"], max_demos=3)
    fb = tmp_path / "fb.json"
    fb.write_text(json.dumps([{"id": "g1", "score": 0.0, "keys": ["K3"]}]))
    h = History(run_id="r", direction="max",
                iterations=[IterationRecord(iter=0, status="keep", params={}, score=0.1, feedback_path=fb)])
    first = [prop.propose(History(run_id="r", direction="max", iterations=[IterationRecord(
        iter=0, status="keep", params={}, feedback_path=fb)] + [IterationRecord(iter=i, status="revert") for i in range(1, k)]),
        "Base.").params["demo_ids"] for k in range(1, 30)]
    picked = [train[int(d[0][1:])]["k"] for d in first if d]
    assert sum("K3" in k for k in picked) > len(picked) / 2  # demos mostly chosen to cover the failures
    seen = set()
    for n in range(1, 12):
        c = prop.propose(h, "Base.")
        assert c.params["instruction"].startswith("Base.") and len(c.params["demo_ids"]) <= 3
        assert c.params == prop.propose(h, "Base.").params  # same history, same proposal (resumable)
        key = params_key(c.params)
        assert key not in seen
        seen.add(key)
        h.iterations.append(IterationRecord(iter=n, status="revert", params=c.params, score=0.0))


@pytest.mark.slow
def test_real_mlx_server_answers_and_stops(tmp_path):
    from autoloop.llm.local_server import LocalModelServer
    from autoloop.mlx.models import resolve_model

    with LocalModelServer(resolve_model("smollm2"), log_path=tmp_path / "srv.log") as srv:
        c = OpenAICompatClient(srv.base_url, model_id="local:smollm2", cache=False, budget=Budget(), max_concurrency=4)
        out = c.complete_many([LLMRequest(messages=[{"role": "user", "content": f"Say {w}."}], max_tokens=8)
                               for w in ("yes", "no", "maybe", "ok")])
        assert all(r.ok and r.output_tokens > 0 for r in out)
        pid = srv.proc.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_offline_proposer_starts_with_a_complete_program_then_makes_single_moves(tmp_path):
    """From an incumbent without demos a proposal carries max_demos demos at once (the first covers the worst
    failure); from one with demos it changes one thing."""
    train = [{"id": f"t{i}", "input": f"x{i}", "reply": "r", "k": {f"K{i % 5}"}} for i in range(30)]
    prop = OfflineProposer(train, {"a": "Be brief."}, demo_keys=lambda r: r["k"], max_demos=3)
    fb = tmp_path / "fb.json"
    fb.write_text(json.dumps([{"id": "g1", "score": 0.0, "keys": ["K3"]}]))
    base = IterationRecord(iter=0, status="keep", params={}, feedback_path=fb)
    fills = [prop.propose(History(run_id="r", direction="max", iterations=[base] + [
        IterationRecord(iter=i, status="revert") for i in range(1, k)]), "Base.") for k in range(1, 6)]
    assert all(len(c.params["demo_ids"]) == 3 and len(set(c.params["demo_ids"])) == 3 for c in fills)
    assert all(c.description.startswith("offline: fill_demos") for c in fills)
    assert len({params_key(c.params) for c in fills}) == 5
    kept = IterationRecord(iter=1, status="keep", params={"instruction": "Base.", "demo_ids": ["t1", "t2"], "edits": []},
                           feedback_path=fb)
    for k in range(2, 8):
        c = prop.propose(History(run_id="r", direction="max", iterations=[base, kept] + [
            IterationRecord(iter=i, status="revert") for i in range(2, k)]), "Base.")
        d, e = c.params["demo_ids"], c.params["edits"]
        changed = len(set(d) ^ {"t1", "t2"}) + len(e)
        assert 1 <= changed <= 2 and not c.description.startswith("offline: fill"), c.description
