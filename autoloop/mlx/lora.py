"""LoRA adapters in mlx-lm's format, plus the optimizer/RNG state mlx-lm does not save.

Why: checkpoints must load with `mlx_lm.load(..., adapter_path=...)` and
`mlx_lm.generate --adapter-path`, and a resumed cycle must continue exactly where the
previous one stopped (same Adam moments, same step count and LR-schedule position,
same random stream). So a checkpoint folder holds:

- adapters.safetensors, adapter_config.json   (mlx-lm's own format)
- optimizer.safetensors                       (tree_flatten(optimizer.state) + "__rng__.key")
- trainer_state.json                          (step, seeds, lr position, caller's extras)

MLX offers no setter for the global random key (only `mx.random.seed(int)`), so the
saved key is a record; exact resumption instead comes from the trainers reseeding
from (seed, step) at every step.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

ALL_PROJECTIONS = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)
_RNG_KEY = "__rng__.key"


def apply_lora(model: nn.Module, rank: int = 8, scale: float = 20.0, dropout: float = 0.0,
               num_layers: int = -1, keys=ALL_PROJECTIONS) -> dict:
    """Freeze `model` and wrap the attention AND MLP projections of the last
    `num_layers` blocks (-1 = all) in LoRA layers, in place.

    Returns the mlx-lm adapter config (fine_tune_type, num_layers, lora_parameters)
    that `save_adapter` writes to adapter_config.json.
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    n = len(model.layers) if num_layers is None or num_layers < 0 else min(num_layers, len(model.layers))
    params = {"rank": int(rank), "scale": float(scale), "dropout": float(dropout), "keys": list(keys)}
    model.freeze()
    linear_to_lora_layers(model, n, params)
    found = {k for k, _ in tree_flatten(model.trainable_parameters())}
    if not found:
        raise ValueError(f"apply_lora: none of the keys {list(keys)} name a linear layer of this model")
    return {"fine_tune_type": "lora", "num_layers": n, "lora_parameters": params}


def lora_modules(model: nn.Module) -> list:
    """All modules that carry LoRA weights (have lora_a/lora_b and a scale)."""
    return [m for _, m in model.named_modules() if "lora_a" in m and "lora_b" in m]


@contextmanager
def adapters_disabled(model: nn.Module):
    """Temporarily set every LoRA scale to 0: the model then *is* the base model.

    Why: the KL reference of GRPO is the base model; this avoids a second model copy.
    Not for use inside mx.compile'd functions (the scale is a Python float).
    """
    mods = lora_modules(model)
    saved = [m.scale for m in mods]
    try:
        for m in mods:
            m.scale = 0.0
        yield model
    finally:
        for m, s in zip(mods, saved):
            m.scale = s


def adapter_weights(model: nn.Module) -> dict:
    """Flat name -> array of the trainable (LoRA) parameters."""
    return dict(tree_flatten(model.trainable_parameters()))


def save_adapter(model: nn.Module, optimizer, out_dir, config: dict, step: int,
                 rng_state=None, extra: dict | None = None) -> Path:
    """Write an mlx-lm compatible adapter folder plus optimizer, RNG and trainer state.

    `config` is the dict returned by `apply_lora`, optionally with more training
    settings (they land in adapter_config.json, as mlx-lm does). `rng_state` defaults
    to the current `mx.random.state`. `extra` goes into trainer_state.json as is.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key in ("fine_tune_type", "num_layers", "lora_parameters"):
        if key not in config:
            raise ValueError(f"save_adapter: config lacks {key!r}; pass the dict apply_lora returned")
    weights = adapter_weights(model)
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))
    state = dict(tree_flatten(optimizer.state)) if optimizer is not None else {}
    rng = rng_state if rng_state is not None else mx.random.state[0]
    state[_RNG_KEY] = rng if isinstance(rng, mx.array) else mx.array(rng)
    mx.save_safetensors(str(out / "optimizer.safetensors"), state)
    lr = state.get("learning_rate")
    trainer = {
        "step": int(step),
        "optimizer_step": int(state["step"].item()) if "step" in state else 0,
        "learning_rate": float(lr.item()) if lr is not None else None,
        **(extra or {}),
    }
    (out / "trainer_state.json").write_text(json.dumps(trainer, indent=2, default=str))
    return out


def load_adapter(model: nn.Module, optimizer, adapter_dir) -> dict:
    """Restore adapter weights (applying LoRA first if `model` has none) and optimizer
    state (Adam moments, step, LR-schedule position) from `adapter_dir`; return
    trainer_state.json (pass its "step" as the trainer's start_step).

    The optimizer must be the same kind as the saved one (same state keys).
    """
    d = Path(adapter_dir)
    if not (d / "adapters.safetensors").exists():
        raise FileNotFoundError(f"{d}: no adapters.safetensors (not an adapter folder)")
    cfg = json.loads((d / "adapter_config.json").read_text())
    if not lora_modules(model):
        lp = cfg["lora_parameters"]
        apply_lora(model, rank=lp["rank"], scale=lp["scale"], dropout=lp.get("dropout", 0.0),
                   num_layers=cfg["num_layers"], keys=lp.get("keys") or ALL_PROJECTIONS)
    weights = mx.load(str(d / "adapters.safetensors"))
    have = adapter_weights(model)
    missing = sorted(set(have) - set(weights))
    if missing:
        raise ValueError(f"{d}: adapter lacks {len(missing)} LoRA tensors, e.g. {missing[0]}")
    model.load_weights(list(weights.items()), strict=False)
    opt_path = d / "optimizer.safetensors"
    if opt_path.exists():
        flat = mx.load(str(opt_path))
        flat.pop(_RNG_KEY, None)
        if optimizer is not None and flat:
            optimizer.state = tree_unflatten(list(flat.items()))
    mx.eval(model.parameters())
    state_path = d / "trainer_state.json"
    return json.loads(state_path.read_text()) if state_path.exists() else {"step": 0}
