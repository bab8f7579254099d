"""Engine overhead per iteration on a no-op target, and whether it stays flat as the run grows, against
Optuna with SQLite storage (in-process trials) and Optuna with a subprocess per trial (how an Optuna user
gets a hard timeout), all measured in this one invocation.

Overhead = everything except the target's own propose/run/score time: child processes (start-up and target
import), journal fsyncs, DuckDB writes, git commit/tag/revert, replaying the history, deciding. It is
`iterations.overhead_s`: the wall clock between the end of one iteration's target time and the next's
(the iteration's clock starts where the previous one's stopped), so the column sums to the run's wall
clock minus target time; the bench checks that too.

Flatness: one run of the largest checkpoint's length; at each checkpoint N (default 10, 100, 200; the issue's
1,000 with --checkpoints 10,100,1000) the median overhead of the 10 iterations ending at N. Goal: <= 0.2 s
per iteration, <= 5x Optuna+subprocess, no growth from the first checkpoint to the last.

    python bench/engine_overhead.py [--checkpoints 10,100,200] [--trials 30]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def autoloop_overhead(iters: int, workdir: Path) -> tuple[list[float], float, float]:
    """Per-iteration overhead_s (iteration 1..iters), the loop's wall clock, and its target time."""
    from autoloop import store
    from autoloop.loop import run_loop
    from autoloop.runs import Settings, create_run

    settings = Settings(runs_dir=workdir / "runs", max_iters=iters, patience=iters + 1, progress=False)
    run = create_run(HERE / "noop_target.py", settings)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        run_loop(run)
        wall = time.perf_counter() - t0
    _, rows = store.query(run.db_path, "select iter, overhead_s, propose_s + run_s + score_s from iterations "
                          "where run_id = ? order by iter", [run.run_id])
    return [r[1] for r in rows if r[0] >= 1], wall, sum(r[2] for r in rows)


def optuna_overhead(trials: int, workdir: Path, subprocess_per_trial: bool) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = "optuna-sub" if subprocess_per_trial else "optuna"
    study = optuna.create_study(storage=f"sqlite:///{workdir / (name + '.db')}", direction="maximize")
    objective_file = HERE / "noop_target.py"  # the child imports a target-sized module, as ours does

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if not subprocess_per_trial:
            return x
        code = (f"import runpy, sys; runpy.run_path({str(objective_file)!r}); print(float(sys.argv[1]))")
        out = subprocess.run([sys.executable, "-c", code, str(x)], capture_output=True, text=True, timeout=60,
                             check=True)
        return float(out.stdout)

    times: list[float] = []
    for _ in range(trials):
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=1)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default="10,100,200", help="iteration counts to report (one run of the largest)")
    ap.add_argument("--trials", type=int, default=30)
    a = ap.parse_args()
    cps = sorted({int(x) for x in a.checkpoints.split(",")})
    with tempfile.TemporaryDirectory() as d:
        ours, wall, target_s = autoloop_overhead(cps[-1], Path(d))
        inproc = optuna_overhead(a.trials, Path(d), subprocess_per_trial=False)
        sub = optuna_overhead(a.trials, Path(d), subprocess_per_trial=True)
    m_in, m_sub = statistics.median(inproc), statistics.median(sub)
    print(f"autoloop overhead per iteration (iterations.overhead_s; median of the 10 iterations ending at N), "
          f"one run of {cps[-1]} iterations:")
    at = {}
    for n in cps:
        window = ours[max(0, n - 10):n]
        at[n] = statistics.median(window)
        print(f"  N = {n:5d}: {at[n] * 1000:7.1f} ms   ({at[n] / m_sub:.2f}x optuna+subprocess)")
    total = sum(ours)
    print(f"  sum of overhead_s {total:.1f} s vs the loop's wall clock minus target time {wall - target_s:.1f} s "
          f"(the baseline iteration and the run's start and end make the difference)")
    print(f"optuna (SQLite storage), in-process trial: median {m_in * 1000:.1f} ms over {len(inproc)} trials")
    print(f"optuna (SQLite storage), subprocess per trial: median {m_sub * 1000:.1f} ms over {len(sub)} trials")
    first, last = at[cps[0]], at[cps[-1]]
    print(f"ratio autoloop/optuna+subprocess at N={cps[-1]}: {last / m_sub:.2f}x (goal <= 5x); "
          f"autoloop/optuna in-process: {last / m_in:.1f}x")
    print(f"growth from N={cps[0]} to N={cps[-1]}: {last / first:.2f}x (flat = about 1)")
    print(f"goal <= 0.2 s per iteration: {'MET' if last <= 0.2 else 'NOT MET'} ({last * 1000:.0f} ms); "
          f"<= 5x optuna+subprocess: {'MET' if last <= 5 * m_sub else 'NOT MET'}")


if __name__ == "__main__":
    main()
