"""The fastest BLAS for MLX on Linux CPU, and a cheap measurement of what the current process got.

Why: the `mlx[cpu]` Linux wheel bundles a reference BLAS (a 1024² float32 matmul runs at a few GFLOP/s); the
system OpenBLAS (Debian/Ubuntu `libopenblas0-pthread`) is ~30-40x faster. MLX binds its BLAS symbols when
libmlx is loaded, so either a *child* process gets the library in LD_PRELOAD (`blas_env()`), or the current
process loads it globally before its first `import mlx` (`use_openblas_in_process()`). macOS uses Accelerate.

    sudo apt-get install -y libopenblas0-pthread      # Debian/Ubuntu
    sudo dnf install -y openblas-threads              # Fedora (libopenblasp.so.0)
    export AUTOLOOP_BLAS=/path/to/libopenblas.so.0    # any other location; AUTOLOOP_BLAS=none disables
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

_OFF = {"", "0", "none", "off", "false", "no"}


def _candidates() -> list[Path]:
    arch = platform.machine() or "x86_64"
    dirs = [f"/usr/lib/{arch}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/opt/OpenBLAS/lib",
            "/opt/homebrew/opt/openblas/lib"]
    out: list[Path] = []
    for d in dirs:
        # pthread build first: the OpenMP build can clash with another libgomp in the process
        for sub, name in [("openblas-pthread", "libopenblas.so.0"), ("", "libopenblasp.so.0"),
                          ("openblas-openmp", "libopenblas.so.0"), ("", "libopenblas.so.0"),
                          ("", "libopenblaso.so.0")]:
            out.append(Path(d, sub, name) if sub else Path(d, name))
    return out


def find_openblas() -> Path | None:
    """$AUTOLOOP_BLAS if set (a path; 'none' disables), else the first system OpenBLAS found, else None.
    Always None on macOS, where MLX uses Accelerate."""
    env = os.environ.get("AUTOLOOP_BLAS")
    if env is not None:
        if env.strip().lower() in _OFF:
            return None
        p = Path(env).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"AUTOLOOP_BLAS={env}: no such file; point it at libopenblas.so.0 or set "
                                    f"AUTOLOOP_BLAS=none")
        return p.absolute()
    if sys.platform == "darwin":
        return None
    return next((p for p in _candidates() if p.is_file()), None)


def blas_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to add to a child's environment so its MLX uses OpenBLAS: {"LD_PRELOAD": lib[:existing]},
    or {} on macOS / when no OpenBLAS is installed / when it is already preloaded. `base` defaults to os.environ."""
    if sys.platform == "darwin":
        return {}
    lib = find_openblas()
    if lib is None:
        return {}
    current = (os.environ if base is None else base).get("LD_PRELOAD", "")
    parts = [p for p in current.replace(" ", ":").split(":") if p]
    if any(Path(p).resolve() == lib.resolve() for p in parts):
        return {}
    return {"LD_PRELOAD": ":".join([str(lib), *parts])}


def use_openblas_in_process() -> Path | None:
    """Make this process's MLX use the system OpenBLAS without a restart, if MLX is not imported yet.

    Loading OpenBLAS with RTLD_GLOBAL puts its cblas_* symbols in the global lookup scope, which the dynamic
    linker searches before libmlx's own dependencies when `import mlx.core` loads them later: the same effect
    as LD_PRELOAD. Returns the library now in use, or None (macOS, none installed, or MLX already imported —
    then only a child started with blas_env() can switch)."""
    if sys.platform == "darwin" or "mlx.core" in sys.modules:
        return None
    lib = find_openblas()
    if lib is None:
        return None
    import ctypes

    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    return lib


def loaded_blas() -> tuple[str, str | None]:
    """(kind, path) of the BLAS this process actually uses: 'accelerate', 'openblas' (mapped into the process),
    or 'mlx-bundled' (the wheel's reference BLAS)."""
    if sys.platform == "darwin":
        return "accelerate", None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        name = Path(path).name.lower()
        # numpy's bundled scipy_openblas has prefixed symbols: MLX never calls it
        if "openblas" in name and "scipy_openblas" not in name:
            return "openblas", path
    return "mlx-bundled", None


def matmul_gflops(n: int = 1024, max_seconds: float = 1.0) -> float:
    """Best-of-a-few float32 n×n matmul rate on MLX's default device, in GFLOP/s. Stops early on a slow BLAS."""
    import mlx.core as mx

    a = mx.random.normal((n, n), dtype=mx.float32, key=mx.random.key(0))
    b = mx.random.normal((n, n), dtype=mx.float32, key=mx.random.key(1))
    mx.eval(a, b, a @ b)  # warm-up (and thread-pool start)
    best = float("inf")
    start = time.perf_counter()
    for _ in range(5):
        t = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > max_seconds / 2:
            break
    return 2 * n**3 / best / 1e9


def blas_info(measure: bool = True) -> dict:
    """What to record with a run: which BLAS this process uses, its path, the library a child would get, and
    (measure=True, ~0.1 s with OpenBLAS, ~1 s without) the 1024² float32 matmul GFLOP/s here."""
    import mlx.core as mx

    kind, path = loaded_blas()
    try:
        available = find_openblas()
    except FileNotFoundError:
        available = None
    info = {"blas": kind, "path": path, "openblas_available": str(available) if available else None,
            "device": str(mx.default_device()), "mlx_version": mx.__version__}
    if measure:
        info["matmul_gflops_1024_f32"] = round(matmul_gflops(), 1)
    return info
