"""The BLAS MLX gets on Linux CPU: the pip OpenBLAS made loadable, the choice, the warning, `autoloop doctor`.

Real files and child processes throughout: the scipy-openblas32 wheel's library is rewritten for real and
preloaded into real children that run MLX matmuls; the run-start warning is read from a real `autoloop run`.
AUTOLOOP_BLAS forces each choice (pip hides the system OpenBLAS; none forces the reference BLAS).
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from pathlib import Path

import pytest

from autoloop.mlx import blas
from autoloop.mlx import elfrename as E

from conftest import ROOT, autoloop, sql

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the BLAS choice is a Linux matter")
needs_pip_blas = pytest.mark.skipif(blas.pip_openblas_source() is None, reason="pip install scipy-openblas32")
TARGET = str(Path(__file__).resolve().parent / "targets" / "blas_target.py")
WARNING = "warning: slow BLAS"


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    monkeypatch.setattr(blas, "_chosen", {})


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AUTOLOOP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def libmlx() -> Path:
    spec = importlib.util.find_spec("mlx")
    return Path(next(iter(spec.submodule_search_locations))) / "lib" / "libmlx.so"


# ------------------------------------------------------------------------------------------- the rewritten copy

@needs_pip_blas
def test_copy_exports_every_blas_and_lapack_name_mlx_imports(tmp_path):
    src, dst = blas.pip_openblas_source(), tmp_path / "libopenblas_pip.so"
    renamed = E.unprefix(src, dst)
    assert renamed > 1000
    original = E.exported(src, [f"scipy_{n}" for n in E.imported(libmlx())])
    wanted = [n.removeprefix("scipy_") for n, ok in original.items() if ok]
    assert {"cblas_sgemm", "cblas_dgemm", "sgetrf_"} <= set(wanted)  # BLAS and LAPACK, as libmlx imports them
    assert all(E.exported(dst, wanted).values()), E.exported(dst, wanted)
    assert E.exported(dst, ["scipy_cblas_sgemm", "cblas_sgemm_nonexistent"]) == {
        "scipy_cblas_sgemm": False, "cblas_sgemm_nonexistent": False}
    assert E.soname(src) == "libscipy_openblas.so" and E.soname(dst) == "scipy_openblas.so"
    # the rebuilt hash table finds every symbol where it is, as the loader will
    elf = E._Elf(bytearray(dst.read_bytes()))
    defined = [i for i in range(elf.hashed_symoffset(), elf.nsyms) if elf.sym(i)[3] != E.SHN_UNDEF]
    for i in random.Random(0).sample(defined, 150) + defined[-3:]:
        assert elf.lookup(elf.string(elf.sym(i)[0])) == i
    assert os.access(dst, os.X_OK) and not list(tmp_path.glob(".*"))  # no temp file left behind


def test_unprefix_refuses_what_it_cannot_rewrite(tmp_path):
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file at all")
    with pytest.raises(E.ElfError, match="not an ELF64"):
        E.unprefix(junk, tmp_path / "out.so")
    plain = Path(sys.executable).resolve()  # an ELF whose symbols carry no scipy_ prefix
    with pytest.raises(E.ElfError):
        E.unprefix(plain, tmp_path / "out.so")
    assert not (tmp_path / "out.so").exists()


@needs_pip_blas
def test_pip_blas_in_a_child_process_computes_right_matmuls_fast(cache):
    lib = blas.pip_openblas()
    assert lib is not None and lib.is_relative_to(cache) and lib.name == blas.PIP_LIB_NAME
    assert blas.pip_openblas() == lib  # made once, keyed by the wheel library's sha256
    fast, slow = blas.probe(lib), blas.probe(None)
    assert fast["blas"] == "openblas" and Path(fast["path"]) == lib, fast
    assert fast["rel_err"] < 1e-5, fast  # 67x45 @ 45x31 float32 through MLX, against numpy
    assert slow["blas"] == "mlx-bundled" and slow["rel_err"] < 1e-5, slow
    assert fast["gflops"] > 3 * slow["gflops"], (fast, slow)


# ------------------------------------------------------------------------------------------------ the choice

def test_blas_env_pins_the_choice_for_children(tmp_path, monkeypatch):
    lib = tmp_path / "libopenblas.so.0"
    lib.write_bytes(b"\x7fELF")  # only its existence matters here
    monkeypatch.setenv("AUTOLOOP_BLAS", str(lib))
    assert blas.blas_env({"LD_PRELOAD": ""}) == {"AUTOLOOP_BLAS": str(lib), "LD_PRELOAD": str(lib)}
    assert blas.blas_env({"LD_PRELOAD": "/x/libfoo.so"}) == {"AUTOLOOP_BLAS": str(lib),
                                                             "LD_PRELOAD": f"{lib}:/x/libfoo.so"}
    assert blas.blas_env({"LD_PRELOAD": str(lib)}) == {"AUTOLOOP_BLAS": str(lib)}  # already preloaded
    monkeypatch.setenv("AUTOLOOP_BLAS", "none")
    assert blas.blas_env({}) == {"AUTOLOOP_BLAS": "none"}
    assert blas.env_problem() is None
    monkeypatch.setenv("AUTOLOOP_BLAS", str(tmp_path / "missing.so"))
    assert "no such file" in blas.env_problem()  # what targets/sfia_grpo.py's check() refuses with
    with pytest.raises(FileNotFoundError, match="AUTOLOOP_BLAS"):
        blas.blas_env({})
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("AUTOLOOP_BLAS", str(lib))
    assert blas.blas_env({}) == {}


def test_system_openblas_wins_only_when_it_measures_faster_and_works(tmp_path, monkeypatch, cache):
    pip, system = tmp_path / "libopenblas_pip.so", tmp_path / "libopenblas.so.0"
    for f in (pip, system):
        f.write_bytes(b"\x7fELF")
    rates, broken, calls = {pip: 80.0, system: 100.0}, set(), []

    def fake_probe(lib, **kw):
        calls.append(lib)
        return {"gflops": rates[lib], "blas": "mlx-bundled" if lib in broken else "openblas", "rel_err": 0.0}

    monkeypatch.setattr(blas, "pip_openblas", lambda: pip)
    monkeypatch.setattr(blas, "system_openblas", lambda: system)
    monkeypatch.setattr(blas, "probe", fake_probe)
    monkeypatch.delenv("AUTOLOOP_BLAS", raising=False)
    c = blas.choose()
    assert (c.source, c.lib, c.measured, c.gflops) == ("system", system, {"pip": 80.0, "system": 100.0}, 100.0)
    assert len(calls) == 4  # both, twice, interleaved
    rates[pip] = 120.0
    monkeypatch.setattr(blas, "_chosen", {})
    c = blas.choose()
    assert (c.source, c.gflops) == ("system", None) and len(calls) == 4  # from the disk cache: not measured
    (cache / "blas" / "choice.json").unlink()
    monkeypatch.setattr(blas, "_chosen", {})
    assert blas.choose().lib == pip
    for mode, want in (("pip", pip), ("system", system), ("none", None)):
        monkeypatch.setenv("AUTOLOOP_BLAS", mode)
        assert blas.choose().lib == want
    # a candidate whose preload does not take is skipped, however fast; with none left, the reference BLAS
    monkeypatch.delenv("AUTOLOOP_BLAS")
    (cache / "blas" / "choice.json").unlink()
    broken.add(pip)
    monkeypatch.setattr(blas, "_chosen", {})
    assert blas.choose().lib == system
    broken.add(system)
    monkeypatch.setattr(blas, "_chosen", {})
    c = blas.choose()
    assert c.source == "reference" and c.lib is None and "did not take effect" in c.why
    assert not (cache / "blas" / "choice.json").exists()  # failures are not cached


@needs_pip_blas
def test_use_openblas_in_process_binds_before_mlx_import(cache):
    code = ("import json; from autoloop.mlx.blas import use_openblas_in_process, blas_info; "
            "lib = use_openblas_in_process(); import mlx.core; "
            "print(json.dumps([str(lib) if lib else None, blas_info(measure=False)['blas'], "
            "use_openblas_in_process()]))")
    import subprocess

    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for mode, kind in (("pip", "openblas"), ("none", "mlx-bundled")):
        env = {**base, "AUTOLOOP_BLAS": mode}
        lib, got, again = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                    text=True, check=True).stdout)
        assert got == kind and again is None  # mlx is imported now: too late to switch
        assert lib == (str(blas.pip_openblas()) if mode == "pip" else None)


# ----------------------------------------------------------------------------- loud when slow: run and doctor

def _run(runs_dir: Path, env: dict) -> tuple[str, dict]:
    p = autoloop(runs_dir, "run", TARGET, "--max-iters", "0", env=env)
    rid = json.loads(autoloop(runs_dir, "runs", "--json").stdout)[-1]["run_id"]
    rows = sql(runs_dir, f"select name, value from metrics where run_id = '{rid}' and iter = 0")
    return p.stdout + p.stderr, {r["name"]: r["value"] for r in rows}


@needs_pip_blas
def test_run_start_warns_exactly_when_children_get_the_reference_blas(runs_dir, tmp_path):
    out, comps = _run(runs_dir, {"AUTOLOOP_BLAS": "none"})
    lines = [ln for ln in out.splitlines() if WARNING in ln]
    assert len(lines) == 1 and comps["openblas"] == 0.0, out
    assert "GFLOP/s" in lines[0] and "reference BLAS" in lines[0] and "Fix: unset AUTOLOOP_BLAS" in lines[0]

    # a machine with neither OpenBLAS: the pip package hidden by an empty one, the system one by AUTOLOOP_BLAS=pip
    fake = tmp_path / "site"
    (fake / "scipy_openblas32").mkdir(parents=True)
    (fake / "scipy_openblas32" / "__init__.py").write_text("")
    env = {"AUTOLOOP_BLAS": "pip", "PYTHONPATH": f"{fake}:{ROOT}", "AUTOLOOP_CACHE_DIR": str(tmp_path / "c")}
    out, comps = _run(runs_dir, env)
    lines = [ln for ln in out.splitlines() if WARNING in ln]
    assert len(lines) == 1 and "pip install scipy-openblas32" in lines[0] and comps["openblas"] == 0.0, out

    # a library that loads but is no BLAS (libc): the preload "works", MLX stays on its own BLAS, and says so
    libc = next(ln.split()[-1] for ln in Path("/proc/self/maps").read_text().splitlines()
                if Path(ln.split()[-1]).name.startswith("libc.so") or Path(ln.split()[-1]).name.startswith("libc-"))
    out, comps = _run(runs_dir, {"AUTOLOOP_BLAS": libc})
    lines = [ln for ln in out.splitlines() if WARNING in ln]
    assert len(lines) == 1 and "did not take effect" in lines[0] and comps["openblas"] == 0.0, out

    modes = ["pip", "auto"] + (["system"] if blas.system_openblas() else [])
    for mode in modes:
        out, comps = _run(runs_dir, {"AUTOLOOP_BLAS": mode})
        assert WARNING not in out and comps["openblas"] == 1.0 and comps["rel_err"] < 1e-5, (mode, out, comps)


@needs_pip_blas
def test_doctor_prints_the_whole_environment_check(runs_dir):
    p = autoloop(runs_dir, "doctor", env={"AUTOLOOP_BLAS": "none"})
    rows = {ln.split()[1]: ln for ln in p.stdout.splitlines()[:-1]}
    assert set(rows) == {"python", "git", "duckdb", "blas", "model", "disk"}, p.stdout
    assert rows["blas"].startswith("WARN") and "slow BLAS" in rows["blas"] and "pip OpenBLAS" in rows["blas"]
    assert rows["git"].startswith("ok") and rows["duckdb"].startswith("ok") and "free" in rows["disk"]
    assert p.stdout.splitlines()[-1].startswith("1 warning(s)") or "warning(s)" in p.stdout.splitlines()[-1]
    checks = json.loads(autoloop(runs_dir, "doctor", "--json", env={"AUTOLOOP_BLAS": "pip"}).stdout)
    blas_row = next(c for c in checks if c["name"] == "blas")
    assert blas_row["status"] == "ok" and "OpenBLAS from pip" in blas_row["detail"] and "reference" in blas_row["detail"]
