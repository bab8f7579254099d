"""Scale-out: iterations per hour and engine overhead per member, local vs Ray, in one run.

The example target (targets/example_fit.py) with a run() that sleeps S seconds (a stand-in for training
that waits on nothing the engine does), batches of 2 members per iteration, three ways:

    --parallel 1, local executor    the two members one after the other
    --parallel 2, local executor    both at once, child processes on this machine
    --parallel 2, Ray executor      both at once on a real two-node Ray cluster started on this machine
                                    (ray start --head + ray start --address, 1 CPU each; tests/ray_cluster.py)

Each is a real `autoloop run` (CLI, fresh runs dir) of K iterations after the baseline. Measured from the
run's own history: the window from iteration 1's start to the last iteration's end (so Python start-up, the
Ray connection and the baseline are outside it). Iterations per hour = K / window. Engine overhead per
member = (window - K * ceil(2 / parallel) * S) / (2K): everything that is not the unavoidable sleeping
(child start-up, shipping state through the object store, the score children, git, journal, DuckDB).
Ratios are against the peer measured in the same run.

    python bench/scaleout.py [--iters 6] [--sleep 3]      (writes bench/results/scaleout.txt)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

WRAPPER = '''"""The example target with a run() that sleeps {sleep} s (bench/scaleout.py)."""
import time
from pathlib import Path

from example_fit import PolyFit  # copied beside this file: the folder travels to Ray workers as a whole


class SleepyFit(PolyFit):
    def run(self, candidate, state, deadline):
        time.sleep({sleep})
        super().run(candidate, state, deadline)


target = SleepyFit(name="sleepy_fit", gold=Path({gold!r}))
'''


def make_target(workdir: Path, sleep: float) -> Path:
    d = workdir / "target"
    d.mkdir()
    shutil.copy(ROOT / "targets" / "example_fit.py", d / "example_fit.py")
    (d / "sleepy_fit.py").write_text(WRAPPER.format(sleep=sleep, gold=str(ROOT / "gold" / "example_curve.jsonl")))
    return d / "sleepy_fit.py"


def one(label: str, target: Path, workdir: Path, iters: int, sleep: float, parallel: int, extra: list[str],
        env: dict) -> dict:
    runs = workdir / f"runs-{label}"
    cmd = [sys.executable, "-m", "autoloop", "run", str(target), "--max-iters", str(iters), "--patience", str(iters + 1),
           "--batch", "2", "--parallel", str(parallel), "--no-progress", *extra]
    e = dict(env, AUTOLOOP_RUNS_DIR=str(runs), PYTHONPATH=str(ROOT))
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=ROOT, timeout=3600)
    wall = time.time() - t0
    if p.returncode != 0:
        raise SystemExit(f"{label}: autoloop exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rid = next(runs.glob("*/journal.jsonl")).parent.name
    events = [json.loads(x) for x in (runs / rid / "journal.jsonl").read_text().splitlines() if x.strip()]
    starts = {e["iter"]: e["ts"] for e in events if e["kind"] == "iter_start"}
    ends = {e["iter"]: e for e in events if e["kind"] == "iter_end"}
    window = max(e["ts"] for e in ends.values()) - starts[1]
    k = len([i for i in ends if i > 0])
    statuses = [ends[i]["status"] for i in sorted(ends)]
    nodes = sorted({t.get("node") or "local" for i, e in ends.items() if i > 0 for t in (e.get("trials") or [])})
    ideal = k * math.ceil(2 / parallel) * sleep
    per_iter = sorted(ends[i]["ts"] - starts[i] for i in ends if i > 0)
    median = per_iter[len(per_iter) // 2] if len(per_iter) % 2 else sum(per_iter[len(per_iter) // 2 - 1:][:2]) / 2
    return {"median_iter_s": median, "median_overhead_per_member_s": (median - math.ceil(2 / parallel) * sleep) / 2,
            "label": label, "iters": k, "window_s": window, "wall_s": wall, "iters_per_hour": k / window * 3600,
            "overhead_per_member_s": (window - ideal) / (2 * k), "statuses": statuses, "nodes": nodes,
            "recorded_overhead_s": sum((ends[i].get("durations") or {}).get("overhead_s", 0) for i in ends if i > 0) / k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=6, help="iterations after the baseline, per configuration")
    ap.add_argument("--sleep", type=float, default=3.0, help="seconds each member's run() sleeps")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scaleout.txt")
    a = ap.parse_args()
    from ray_cluster import LocalRayCluster

    work = Path(tempfile.mkdtemp(prefix="scaleout-"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    target = make_target(work, a.sleep)
    results = []
    cluster = LocalRayCluster()
    try:
        results.append(one("parallel 1, local", target, work, a.iters, a.sleep, 1, [], env))
        results.append(one("parallel 2, local", target, work, a.iters, a.sleep, 2, [], env))
        t0 = time.time()
        cluster.start()
        up = time.time() - t0
        results.append(one("parallel 2, Ray (2 nodes)", target, work, a.iters, a.sleep, 2,
                           ["--executor", "ray", "--ray-address", cluster.address], env))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    left = cluster.leftovers()
    base, loc2, ray2 = results
    lines = [
        f"$ python bench/scaleout.py --iters {a.iters} --sleep {a.sleep:g}",
        f"# {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"(a flagship training run shares the box); example target, run() sleeps {a.sleep:g} s, batch of 2 per iteration",
        f"# Ray cluster: ray start --head + ray start --address on this machine, 1 CPU each; up in {up:.0f} s (not in the figures)",
        "",
        f"{'configuration':28} {'iters/hour':>10} {'vs p1 local':>11} {'overhead/member':>16} {'median s/iter':>14} "
        f"{'(its overhead/member)':>22} {'recorded overhead/iter':>23}  nodes",
    ]
    for r in results:
        lines.append(f"{r['label']:28} {r['iters_per_hour']:10.0f} {r['iters_per_hour'] / base['iters_per_hour']:10.2f}x "
                     f"{r['overhead_per_member_s']:15.2f}s {r['median_iter_s']:13.2f}s {r['median_overhead_per_member_s']:21.2f}s "
                     f"{r['recorded_overhead_s']:22.2f}s  {', '.join(r['nodes'])}")
    lines += [
        "",
        f"Ray vs local at --parallel 2: iterations per hour x{ray2['iters_per_hour'] / loc2['iters_per_hour']:.2f}, "
        f"engine overhead per member x{ray2['overhead_per_member_s'] / max(loc2['overhead_per_member_s'], 1e-9):.2f} "
        f"(median iteration: x{ray2['median_overhead_per_member_s'] / max(loc2['median_overhead_per_member_s'], 1e-9):.2f})",
        f"same decisions in all three: {base['statuses'] == loc2['statuses'] == ray2['statuses']} ({' '.join(base['statuses'])})",
        f"Ray or candidate processes left after the cluster stopped: {len(left)}",
        "",
        "overhead/member = (window - iters * ceil(2/parallel) * sleep) / (2 * iters); window = iteration 1's start to",
        "the last iteration's end, from the run's journal. The median iteration's figure leaves out one-off costs (a",
        "Ray node starts a worker process for a run's first task there: each `autoloop run` is a new Ray job).",
        "recorded overhead/iter = iterations.overhead_s (the engine's own accounting: total - propose - run - score,",
        "where run and score of a batch count the longest member, so with --parallel 1 the second member's run is",
        "counted there too).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
