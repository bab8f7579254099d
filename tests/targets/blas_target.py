"""A test target that does what targets/sfia_grpo.py does about the BLAS, and nothing else.

describe() is autoloop.mlx.blas.check() (the run-start warning comes from its "warnings"); child_env() is
blas_env(); score() runs in a child and reports in components whether MLX there got OpenBLAS (openblas=1) and
a matmul it computed against numpy's (rel_err).
"""
from __future__ import annotations

from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent


class BlasTarget:
    name = "blas"
    direction = "max"
    budget_s = 120.0
    gold = HERE / "behave_gold.jsonl"

    def describe(self) -> dict:
        from autoloop.mlx.blas import check

        return check()

    def child_env(self) -> dict:
        from autoloop.mlx.blas import blas_env

        return blas_env()

    def propose(self, history) -> Candidate:
        return Candidate({}, "nothing to change")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        (state / "ran").write_text("1\n")

    def score(self, state: Path, gold: Path) -> Scores:
        import numpy as np

        import mlx.core as mx
        from autoloop.mlx.blas import loaded_blas

        a = np.arange(12 * 7, dtype=np.float32).reshape(12, 7) / 10
        b = np.arange(7 * 5, dtype=np.float32).reshape(7, 5) / 10
        err = float(np.abs(np.array(mx.array(a) @ mx.array(b)) - a @ b).max())
        got = 1.0 if loaded_blas()[0] == "openblas" else 0.0
        return Scores(score=got, components={"openblas": got, "rel_err": err})


target = BlasTarget()
