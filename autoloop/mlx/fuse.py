"""Merge LoRA adapters into their base model: a standalone mlx-lm folder anyone can load without autoloop.

Why: the loop keeps small adapters per checkpoint; the model a user ships is the best one fused. mlx-lm's LoRA
layers know how to fold themselves into a plain Linear (`fuse()`); we use that, and its `save` for the folder
layout. The output is written beside its destination and renamed, so a failed fuse leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from autoloop.mlx.models import ModelError, resolve_model


def fuse(model_path: str | Path, adapter_path: str | Path, out_dir: str | Path, dequantize: bool = False) -> Path:
    """Write base model + adapters (adapters.safetensors, adapter_config.json) as one mlx-lm model folder at
    out_dir, which must not exist or be empty. `dequantize` also turns quantised base layers into float ones."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load, save

    adapter_dir = Path(adapter_path)
    for f in ("adapters.safetensors", "adapter_config.json"):
        if not (adapter_dir / f).is_file():
            raise ModelError(f"{adapter_dir}: no {f}; --adapter wants an mlx-lm adapter folder")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: already exists and is not empty; choose a new --out folder")
    base = resolve_model(str(model_path))
    model, tokenizer, config = load(str(base), adapter_path=str(adapter_dir), return_config=True)
    fused = [(name, m.fuse(dequantize=dequantize)) for name, m in model.named_modules() if hasattr(m, "fuse")]
    if not fused:
        raise ModelError(f"{adapter_dir}: no LoRA layers were applied to {base}; adapter and model do not match")
    model.update_modules(tree_unflatten(fused))
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save(tmp, str(base), model, tokenizer, config, donate_model=False)
        digest = hashlib.sha256((adapter_dir / "adapters.safetensors").read_bytes()).hexdigest()
        provenance = {"base_model": str(base), "adapter_path": str(adapter_dir.resolve()),
                      "adapters_sha256": digest, "fused_layers": len(fused), "dequantized": dequantize}
        (tmp / "autoloop_fused.json").write_text(json.dumps(provenance, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
