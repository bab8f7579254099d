"""Engine overhead per iteration on a no-op target, and whether it stays flat as the run grows, against
Optuna with SQLite storage (in-process trials) and Optuna with a subprocess per trial (how an Optuna user
gets a hard timeout), all measured in this one invocation.

Overhead = everything except the target's own propose/run/score time: child processes (start-up and target
import), journal fsyncs, DuckDB writes, git commit/tag/revert, replaying the history, deciding. It is
`iterations.overhead_s`: the wall clock between the end of one iteration's target time and the next's
(the iteration's clock starts where the previous one's stopped), so the column sums to the run's wall
clock minus target time; the bench checks that too.

Flatness: one run of the largest checkpoint's length, resumed in-process at each checkpoint N (default
10, 100, 200; the issue's 1,000 with --checkpoints 10,100,1000); at each N the median overhead of the 10
iterations ending at N, and both Optuna arms measured right after that window, so on a shared machine each
ratio compares figures taken under the same load. Goal: <= 0.2 s per iteration, <= 5x Optuna+subprocess, no
growth from the first checkpoint to the last.

    python bench/engine_overhead.py [--checkpoints 10,100,200] [--trials 10]
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


CPU_PER_ITER: dict[int, float] = {}  # checkpoint -> engine-process CPU seconds per iteration of its segment


def _cpu() -> float:
    """CPU time of this (engine) process, its threads included: unlike wall time, hardly moved by other load."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def autoloop_segments(checkpoints: list[int], workdir: Path, between) -> tuple[list[float], float, float]:
    """One run driven to each checkpoint in turn (the engine resumed in-process between segments, as
    `autoloop resume` would), calling `between(n)` after each segment so a peer is measured under the same
    load as the window it is compared with. Returns per-iteration overhead_s (iteration 1..), the loops'
    wall clock and their target time."""
    from autoloop import store
    from autoloop.loop import run_loop
    from autoloop.runs import Settings, create_run, open_run

    settings = Settings(runs_dir=workdir / "runs", max_iters=checkpoints[0], patience=checkpoints[-1] + 1,
                        progress=False)
    run = create_run(HERE / "noop_target.py", settings)
    wall, done = 0.0, 0
    for i, n in enumerate(checkpoints):
        if i:
            run = open_run(run.run_id, Settings(runs_dir=workdir / "runs"), {"max_iters": n})
        with contextlib.redirect_stdout(io.StringIO()):
            t0, c0 = time.perf_counter(), _cpu()
            run_loop(run)
            wall += time.perf_counter() - t0
            CPU_PER_ITER[n] = (_cpu() - c0) / (n - done)
        done = n
        between(n)
    _, rows = store.query(run.db_path, "select iter, overhead_s, propose_s + run_s + score_s, status from iterations "
                          "where run_id = ? order by iter", [run.run_id])
    return [r[1] for r in rows if r[0] >= 1 and r[3] != "interrupted"], wall, sum(r[2] for r in rows)


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
    ap.add_argument("--checkpoints", default="10,100,200", help="iteration counts to report (one run, resumed at each)")
    ap.add_argument("--trials", type=int, default=10, help="Optuna trials of each kind measured at each checkpoint")
    a = ap.parse_args()
    cps = sorted({int(x) for x in a.checkpoints.split(",")})
    peers: dict[int, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as d:
        def between(n: int) -> None:
            peers[n] = (optuna_overhead(a.trials, Path(d), subprocess_per_trial=False),
                        optuna_overhead(a.trials, Path(d), subprocess_per_trial=True))

        ours, wall, target_s = autoloop_segments(cps, Path(d), between)
    print(f"one no-op run of {cps[-1]} iterations; at each N, our median iterations.overhead_s over the 10 "
          f"iterations ending at N, and Optuna (SQLite storage) measured right after that window:")
    print(f"  {'N':>5}  {'autoloop ms':>11}  {'optuna ms':>9}  {'optuna+subprocess ms':>20}  {'ours/subprocess':>15}")
    ratio = {}
    at = {}
    for n in cps:
        at[n] = statistics.median(ours[max(0, n - 10):n])
        m_in, m_sub = statistics.median(peers[n][0]), statistics.median(peers[n][1])
        ratio[n] = at[n] / m_sub
        print(f"  {n:5d}  {at[n] * 1000:11.1f}  {m_in * 1000:9.1f}  {m_sub * 1000:20.1f}  {ratio[n]:14.2f}x")
    prev = 0
    print("engine-process CPU per iteration (its own work: git, journal, DuckDB thread, replay, polling), by segment:")
    for n in cps:
        print(f"  iterations {prev + 1:4d}-{n:4d}: {CPU_PER_ITER[n] * 1000:7.1f} ms")
        prev = n
    print(f"sum of overhead_s {sum(ours):.1f} s vs the loops' wall clock minus target time {wall - target_s:.1f} s "
          f"(the baseline, the reference step and each segment's start and end make the difference)")
    first, last = cps[0], cps[-1]
    print(f"growth from N={first} to N={last}: {at[last] / at[first]:.2f}x in ms, "
          f"{ratio[last] / ratio[first]:.2f}x against the peer measured at the same time (flat = about 1)")
    print(f"engine CPU per iteration, last segment / first: {CPU_PER_ITER[last] / CPU_PER_ITER[first]:.2f}x")
    print(f"goal <= 5x optuna+subprocess at N={last}: {'MET' if ratio[last] <= 5 else 'NOT MET'} ({ratio[last]:.2f}x); "
          f"goal <= 0.2 s per iteration: {'MET' if at[last] <= 0.2 else 'NOT MET'} ({at[last] * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
