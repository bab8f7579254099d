"""A target that does nothing, so everything measured around it is engine overhead."""
from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent


class Noop:
    name = "noop"
    direction = "max"
    budget_s = 60.0
    gold = HERE / "noop_gold.jsonl"

    def setup(self, state: Path) -> None:
        (state / "x.txt").write_text("0\n")

    def propose(self, history) -> Candidate:
        return Candidate({"x": history.next_iter}, f"x = {history.next_iter}")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        (state / "x.txt").write_text(f"{candidate.params['x']}\n")

    def score(self, state: Path, gold: Path) -> Scores:
        x = int((state / "x.txt").read_text())
        return Scores(score=float(x % 3), components={"x": float(x)}, items={"a": float(x % 3), "b": 1.0})


target = Noop()
