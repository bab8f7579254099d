"""MLX float32 matmul speed on Linux CPU with each BLAS autoloop can give it, measured in one run.

Why: MLX's Linux wheel links a reference BLAS; autoloop preloads a fast one into its children, from pip
(scipy-openblas32, symbols renamed by autoloop/mlx/elfrename.py) or from the system (libopenblas0-pthread).
The acceptance for the pip path is >= 50% of the system OpenBLAS speed on the same machine in the same run.

Each variant runs in its own child process (LD_PRELOAD set as autoloop sets it), rounds are interleaved
and the order rotates each round, so background load hits all variants alike; per shape the child reports
its best of a few repetitions, and this prints the median over rounds (and the best). Shapes: square n×n
matmuls, and `mlp`, the SmolLM2-135M MLP up-projection of a GRPO group (896×576 @ 576×1536).

    python bench/blas.py                      # 5 rounds (reference: 2), ~2 min on 2 cores
    python bench/blas.py --rounds 9 --sizes 512,1024,2048

A system OpenBLAS is measured when one is installed; nothing is uninstalled (the "without it" case is the
pip column: that child gets only the pip library).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLP = (896, 576, 1536)  # m, k, n


def child(shapes: list[str], max_seconds: float) -> None:
    import ctypes

    import numpy as np

    import mlx.core as mx
    from autoloop.mlx.blas import loaded_blas

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((67, 45), dtype=np.float32), rng.standard_normal((45, 31), dtype=np.float32)
    err = float(np.abs(np.array(mx.array(a) @ mx.array(b)) - a @ b).max() / np.abs(a @ b).max())
    config = None
    try:
        f = ctypes.CDLL(None).openblas_get_config
        f.restype = ctypes.c_char_p
        config = f().decode()
    except (AttributeError, OSError):
        pass
    out = {"blas": loaded_blas(), "config": config, "rel_err": err, "gflops": {}}
    for s in shapes:
        m, k, n = MLP if s == "mlp" else (int(s),) * 3
        x = mx.random.normal((m, k), dtype=mx.float32, key=mx.random.key(0))
        y = mx.random.normal((k, n), dtype=mx.float32, key=mx.random.key(1))
        mx.eval(x, y, x @ y)  # warm-up and thread-pool start
        best, start = float("inf"), time.perf_counter()
        for _ in range(20):
            t = time.perf_counter()
            mx.eval(x @ y)
            best = min(best, time.perf_counter() - t)
            if time.perf_counter() - start > max_seconds:
                break
        out["gflops"][s] = 2 * m * k * n / best / 1e9
    print(json.dumps(out))


def run_child(lib: Path | None, shapes: list[str], max_seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["AUTOLOOP_BLAS"] = str(lib) if lib else "none"
    if lib:
        env["LD_PRELOAD"] = str(lib)
    p = subprocess.run([sys.executable, __file__, "--child", ",".join(shapes), "--max-seconds", str(max_seconds)],
                       env=env, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"child with {lib or 'reference BLAS'} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ref-rounds", type=int, default=2, help="rounds for the (slow, steady) reference BLAS")
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--max-seconds", type=float, default=1.5, help="timing budget per shape per child")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    shapes = [*a.sizes.split(","), "mlp"]
    if a.child:
        return child(a.child.split(","), a.max_seconds)
    if sys.platform != "linux":
        raise SystemExit("bench/blas.py measures Linux BLAS choices; on macOS MLX uses Accelerate")

    from autoloop.mlx.blas import choose, describe_lib, pip_openblas, system_openblas

    variants: dict[str, Path | None] = {"reference": None}
    pip = pip_openblas()
    if pip:
        variants["pip"] = pip
    sysl = system_openblas()
    if sysl:
        variants["system"] = sysl
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())
    started = time.time()
    print(f"# python bench/blas.py --rounds {a.rounds} --ref-rounds {a.ref_rounds} --sizes {a.sizes} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, lib in variants.items():
        print(f"  {name:<9} {lib or 'mlx_cpu.libs/libblas (linked by libmlx)'}")
    results: dict[str, list[dict]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(a.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            if name == "reference" and r >= a.ref_rounds:
                continue
            got = run_child(variants[name], shapes, a.max_seconds)
            results[name].append(got)
            rates = " ".join(f"{s}={got['gflops'][s]:.1f}" for s in shapes)
            print(f"round {r + 1} {name:<9} {rates}   (blas {got['blas'][0]}, rel err {got['rel_err']:.1e})",
                  flush=True)
    print()
    for name, runs in results.items():
        cfg = runs[0]["config"]
        print(f"{name:<9} mapped {runs[0]['blas'][1] or 'reference'}" + (f"  [{cfg}]" if cfg else ""))
    med = {k: {s: statistics.median(x["gflops"][s] for x in v) for s in shapes} for k, v in results.items()}
    best = {k: {s: max(x["gflops"][s] for x in v) for s in shapes} for k, v in results.items()}
    print(f"\nfloat32 matmul GFLOP/s through mlx, median over rounds (best in brackets):")
    print(f"{'shape':<10}" + "".join(f"{k:>20}" for k in results))
    for s in shapes:
        label = f"{s}²" if s != "mlp" else "mlp"
        print(f"{label:<10}" + "".join(f"{med[k][s]:>12.1f} ({best[k][s]:>5.1f})" for k in results))
    print("\nratios of medians:")
    pairs = [("pip", "reference"), ("system", "reference"), ("pip", "system")]
    for x, y in pairs:
        if x in med and y in med:
            print(f"  {x}/{y}: " + "  ".join(f"{s}: {med[x][s] / med[y][s]:.2f}" for s in shapes))
    if "pip" in med and "system" in med:
        ratio = med["pip"]["1024"] / med["system"]["1024"] if "1024" in med["pip"] else None
        if ratio is not None:
            print(f"\nacceptance (pip >= 50% of system OpenBLAS, 1024² median): {ratio:.2f} -> "
                  f"{'PASS' if ratio >= 0.5 else 'FAIL'}")
    elif "pip" in med:
        print("\n(no system OpenBLAS installed: pip vs reference only)")
    c = choose()
    print(f"autoloop's choice here (AUTOLOOP_BLAS={os.environ.get('AUTOLOOP_BLAS', 'auto') or 'auto'}): "
          f"{describe_lib(c.source, c.lib)}" + (f", measured {c.measured}" if c.measured else ""))
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
