"""A test target whose candidates misbehave on purpose, following a plan from $BEHAVE_PLAN.

Plan: comma-separated steps, one per candidate iteration, e.g. "ok:0.5,sleep:30,crash,oom,nan,ok:0.9".
  ok:V        score V (components acc=V, guard=G from ok:V:G)
  sleep:S     run sleeps S seconds (past a small budget: timeout)
  slowok:V:S  run sleeps S seconds, then scores V (used to kill the engine mid-run)
  crash       run raises
  oom         run allocates until killed by the memory cap
  nan         score returns NaN
  none        score returns None
  big:V       writes a 2 MB file into the state (stored by sha256 outside git) and scores V
  paid:V:S    records 3 LLM calls of $0.01 each over S seconds (no network: the records a client would
              write), scores V
Steps past the end of the plan repeat the last one. Baseline scores $BEHAVE_BASE (default 0.1).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent


class Behave:
    name = "behave"
    direction = os.environ.get("BEHAVE_DIRECTION", "max")
    budget_s = float(os.environ.get("BEHAVE_BUDGET", "5"))
    gold = HERE / "behave_gold.jsonl"
    guards = {"guard": float(os.environ["BEHAVE_GUARD"])} if os.environ.get("BEHAVE_GUARD") else {}
    large_file_mb = 1.0
    if os.environ.get("BEHAVE_PATIENCE"):
        patience = int(os.environ["BEHAVE_PATIENCE"])

    def setup(self, state: Path) -> None:
        (state / "value.json").write_text(json.dumps({"step": "baseline", "value": float(os.environ.get("BEHAVE_BASE", "0.1")), "guard": 1.0}))

    def propose(self, history) -> Candidate:
        plan = os.environ.get("BEHAVE_PLAN", "ok:0.5").split(",")
        k = len([r for r in history.iterations if r.iter > 0 and r.status != "interrupted"])
        step = plan[min(k, len(plan) - 1)]
        return Candidate({"step": step}, f"step {k}: {step}")

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        kind, *args = candidate.params["step"].split(":")
        if kind == "sleep":
            time.sleep(float(args[0]))
        if kind == "slowok":
            time.sleep(float(args[1]))
        if kind == "paid":
            from autoloop.context import record_llm_call

            for k in range(3):
                time.sleep(float(args[1]) / 3 if len(args) > 1 else 0)
                record_llm_call({"provider": "fake", "model": "fake-model", "input_tokens": 100 + k,
                                 "output_tokens": 20, "cost_usd": 0.01, "latency_s": 0.1, "status": "ok",
                                 "purpose": "test"})
        if kind == "crash":
            raise RuntimeError("candidate crashed on purpose")
        if kind == "oom":
            hog = []
            while True:
                hog.append(bytearray(b"\x01") * 100_000_000)
        value = float(args[0]) if args and kind in ("ok", "slowok", "big", "paid") else 0.0
        guard = float(args[1]) if kind == "ok" and len(args) > 1 else 1.0
        if kind == "big":
            (state / "weights.bin").write_bytes(os.urandom(2_000_000))
        (state / "value.json").write_text(json.dumps({"step": kind, "value": value, "guard": guard}))

    def score(self, state: Path, gold: Path) -> Scores:
        d = json.loads((state / "value.json").read_text())
        if d["step"] == "nan":
            return Scores(score=float("nan"))
        if d["step"] == "none":
            return Scores(score=None)
        v = d["value"]
        return Scores(score=v, components={"acc": v, "guard": d["guard"]}, items={"a": v, "b": v})


target = Behave()
