"""Example target: fit a cubic polynomial to a fixed curve by keep-or-revert hill climbing.

Small, fast and deterministic, so it shows the whole loop in seconds on any machine:
- the state is `model.json` (four coefficients); the baseline is all zeros;
- propose moves one coefficient of the incumbent by +-step (pattern search), halving the step after a
  sweep without a keep, and says so in its description;
- run writes the candidate's coefficients into the state dir (a real child process does it);
- score is the mean absolute error on the 40 held-out points of gold/example_curve.jsonl (direction min),
  with per-point errors so decisions and SQL drill-downs can pair them.

Run it:  autoloop run targets/example_fit.py --max-iters 20
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent


@dataclass
class PolyFit:
    name: str = "example_fit"
    direction: str = "min"
    budget_s: float = 30.0
    gold: Path = HERE.parent / "gold" / "example_curve.jsonl"
    degree: int = 3
    seed: int = 0
    tolerance: float = 0.05  # a point "fits" when its error is below this
    show_columns: list = field(default_factory=lambda: ["mae", "max_err", "within_tol"])

    def setup(self, state: Path) -> None:
        (state / "model.json").write_text(json.dumps({"coef": [0.0] * (self.degree + 1)}) + "\n")

    def propose(self, history) -> Candidate:
        """Pattern search: try +step then -step on each coefficient in turn; after a whole sweep
        without a keep, halve the step. Deterministic, so two runs give the same curve. In a batch
        (`--batch N`), each member takes the next move: `history.pending` holds the members asked so far."""
        n = self.degree + 1
        inc = history.incumbent
        coef = list(inc.params["coef"]) if inc and inc.params.get("coef") else [0.0] * n
        step = float(inc.params.get("step", 0.5)) if inc and inc.params else 0.5
        done = sum(max(1, len(r.trials)) for r in history.since_last_keep() if r.status != "interrupted")
        failed = done + len(getattr(history, "pending", []) or [])
        step *= 0.5 ** (failed // (2 * n))
        move = failed % (2 * n)
        i, sign = move // 2, (1 if move % 2 == 0 else -1)
        coef[i] = round(coef[i] + sign * step, 6)
        desc = f"c{i} {'+' if sign > 0 else '-'}{step:g}" + (
            f" (step halved after {failed} reverts)" if failed >= 2 * n else "")
        return Candidate(params={"coef": coef, "step": step}, description=desc)

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        (state / "model.json").write_text(json.dumps({"coef": candidate.params["coef"]}) + "\n")

    def score(self, state: Path, gold: Path) -> Scores:
        coef = json.loads((state / "model.json").read_text())["coef"]
        errors = {}
        for line in gold.read_text().splitlines():
            p = json.loads(line)
            pred = sum(c * p["x"] ** k for k, c in enumerate(coef))
            errors[p["id"]] = abs(pred - p["y"])
        mae = sum(errors.values()) / len(errors)
        return Scores(score=mae, items=errors, components={
            "mae": mae, "max_err": max(errors.values()),
            "within_tol": sum(e < self.tolerance for e in errors.values()) / len(errors)})


target = PolyFit()
