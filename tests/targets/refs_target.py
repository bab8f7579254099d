"""A test target shaped like the SFIA one: long component names, scores with long decimals, a reference
point declared through `reference_scores`, and progress reports while it runs and scores.

$REFS_PLAN: comma-separated scores, one per candidate (the last repeats). $REFS_FAIL=1: reference_scores
raises. $REFS_SLEEP: seconds run() and score() spend reporting progress (default 0).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from autoloop import Candidate, Scores, progress

HERE = Path(__file__).resolve().parent
COMPONENTS = ["json_validity", "skill_f1", "level_within_1", "hallucination", "evidence_grounding"]


def _scores(v: float) -> Scores:
    comps = {"forge_score": v, "json_validity": min(1.0, v * 1.3), "skill_f1": v / 3, "level_within_1": v / 2,
             "hallucination": 1 - v, "evidence_grounding": v / 7, "dev_json_validity": min(1.0, v * 1.1),
             "stage_grpo": 0.0}
    return Scores(score=v, components=comps, items={"a": v, "b": v})


def _work(task: str, total: int) -> None:
    sleep = float(os.environ.get("REFS_SLEEP", "0"))
    for i in range(total + 1):
        progress.report(done=i, total=total, unit="items", task=task, loss=1 / (i + 3), tokens_per_s=41.26)
        if i < total:
            time.sleep(sleep / total)


class RefsTarget:
    name = "refs"
    direction = "max"
    budget_s = 60.0
    gold = HERE / "behave_gold.jsonl"
    baseline_label = "untrained model"
    show_columns = ["forge_score", *COMPONENTS, "dev_json_validity", "stage_grpo"]

    def setup(self, state: Path) -> None:
        (state / "value.json").write_text(json.dumps({"value": 0.0}))

    def propose(self, history) -> Candidate:
        plan = os.environ.get("REFS_PLAN", "0.63416666666669").split(",")
        k = len([r for r in history.iterations if r.iter > 0])
        v = float(plan[min(k, len(plan) - 1)])
        return Candidate({"value": v}, f"SFT cycle {k}, lr 0.0002, seed {k} (dev JSON validity 0.00 < 0.9)")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        _work("SFT", 10)
        (state / "value.json").write_text(json.dumps({"value": candidate.params["value"]}))

    def score(self, state: Path, gold: Path) -> Scores:
        _work("generate", 20)
        return _scores(json.loads((state / "value.json").read_text())["value"])

    def reference_scores(self, gold: Path) -> dict:
        if os.environ.get("REFS_FAIL"):
            raise RuntimeError("reference scoring broke on purpose")
        return {"constant valid reply": _scores(0.4583333333333)}


target = RefsTarget()
