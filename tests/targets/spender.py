"""A test target that pays for one LLM call in each phase of a candidate iteration: propose (engine
process), run (child) and score (child), against the fake Anthropic server at $SPENDER_URL.

Each call costs about $0.006 (claude-haiku-4-5 prices: ~1000 tokens in, 1000 out). A call the dollar cap
refuses makes run/score reject the candidate with a "budget: ..." reason. The baseline makes no call.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from autoloop import Candidate, Scores
from autoloop.target import Rejected

HERE = Path(__file__).resolve().parent


def _call(purpose: str) -> None:
    from autoloop.llm.anthropic_client import AnthropicClient
    from autoloop.llm.types import LLMRequest

    client = AnthropicClient("claude-haiku-4-5", base_url=os.environ["SPENDER_URL"], cache=False, backoff_s=0.05)
    res = client.complete(LLMRequest(messages=[{"role": "user", "content": "x" * 4000}], max_tokens=1000,
                                      purpose=purpose))
    if not res.ok:
        raise RuntimeError(res.error)


class Spender:
    name = "spender"
    direction = "max"
    budget_s = 60.0
    gold = HERE / "behave_gold.jsonl"

    def setup(self, state: Path) -> None:
        (state / "v.json").write_text(json.dumps({"v": 0.1, "candidate": False}))

    def propose(self, history) -> Candidate:
        from autoloop.llm.types import BudgetExceeded

        try:
            _call("propose")
        except BudgetExceeded:
            return Candidate({"v": 0.0}, "propose: call refused by the budget")
        return Candidate({"v": 0.5 + 0.1 * len(history.iterations)}, "paid proposal")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        from autoloop.llm.types import BudgetExceeded

        try:
            _call("task")
        except BudgetExceeded as e:
            raise Rejected(f"budget: {e}") from None
        (state / "v.json").write_text(json.dumps({"v": candidate.params["v"], "candidate": True}))

    def score(self, state: Path, gold: Path) -> Scores:
        from autoloop.llm.types import BudgetExceeded

        d = json.loads((state / "v.json").read_text())
        if d["candidate"]:
            try:
                _call("score")
            except BudgetExceeded as e:
                raise Rejected(f"budget: {e}") from None
        return Scores(score=d["v"])


target = Spender()
