"""LoRA adapters (mlx-lm format, exact resume) and SFT on a tiny randomly initialised llama."""

import json
import os
import subprocess
import sys
import time

import mlx.core as mx
import mlx.optimizers as optim
import pytest

from autoloop.mlx.lora import ALL_PROJECTIONS, adapter_weights, apply_lora, load_adapter, save_adapter
from autoloop.mlx.sft import encode_example, make_batch, reply_mask, train_sft
from autoloop.mlx.tiny import save_tiny_model, tiny_llama, tiny_tokenizer

EXAMPLES = [
    {"messages": [{"role": "user", "content": f"item {i}"},
                  {"role": "assistant", "content": '{"skills": [{"code": "PROG", "level": %d}]}' % (i % 7 + 1)}]}
    for i in range(8)
]


@pytest.fixture
def tok():
    return tiny_tokenizer()


def test_apply_lora_wraps_attention_and_mlp_in_every_layer():
    m = tiny_llama()
    cfg = apply_lora(m, rank=4)
    names = set(adapter_weights(m))
    for layer in range(2):
        for key in ALL_PROJECTIONS:
            assert f"model.layers.{layer}.{key}.lora_a" in names
            assert f"model.layers.{layer}.{key}.lora_b" in names
    assert len(names) == 2 * 2 * 7
    assert cfg["num_layers"] == 2 and cfg["lora_parameters"]["rank"] == 4
    with pytest.raises(ValueError, match="none of the keys"):
        apply_lora(tiny_llama(), keys=("mlp.nope",))


def test_reply_mask_covers_reply_and_eos_only(tok):
    ids, plen = encode_example(tok, EXAMPLES[3])
    x, plens, lens = make_batch([(ids, plen), encode_example(tok, EXAMPLES[0])])
    mask = reply_mask(plens, lens, x.shape[1] - 1)
    targets = x[0, 1:].tolist()
    covered = [t for t, on in zip(targets, mask[0].tolist()) if on]
    assert covered == ids[plen:]
    assert tok.decode(covered[:-1]) == EXAMPLES[3]["messages"][-1]["content"]
    assert covered[-1] == tok.eos_token_id
    assert sum(mask[1].tolist()) == lens[1] - plens[1]


def test_sft_loss_decreases(tok):
    m = tiny_llama(seed=1)
    apply_lora(m, rank=8)
    stats = train_sft(m, tok, EXAMPLES, optim.Adam(learning_rate=1e-2), deadline=time.time() + 60,
                      batch_size=4, max_steps=30)
    first, last = sum(stats["losses"][:3]) / 3, sum(stats["losses"][-3:]) / 3
    # LoRA cannot touch the random tied embeddings, so the tiny model plateaus near 4.6
    # (from ~5.6); a full fine-tune gets lower, but a real drop is what we check here.
    assert stats["steps"] == 30 and last < first - 0.7, stats["losses"]


def test_sft_deadline_is_respected(tok):
    m = tiny_llama()
    apply_lora(m)
    t0 = time.time()
    stats = train_sft(m, tok, EXAMPLES, optim.Adam(learning_rate=1e-3), deadline=t0 + 1.0)
    assert time.time() - t0 < 1.0 + 0.3
    assert stats["steps"] >= 2 and stats["stopped_by"] == "deadline"
    assert train_sft(m, tok, EXAMPLES, optim.Adam(learning_rate=1e-3), deadline=time.time() - 1)["steps"] == 0


def test_save_load_identical_logits_and_mlx_lm_accepts_adapter(tok, tmp_path):
    base = tiny_llama(seed=4)
    model_dir = save_tiny_model(base, tmp_path / "model")
    m = tiny_llama(seed=4)
    cfg = apply_lora(m, rank=8)
    opt = optim.Adam(learning_rate=1e-2)
    train_sft(m, tok, EXAMPLES, opt, deadline=time.time() + 60, max_steps=2)
    out = save_adapter(m, opt, tmp_path / "adapter", cfg, step=2, extra={"seed": 0})
    assert {p.name for p in out.iterdir()} >= {"adapters.safetensors", "adapter_config.json",
                                                 "optimizer.safetensors", "trainer_state.json"}
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2
    x = mx.array([[1, 60, 70, 80, 2, 1]])
    want = m(x)

    fresh = tiny_llama(seed=4)
    load_adapter(fresh, optim.Adam(learning_rate=1e-2), out)
    assert mx.array_equal(fresh(x), want).item()

    from mlx_lm import load
    loaded, _ = load(str(model_dir), adapter_path=str(out))
    assert mx.max(mx.abs(loaded(x) - want)).item() < 1e-5

    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model", str(model_dir), "--adapter-path",
                        str(out), "--prompt", "hi", "--max-tokens", "3"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_resume_restores_optimizer_state_exactly(tok, tmp_path):
    sched = optim.cosine_decay(1e-2, 20)
    a = tiny_llama(seed=7)
    cfg = apply_lora(a)
    oa = optim.Adam(learning_rate=sched)
    train_sft(a, tok, EXAMPLES, oa, deadline=time.time() + 60, max_steps=2, seed=3)
    save_adapter(a, oa, tmp_path / "ck", cfg, step=2)
    train_sft(a, tok, EXAMPLES, oa, deadline=time.time() + 60, max_steps=1, seed=3, start_step=2)

    b = tiny_llama(seed=7)
    ob = optim.Adam(learning_rate=sched)
    state = load_adapter(b, ob, tmp_path / "ck")
    assert ob.state["step"].item() == 2
    assert state["learning_rate"] == pytest.approx(sched(mx.array(1)).item())  # lr of the last update
    train_sft(b, tok, EXAMPLES, ob, deadline=time.time() + 60, max_steps=1, seed=3, start_step=state["step"])

    wa, wb = adapter_weights(a), adapter_weights(b)
    assert all(mx.array_equal(wa[k], wb[k]).item() for k in wa)
    from mlx.utils import tree_flatten
    sa, sb = dict(tree_flatten(oa.state)), dict(tree_flatten(ob.state))
    assert sa.keys() == sb.keys() and all(mx.array_equal(sa[k], sb[k]).item() for k in sa)

    # without the optimizer state the continuation differs (Adam moments restart)
    c = tiny_llama(seed=7)
    load_adapter(c, None, tmp_path / "ck")
    train_sft(c, tok, EXAMPLES, optim.Adam(learning_rate=sched), deadline=time.time() + 60, max_steps=1,
              seed=3, start_step=2)
    wc = adapter_weights(c)
    assert any(not mx.array_equal(wa[k], wc[k]).item() for k in wa)
