"""A test target with a search `space`, for `--proposer`: state is params.json; score (max) is
1 - (x - 0.5)^2 + 0.1 if k == "b"; a config with x > 1.5 fails the `ok` guard (as a wrong answer would).
Its own proposer walks x by 0.25 ("own: ..."); GridProposer is a `module:Class` proposer for the tests."""
from __future__ import annotations

import json
from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent


class Spacey:
    name = "spacey"
    direction = "max"
    budget_s = 20.0
    gold = HERE / "behave_gold.jsonl"
    space = {"x": ("float", -2.0, 2.0), "k": ("cat", ["a", "b"])}
    guards = {"ok": 0.0}
    patience = 50

    def search_options(self) -> dict:
        return {"defaults": {"x": 0.0, "k": "a"}, "n_startup_trials": 2}

    def setup(self, state: Path) -> None:
        (state / "params.json").write_text(json.dumps({"x": 0.0, "k": "a"}) + "\n")

    def propose(self, history) -> Candidate:
        inc = history.incumbent
        x = float((inc.params or {}).get("x", 0.0)) + 0.25 * (1 + len(history.since_last_keep()))
        return Candidate({"x": x, "k": "a"}, f"own: x={x:g}")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        (state / "params.json").write_text(json.dumps(candidate.params) + "\n")

    def score(self, state: Path, gold: Path) -> Scores:
        p = json.loads((state / "params.json").read_text())
        v = 1 - (float(p["x"]) - 0.5) ** 2 + (0.1 if p["k"] == "b" else 0.0)
        return Scores(score=v, components={"ok": 0.0 if float(p["x"]) > 1.5 else 1.0})


class GridProposer:
    """x = -1, -0.5, 0, ... in turn, k = 'b': a `--proposer spacey:GridProposer` for the tests."""

    def __init__(self, target):
        self.target = target

    def propose(self, history) -> Candidate:
        x = -1.0 + 0.5 * (history.next_iter - 1)
        return Candidate({"x": x, "k": "b"}, f"grid: x={x:g}")


target = Spacey()
