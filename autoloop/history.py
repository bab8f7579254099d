"""The read-only view of a run's past that `propose` receives.

Built from the journal (the source of truth), so it is exact after a resume. Proposers use it to
adapt: the incumbent (last kept iteration) and its params, what was reverted and why, per-item scores
and the feedback the scorer wrote.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class IterationRecord:
    iter: int
    status: str  # keep | revert | crash | timeout | oom | nonfinite | invalid | interrupted
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    score: float | None = None
    components: dict[str, float] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0
    tag: str | None = None
    commit: str | None = None
    reason: str = ""  # why the decision was taken (or the error)
    feedback_path: Path | None = None
    # Every member of the iteration's batch (one for a plain iteration): {"member", "params", "description",
    # "status", "score" (measured in full, else None), "screen_score", "components", "info", "chosen", "reason"}.
    # `params` above are the chosen member's: the config that was measured in full and kept or reverted.
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return self.status == "keep"

    def feedback(self) -> list[dict[str, Any]]:
        """Per-item detail the scorer returned (expected vs actual...); empty when there was none."""
        if self.feedback_path is None or not self.feedback_path.exists():
            return []
        return json.loads(self.feedback_path.read_text())


@dataclass
class History:
    run_id: str
    direction: str
    iterations: list[IterationRecord] = field(default_factory=list)
    run_dir: Path | None = None
    # Candidates already proposed for the iteration being asked (a batch is asked one member at a time, as
    # Optuna's pending trials): a proposer that reads this proposes something else for the next member.
    pending: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.iterations)

    def __iter__(self) -> Iterator[IterationRecord]:
        return iter(self.iterations)

    @property
    def next_iter(self) -> int:
        return (self.iterations[-1].iter + 1) if self.iterations else 0

    @property
    def incumbent(self) -> IterationRecord | None:
        """The last kept iteration: the state the next candidate starts from."""
        for rec in reversed(self.iterations):
            if rec.kept:
                return rec
        return None

    @property
    def best(self) -> IterationRecord | None:
        # Kept iterations only ever improve on the incumbent, so the last kept one is the best.
        return self.incumbent

    def trials(self) -> list[tuple[IterationRecord, dict[str, Any]]]:
        """(iteration, member) for every member of every finished iteration, oldest first."""
        return [(r, t) for r in self.iterations for t in r.trials]

    def kept(self) -> list[IterationRecord]:
        return [r for r in self.iterations if r.kept]

    def last(self) -> IterationRecord | None:
        return self.iterations[-1] if self.iterations else None

    def since_last_keep(self) -> list[IterationRecord]:
        out: list[IterationRecord] = []
        for rec in reversed(self.iterations):
            if rec.kept:
                break
            out.append(rec)
        return list(reversed(out))
