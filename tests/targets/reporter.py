"""A test target whose run() reports progress (3 steps, 1.5 s apart) and writes the step count into the state."""
from __future__ import annotations

import time
from pathlib import Path

from autoloop import Candidate, Scores, progress

HERE = Path(__file__).resolve().parent


class Reporter:
    name = "reporter"
    direction = "max"
    budget_s = 30.0
    gold = HERE / "behave_gold.jsonl"

    def setup(self, state: Path) -> None:
        (state / "steps.txt").write_text("0\n")

    def propose(self, history) -> Candidate:
        return Candidate({}, "three steps")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        for step in range(1, 4):
            progress.report(done=step, total=3, unit="steps", task="train")
            time.sleep(1.5)
        (state / "steps.txt").write_text("3\n")

    def score(self, state: Path, gold: Path) -> Scores:
        return Scores(score=float((state / "steps.txt").read_text()))


target = Reporter()
