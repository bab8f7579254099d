"""The fastest BLAS for MLX on Linux CPU with nothing but pip, and a loud word when there is none.

Why: the `mlx[cpu]` Linux wheel links a reference BLAS (`mlx_cpu.libs/libblas-*.so.3`, dynamically): a 1024²
float32 matmul runs at 1-5 GFLOP/s, against ~50-300 with OpenBLAS. MLX binds `cblas_sgemm` & co. when
libmlx is loaded, so a library in a child's LD_PRELOAD (`blas_env()`), or loaded globally by this process before
its first `import mlx` (`use_openblas_in_process()`), replaces it. macOS uses Accelerate and is left alone.

Where the fast BLAS comes from, in order (AUTOLOOP_BLAS picks one explicitly):
- **pip**: the `scipy-openblas32` wheel (a dependency of autoloop on Linux x86_64/aarch64; BSD; ~8 MB). It
  exports `scipy_`-prefixed names, so on first use a copy with the plain names is written to
  `~/.cache/autoloop/blas/` by `elfrename.unprefix` (pure Python, no compiler; ~0.2 s, ~25 MB on disk).
- **system**: a system OpenBLAS (`apt-get install libopenblas0-pthread`, `dnf install openblas-threads`).
  Each candidate is tried in a child process first (the preload took effect, a matmul matches numpy's);
  when both work the faster one is used. The outcome is cached in `~/.cache/autoloop/blas/choice.json`, keyed
  by the libraries, the MLX version and the CPU count (a failure is not cached: it is tried again next time).
- otherwise MLX's reference BLAS, and `check()` returns a one-line warning with the measured GFLOP/s and
  the fix; `autoloop run` prints it at start, `autoloop doctor` prints it with the rest of the environment.

    AUTOLOOP_BLAS=auto          the default: the faster of pip and system
    AUTOLOOP_BLAS=pip           the pip OpenBLAS only (hides a system one, e.g. to measure without it)
    AUTOLOOP_BLAS=system        a system OpenBLAS only
    AUTOLOOP_BLAS=none          MLX's reference BLAS (slow; for comparisons)
    AUTOLOOP_BLAS=/path/libopenblas.so.0   that library

A parent pins its choice in the children's environment (AUTOLOOP_BLAS=<path> or none), so children never
measure again and always agree with the parent.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_OFF = {"0", "none", "off", "false", "no", "reference"}
PIP_PACKAGE = "scipy-openblas32"
PIP_LIB_NAME = "libopenblas_pip.so"  # "openblas" in the name: loaded_blas() recognises it in /proc/self/maps
APT_FIX = "sudo apt-get install libopenblas0-pthread"
MATMUL = "1024² float32 matmul"


class BlasError(RuntimeError):
    """A fast BLAS exists but cannot be used (e.g. the pip library could not be rewritten). One line."""


# ------------------------------------------------------------------------------------------------ where

def _cache_root() -> Path:
    from autoloop.mlx.models import cache_dir

    return cache_dir() / "blas"


def _candidates() -> list[Path]:
    arch = platform.machine() or "x86_64"
    dirs = [f"/usr/lib/{arch}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/opt/OpenBLAS/lib"]
    out: list[Path] = []
    for d in dirs:
        # pthread build first: the OpenMP build can clash with another libgomp in the process
        for sub, name in [("openblas-pthread", "libopenblas.so.0"), ("", "libopenblasp.so.0"),
                          ("openblas-openmp", "libopenblas.so.0"), ("", "libopenblas.so.0"),
                          ("", "libopenblaso.so.0")]:
            out.append(Path(d, sub, name) if sub else Path(d, name))
    return out


def system_openblas() -> Path | None:
    """The first system OpenBLAS found in the usual library folders, or None (always None on macOS)."""
    if sys.platform != "linux":
        return None
    return next((p for p in _candidates() if p.is_file()), None)


def pip_openblas_source() -> Path | None:
    """The prefixed library inside the installed scipy-openblas32 wheel, or None if it is not installed."""
    spec = importlib.util.find_spec("scipy_openblas32")  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        libs = sorted(Path(loc, "lib").glob("libscipy_openblas*.so"))
        if libs:
            return libs[0]
    return None


def pip_openblas() -> Path | None:
    """The pip OpenBLAS with plain symbol names, made on first use in ~/.cache/autoloop/blas/ (keyed by the
    wheel library's sha256), or None when scipy-openblas32 is not installed or this is not Linux.
    Raises BlasError if the library cannot be rewritten."""
    if sys.platform != "linux":
        return None
    src = pip_openblas_source()
    if src is None:
        return None
    try:
        version = importlib.metadata.version(PIP_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    dst = _cache_root() / f"{PIP_PACKAGE}-{version}-{h.hexdigest()[:12]}" / PIP_LIB_NAME
    if dst.is_file():
        return dst
    from autoloop.mlx.elfrename import ElfError, unprefix

    try:
        unprefix(src, dst, b"scipy_")
    except (ElfError, OSError) as e:
        raise BlasError(f"could not write a plain-named copy of {src} ({e})") from None
    return dst


def is_pip_copy(path: str | Path | None) -> bool:
    return path is not None and Path(path).name == PIP_LIB_NAME


# ------------------------------------------------------------------------------------------------ choosing

@dataclass(frozen=True)
class Choice:
    """What a child should get: `lib` to preload (None = MLX's own BLAS), where it comes from, and, for the
    reference BLAS, why there is no fast one and the fix."""
    source: str  # "pip" | "system" | "path" | "reference" | "accelerate"
    lib: Path | None = None
    why: str = ""
    fix: str = ""
    measured: dict = field(default_factory=dict)  # GFLOP/s by source, from the measurement behind the choice
    gflops: float | None = None  # the chosen library's, when measured by this choice (not read from the cache)


_chosen: dict[tuple, Choice] = {}


def choose() -> Choice:
    """The BLAS children should use, per AUTOLOOP_BLAS (see the module doc). Every candidate is verified in a
    child (preload took effect, matmul right) and, when pip and system both exist, the faster one wins; the
    outcome is cached on disk while the libraries stay the same. Raises FileNotFoundError for an AUTOLOOP_BLAS
    path that does not exist."""
    mode = os.environ.get("AUTOLOOP_BLAS", "").strip()
    key = (mode, os.environ.get("AUTOLOOP_CACHE_DIR", ""), sys.platform)
    if key not in _chosen:
        _chosen[key] = _choose(mode)
    return _chosen[key]


def env_problem() -> str | None:
    """One line if AUTOLOOP_BLAS names a library file that does not exist (targets refuse to start), else None."""
    mode = os.environ.get("AUTOLOOP_BLAS", "").strip()
    if mode.lower() in _OFF | {"", "auto", "pip", "system"} or Path(mode).expanduser().is_file():
        return None
    return (f"AUTOLOOP_BLAS={mode}: no such file; point it at libopenblas.so.0, or set "
            f"AUTOLOOP_BLAS=auto|pip|system|none")


def _choose(mode: str) -> Choice:
    low = mode.lower()
    if sys.platform == "darwin":
        return Choice("accelerate")
    if low in _OFF:
        return Choice("reference", why=f"AUTOLOOP_BLAS={mode} asks for it", fix="unset AUTOLOOP_BLAS")
    if low not in ("", "auto", "pip", "system"):
        problem = env_problem()
        if problem:
            raise FileNotFoundError(problem)
        p = Path(mode).expanduser()
        return Choice("pip" if is_pip_copy(p) else "path", p.absolute())  # as told (check() still verifies)
    pip_lib, pip_problem = None, ""
    if low != "system":
        try:
            pip_lib = pip_openblas()
        except BlasError as e:
            pip_problem = str(e)
    sys_lib = system_openblas() if low != "pip" else None
    cands = {name: lib for name, lib in (("pip", pip_lib), ("system", sys_lib)) if lib}
    if cands:
        results, fresh = _measure(cands)
        good = [name for name in cands if not results[name]["problem"]]
        if good:
            best = max(good, key=lambda name: results[name]["gflops"])
            return Choice(best, cands[best], measured={n: r["gflops"] for n, r in results.items()},
                          gflops=results[best]["gflops"] if fresh else None)
        why = "; ".join(f"the {n} OpenBLAS ({cands[n]}) is unusable: {results[n]['problem']}" for n in cands)
        return Choice("reference", why=why, fix=f"{APT_FIX} and AUTOLOOP_BLAS=system, or "
                                                f"AUTOLOOP_BLAS=/path/to/a working libopenblas.so.0")
    if low == "system":
        return Choice("reference", why="AUTOLOOP_BLAS=system and no system OpenBLAS is installed",
                      fix=f"{APT_FIX}, or unset AUTOLOOP_BLAS to use the pip one")
    if low == "pip":
        return Choice("reference", why=pip_problem or f"AUTOLOOP_BLAS=pip and {PIP_PACKAGE} is not installed",
                      fix=f"pip install {PIP_PACKAGE}, or unset AUTOLOOP_BLAS")
    if pip_problem:
        return Choice("reference", why=pip_problem,
                      fix=f"{APT_FIX} (or AUTOLOOP_BLAS=/path/to/libopenblas.so.0); if the cache folder is not "
                          f"writable, point AUTOLOOP_CACHE_DIR at one that is")
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        return Choice("reference", why=f"no OpenBLAS wheel for {sys.platform} {platform.machine()}",
                      fix="install OpenBLAS and set AUTOLOOP_BLAS=/path/to/libopenblas.so.0")
    return Choice("reference", why=f"{PIP_PACKAGE} is not installed and there is no system OpenBLAS",
                  fix=f"pip install {PIP_PACKAGE} (or {APT_FIX})")


def problem_with(result: dict) -> str:
    """'' if a probe() result shows MLX on a working OpenBLAS, else what is wrong, in a few words."""
    if result.get("error"):
        return f"a child with it preloaded failed ({result['error']})"
    if result.get("blas") != "openblas":
        return "its LD_PRELOAD did not take effect in a child"
    if not result.get("rel_err", 1.0) < 1e-4:
        return f"it computes wrong matmuls (relative error {result.get('rel_err')})"
    return ""


def _measure(cands: dict[str, Path]) -> tuple[dict[str, dict], bool]:
    """{name: {"gflops", "problem"}} for each candidate, from the disk cache or measured now in children
    (interleaved, best of two when there are two, so background load hits both alike); and whether measured now.
    Only outcomes where every candidate works are cached: a failure is looked at again next time."""
    try:  # not `import mlx.core`: this process may still want to load a BLAS before it
        mlx_version = importlib.metadata.version("mlx")
    except importlib.metadata.PackageNotFoundError:
        mlx_version = "?"
    ident = []
    for name, lib in sorted(cands.items()):
        st = lib.resolve().stat()
        ident.append(f"{name}={lib.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    key = "|".join([*ident, f"mlx {mlx_version}", f"cpus {os.cpu_count()}"])
    cache = _cache_root() / "choice.json"
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        saved = {}
    if key in saved:
        return saved[key]["results"], False
    results = {name: {"gflops": 0.0, "problem": ""} for name in cands}
    for _ in range(2 if len(cands) > 1 else 1):
        for name, lib in cands.items():
            if results[name]["problem"]:
                continue
            r = probe(lib)
            results[name]["problem"] = problem_with(r)
            results[name]["gflops"] = max(results[name]["gflops"], r.get("gflops") or 0.0)
    if not any(r["problem"] for r in results.values()):
        saved[key] = {"results": results, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".choice.", dir=cache.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(saved, f, indent=1)
            os.replace(tmp, cache)
        except OSError:
            pass
    return results, True


def find_openblas() -> Path | None:
    """The library children get in LD_PRELOAD (see choose()), or None for MLX's own BLAS."""
    return choose().lib


def _pin(choice: Choice) -> str:
    return str(choice.lib) if choice.lib else "none"


def blas_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to add to a child's environment so its MLX uses the chosen BLAS: LD_PRELOAD (the library
    first, then what `base` already preloads) and AUTOLOOP_BLAS pinned to the choice. {} on macOS.
    `base` defaults to os.environ."""
    choice = choose()
    if choice.source == "accelerate":
        return {}
    env = {"AUTOLOOP_BLAS": _pin(choice)}
    if choice.lib is None:
        return env
    current = (os.environ if base is None else base).get("LD_PRELOAD", "")
    parts = [p for p in current.replace(" ", ":").split(":") if p]
    if not any(same_file(p, choice.lib) for p in parts):
        env["LD_PRELOAD"] = ":".join([str(choice.lib), *parts])
    return env


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def use_openblas_in_process() -> Path | None:
    """Make this process's MLX use the chosen BLAS without a restart, if MLX is not imported yet.

    Loading the library with RTLD_GLOBAL puts its cblas_* symbols in the global lookup scope, which the dynamic
    linker searches before libmlx's own dependencies when `import mlx.core` loads them later: the same effect
    as LD_PRELOAD. Returns the library now in use (also when it was preloaded already), or None (macOS, no fast
    BLAS, or MLX already imported — then only a child started with blas_env() can switch)."""
    if sys.platform == "darwin" or "mlx.core" in sys.modules:
        return None
    try:
        lib = choose().lib
    except FileNotFoundError:
        return None
    if lib is None:
        return None
    if not any(same_file(p, lib) for p in os.environ.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p):
        import ctypes

        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    return lib


# ------------------------------------------------------------------------------------------------ measuring

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


def _probe_main(n: int = 1024, max_seconds: float = 1.0) -> None:
    """Child side of probe(): which BLAS MLX got, whether its matmul is right (against numpy), how fast."""
    import numpy as np

    import mlx.core as mx

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((67, 45), dtype=np.float32), rng.standard_normal((45, 31), dtype=np.float32)
    got = np.array(mx.array(a) @ mx.array(b))
    err = float(np.abs(got - a @ b).max() / np.abs(a @ b).max())
    kind, path = loaded_blas()
    print(json.dumps({"blas": kind, "path": path, "rel_err": err, "gflops": round(matmul_gflops(n, max_seconds), 2),
                      "n": n, "mlx_version": mx.__version__}))


def probe(lib: Path | None, n: int = 1024, max_seconds: float = 1.0, timeout: float = 300,
          env: dict[str, str] | None = None) -> dict:
    """Start a child with `lib` preloaded (None: MLX's own BLAS) and return what it measured: blas, path,
    rel_err (float32 matmul against numpy) and gflops. On failure: {"error": "...", "gflops": None}."""
    e = {k: v for k, v in (os.environ if env is None else env).items() if k != "LD_PRELOAD"}
    e["AUTOLOOP_BLAS"] = str(lib) if lib else "none"
    if lib:
        e["LD_PRELOAD"] = str(lib)
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {root!r}); from autoloop.mlx.blas import _probe_main; "
            f"_probe_main({int(n)}, {float(max_seconds)})")
    try:
        p = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {timeout:.0f} s", "gflops": None}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        return {"error": last[:200], "gflops": None}
    return json.loads(lines[-1])


def describe_lib(source: str, lib: Path | None) -> str:
    """A short human name for a BLAS choice."""
    if source == "accelerate":
        return "Accelerate (macOS)"
    if source == "reference":
        return "MLX's bundled reference BLAS"
    if source == "pip" or is_pip_copy(lib):
        try:
            v = importlib.metadata.version(PIP_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            v = "?"
        return f"OpenBLAS from pip ({PIP_PACKAGE} {v}) {lib}"
    return f"{'system ' if source == 'system' else ''}OpenBLAS {lib}"


def check(measure: bool = True) -> dict:
    """The run-start check: which BLAS children get and its GFLOP/s measured in a real child (~1 s; ~3 s on the
    reference BLAS), plus `warnings`: one line with the GFLOP/s and the fix whenever MLX ends up on its
    reference BLAS, also when a library given by path did not take effect or computes wrong results."""
    try:
        choice = choose()
    except FileNotFoundError as e:
        choice = Choice("reference", why=str(e).split(";")[0], fix="fix or unset AUTOLOOP_BLAS")
    info: dict = {"blas": describe_lib(choice.source, choice.lib), "blas_source": choice.source}
    if choice.source == "accelerate" or not measure:
        if choice.source == "reference":
            info["warnings"] = [warning(None, choice.why, choice.fix)]
        return info
    why, fix, gflops = choice.why, choice.fix, None
    if choice.lib is not None:
        got = {"gflops": choice.gflops, "blas": "openblas", "rel_err": 0.0} if choice.gflops else probe(choice.lib)
        problem = problem_with(got)
        if not problem:
            info["blas_gflops"] = got["gflops"]
            return info
        why = f"{choice.lib}: {problem}"
        fix = f"AUTOLOOP_BLAS=auto (or none), or {APT_FIX} and AUTOLOOP_BLAS=system"
        gflops = got.get("gflops") if got.get("blas") == "mlx-bundled" else None
    info.update(blas=describe_lib("reference", None), blas_source="reference",
                blas_gflops=gflops if gflops else probe(None).get("gflops"))
    info["warnings"] = [warning(info["blas_gflops"], why, fix)]
    return info


def warning(gflops: float | None, why: str, fix: str) -> str:
    """The one line shown at run start (and by `autoloop doctor`) when MLX is on its reference BLAS."""
    rate = f"{gflops:.1f} GFLOP/s" if gflops else "rate not measured"
    return (f"warning: slow BLAS: MLX is on its bundled reference BLAS ({rate}, {MATMUL}; OpenBLAS is ~20-60x "
            f"faster) because {why}. Fix: {fix}")
