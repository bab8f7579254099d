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
  hang        run ignores SIGTERM, starts a grandchild that ignores it too, and sleeps (timeout, SIGKILL)
  flood:MB:V  run writes MB megabytes to stdout, then a last line, and scores V
  floodcrash:MB  run writes MB megabytes to stdout, then raises (the traceback is the log's tail)
  exit:CODE   run leaves at once with os._exit(CODE): no result, no traceback
  daemon:V    run double-forks a setsid daemon (the middle process exits at once) and scores V
  fill        with $BEHAVE_FILL set, run writes into the state until the disk is full (disk-full tests)
  paid:V:S    records 3 LLM calls of $0.01 each over S seconds (no network: the records a client would
              write), scores V
$BEHAVE_PROPOSE: comma-separated, per candidate iteration, how propose() itself misbehaves: "hang" (sleeps an
hour), "sysexit" (sys.exit(3)), anything else nothing; $BEHAVE_PROPOSE_BUDGET sets propose_budget_s.
Steps past the end of the plan repeat the last one. Baseline scores $BEHAVE_BASE (default 0.1).
Processes started on purpose write their pid to $BEHAVE_PIDS/<name>.pid, for tests to check they died.
$BEHAVE_SETUP_SLEEP slows setup() (a run-id race needs a window), $BEHAVE_SETUP_BUDGET sets setup_budget_s,
$BEHAVE_SETUP_EXIT makes it sys.exit with that code; $BEHAVE_SCORE_STR makes score() return a
string; $BEHAVE_NAME renames the target.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autoloop import Candidate, Scores

HERE = Path(__file__).resolve().parent

# Double fork + setsid: the middle process exits at once, so the daemon is re-parented before anyone
# samples the process tree. It keeps stdout (the child's log pipe) open, as careless daemons do.
DAEMON = """
import os, sys, time
if os.fork():  # the launcher waits until the daemon has said who it is, so a test can look for it
    for _ in range(100):
        if os.path.exists(sys.argv[1]):
            break
        time.sleep(0.05)
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""
STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(600)
"""


def _pid_file(name: str) -> str:
    d = Path(os.environ.get("BEHAVE_PIDS") or "/tmp")
    d.mkdir(parents=True, exist_ok=True)
    return str(d / f"{name}-{os.getpid()}.pid")


class Behave:
    name = os.environ.get("BEHAVE_NAME", "behave")
    direction = os.environ.get("BEHAVE_DIRECTION", "max")
    budget_s = float(os.environ.get("BEHAVE_BUDGET", "5"))
    gold = HERE / "behave_gold.jsonl"
    guards = {"guard": float(os.environ["BEHAVE_GUARD"])} if os.environ.get("BEHAVE_GUARD") else {}
    large_file_mb = 1.0
    if os.environ.get("BEHAVE_PATIENCE"):
        patience = int(os.environ["BEHAVE_PATIENCE"])

    if os.environ.get("BEHAVE_SETUP_BUDGET"):
        setup_budget_s = float(os.environ["BEHAVE_SETUP_BUDGET"])

    def setup(self, state: Path) -> None:
        if os.environ.get("BEHAVE_SETUP_SLEEP") or os.environ.get("BEHAVE_SETUP_EXIT"):
            (state / "partial.txt").write_text("setup began\n")  # what a setup that fails later leaves behind
        time.sleep(float(os.environ.get("BEHAVE_SETUP_SLEEP", "0")))
        if os.environ.get("BEHAVE_SETUP_EXIT"):
            sys.exit(int(os.environ["BEHAVE_SETUP_EXIT"]))
        (state / "value.json").write_text(json.dumps({"step": "baseline", "value": float(os.environ.get("BEHAVE_BASE", "0.1")), "guard": 1.0}))

    if os.environ.get("BEHAVE_PROPOSE_BUDGET"):
        propose_budget_s = float(os.environ["BEHAVE_PROPOSE_BUDGET"])

    def propose(self, history) -> Candidate:
        plan = os.environ.get("BEHAVE_PLAN", "ok:0.5").split(",")
        k = len([r for r in history.iterations if r.iter > 0 and r.status != "interrupted"])
        how = os.environ.get("BEHAVE_PROPOSE", "").split(",")
        if k < len(how) and how[k] == "hang":
            time.sleep(3600)
        if k < len(how) and how[k] == "sysexit":
            sys.exit(3)
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
        if kind == "hang":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            subprocess.Popen([sys.executable, "-c", STUBBORN, _pid_file("grandchild")])
            while True:
                time.sleep(1)
        if kind in ("flood", "floodcrash"):
            block = (b"x" * 1023 + b"\n") * 1024
            for _ in range(int(float(args[0]))):
                sys.stdout.buffer.write(block)
            sys.stdout.buffer.write(b"FLOOD-END\n")
            sys.stdout.flush()
            if kind == "floodcrash":
                raise RuntimeError("crashed after a flood")
        if kind == "exit":
            os._exit(int(args[0]))
        if kind == "daemon":
            subprocess.run([sys.executable, "-c", DAEMON, _pid_file("daemon")], check=True)
        if kind == "fill" and os.environ.get("BEHAVE_FILL"):
            with open(state / "filler.bin", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
        if kind == "oom":
            hog = []
            while True:
                hog.append(bytearray(b"\x01") * 100_000_000)
        value = float(args[0]) if args and kind in ("ok", "slowok", "big", "daemon", "paid") else 0.0
        if kind == "flood":
            value = float(args[1])
        guard = float(args[1]) if kind == "ok" and len(args) > 1 else 1.0
        if kind == "big":
            (state / "weights.bin").write_bytes(os.urandom(2_000_000))
        (state / "value.json").write_text(json.dumps({"step": kind, "value": value, "guard": guard}))

    def score(self, state: Path, gold: Path) -> Scores:
        if os.environ.get("BEHAVE_SCORE_STR"):
            return "0.5"  # type: ignore[return-value]  # a broken score(): nothing can be measured
        d = json.loads((state / "value.json").read_text())
        if d["step"] == "nan":
            return Scores(score=float("nan"))
        if d["step"] == "none":
            return Scores(score=None)
        v = d["value"]
        return Scores(score=v, components={"acc": v, "guard": d["guard"]}, items={"a": v, "b": v})


target = Behave()
