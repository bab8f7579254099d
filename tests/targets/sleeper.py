"""A test target for the executor: run sleeps params["sleep"] seconds, writes params["value"] into the
state (value.txt) and deletes gone.txt; score reads value.txt back (direction max). Baseline: 0.1.
With params["llm_cost"], run records one LLM call of that many dollars (no network: the record a client writes)."""
from __future__ import annotations

import time
from pathlib import Path

from autoloop import Candidate, Scores
from autoloop.context import record_llm_call

HERE = Path(__file__).resolve().parent


class Sleeper:
    name = "sleeper"
    direction = "max"
    budget_s = 20.0
    gold = HERE / "behave_gold.jsonl"

    def setup(self, state: Path) -> None:
        (state / "value.txt").write_text("0.1\n")
        (state / "gone.txt").write_text("deleted by every candidate\n")

    def propose(self, history) -> Candidate:
        n = history.next_iter
        return Candidate({"value": 0.1 + 0.1 * n, "sleep": 0.0}, f"value {0.1 + 0.1 * n:.1f}")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        p = candidate.params
        time.sleep(float(p.get("sleep", 0.0)))
        (state / "value.txt").write_text(f"{p['value']}\n")
        (state / "gone.txt").unlink(missing_ok=True)
        if p.get("llm_cost"):
            record_llm_call({"provider": "test", "model": "none", "cost_usd": float(p["llm_cost"]), "status": "ok"})

    def score(self, state: Path, gold: Path) -> Scores:
        v = float((state / "value.txt").read_text())
        return Scores(score=v, components={"value": v, "gone_present": float((state / "gone.txt").exists())})


target = Sleeper()
