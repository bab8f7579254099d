"""A test target for the executor and the batch step: run sleeps params["sleep"] seconds, writes
params["value"] into the state (value.txt) and deletes gone.txt; score reads value.txt back (direction max).
Baseline: 0.1. Iteration n proposes 0.1 + $SLEEPER_STEP * n (default 0.1), plus 0.01 per member already
in the batch (`history.pending`), sleeping $SLEEPER_SLEEP seconds; the description says how many trials the
previous iteration told it. With $SLEEPER_SCREEN set the target has a `screen` hook (value.txt again, no
sleep) and screen_slack 0: a batch that screens below the incumbent is rejected before any full score.
$SLEEPER_BUDGET sets budget_s (default 20).
With params["llm_cost"], run records one LLM call of that many dollars (no network: the record a client writes)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from autoloop import Candidate, Scores
from autoloop.context import record_llm_call

HERE = Path(__file__).resolve().parent


class Sleeper:
    name = "sleeper"
    direction = "max"
    budget_s = float(os.environ.get("SLEEPER_BUDGET", "20"))  # room for a slow start on a loaded box
    gold = HERE / "behave_gold.jsonl"

    def setup(self, state: Path) -> None:
        (state / "value.txt").write_text("0.1\n")
        (state / "gone.txt").write_text("deleted by every candidate\n")

    def propose(self, history) -> Candidate:
        n, k = history.next_iter, len(getattr(history, "pending", []) or [])
        v = round(0.1 + float(os.environ.get("SLEEPER_STEP", "0.1")) * n + 0.01 * k, 4)
        last = history.last()
        told = len(last.trials) if last is not None else 0
        return Candidate({"value": v, "sleep": float(os.environ.get("SLEEPER_SLEEP", "0"))},
                         f"value {v:g} (told {told} trials)")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        p = candidate.params
        began = time.time()
        time.sleep(float(p.get("sleep", 0.0)))
        if p.get("stamp"):  # when this member slept: a test reads the intervals to see members overlap
            (state / "slept.txt").write_text(f"{began} {time.time()}\n")
        (state / "value.txt").write_text(f"{p['value']}\n")
        (state / "gone.txt").unlink(missing_ok=True)
        if p.get("llm_cost"):
            record_llm_call({"provider": "test", "model": "none", "cost_usd": float(p["llm_cost"]), "status": "ok"})

    def score(self, state: Path, gold: Path) -> Scores:
        v = float((state / "value.txt").read_text())
        return Scores(score=v, components={"value": v, "gone_present": float((state / "gone.txt").exists())})


class ScreeningSleeper(Sleeper):
    screen_slack = 0.0

    def screen(self, incumbent: Path, members: list, gold: Path):
        def read(d: Path) -> Scores:
            v = float((Path(d) / "value.txt").read_text())
            return Scores(score=v, components={"value": v})

        return read(incumbent), [read(m) for m in members]


target = ScreeningSleeper() if os.environ.get("SLEEPER_SCREEN") else Sleeper()
