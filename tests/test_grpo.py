"""GRPO on a tiny randomly initialised llama: log-probs, masks, gradients, learning, deadline, resume."""

import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from mlx.utils import tree_flatten

from autoloop.mlx import grpo
from autoloop.mlx.lora import adapter_weights, adapters_disabled, apply_lora, load_adapter, save_adapter
from autoloop.mlx.tiny import tiny_llama, tiny_tokenizer

LETTERS = set("abcdefghijklmnopqrstuvwxyz")


@pytest.fixture
def tok():
    return tiny_tokenizer()


def lora_model(seed=0, rank=8):
    m = tiny_llama(seed=seed)
    cfg = apply_lora(m, rank=rank, scale=20.0)
    return m, cfg


def letters_reward(texts, prompts):
    """Favours lower-case letter tokens (~10% of the tiny vocab at random init)."""
    return [sum(ch in LETTERS for ch in t) / 16.0 for t in texts]


def test_sampled_logprobs_match_teacher_forced(tok):
    m, _ = lora_model()
    prompt = grpo.encode_prompt(tok, "check the log-probs")
    mx.random.seed(3)
    rolls = grpo.sample_groups(m, tok, [prompt], group_size=4, max_tokens=10)
    comps = [r.token_ids for r in rolls]
    full, mask = grpo.completion_logprobs_full(m, prompt, comps)
    shared, mask2 = grpo.completion_logprobs(m, prompt, comps)
    old = mx.array([r.logprobs + [0.0] * (full.shape[1] - len(r.logprobs)) for r in rolls])
    assert mask.sum().item() == sum(len(c) for c in comps) > 0
    assert mx.max(mx.abs((old - full) * mask)).item() < 1e-4
    assert mx.max(mx.abs((shared - full) * mask)).item() < 1e-4
    assert mx.array_equal(mask, mask2)


def test_mask_covers_exactly_the_completion_tokens(tok):
    m, _ = lora_model()
    prompt = [1, 87, 85, 71, 84]
    comps = [[40, 41, 2], [50], [60, 61, 62, 63]]  # lengths 3, 1, 4 (first ends with EOS id 2)
    logp, mask = grpo.completion_logprobs(m, prompt, comps)
    assert mask.shape == (3, 4)
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    # each masked entry is log p(completion[j] | prompt + completion[:j]), computed one row at a time
    for i, c in enumerate(comps):
        seq = mx.array([prompt + c])
        lsm = nn.log_softmax(m(seq[:, :-1]).astype(mx.float32), axis=-1)[0]
        for j, t in enumerate(c):
            want = lsm[len(prompt) - 1 + j, t].item()
            assert abs(logp[i, j].item() - want) < 1e-4, (i, j)
    # the loss is zero off the mask whatever the padding holds
    tl = grpo.clipped_token_loss(logp, logp + 0.3, mx.array([1.0, -1.0, 0.5]), mask, 0.2, 0.2)
    assert mx.all((tl == 0) | (mask == 1)).item()


def test_stopped_completion_keeps_eos_and_its_logprob(tok):
    m, _ = lora_model()
    tok.eos_token_ids = set(range(3, 300)) | {2}  # almost any token stops: first token is a stop token
    mx.random.seed(0)
    rolls = grpo.sample_groups(m, tok, [grpo.encode_prompt(tok, "x")], group_size=4, max_tokens=8)
    stopped = [r for r in rolls if r.stopped]
    assert stopped, "expected at least one completion to stop on a stop token"
    for r in stopped:
        assert len(r.token_ids) == len(r.logprobs) >= 1
        assert r.token_ids[-1] in tok.eos_token_ids
        assert r.text == tok.decode(r.token_ids[:-1])  # reward text excludes the EOS


def test_group_advantages_and_normalisation():
    adv = grpo.group_advantages([1.0, 0.0, 0.0, 1.0], eps=0.0)
    s = (1 / 3) ** 0.5  # sample std of [1,0,0,1] = sqrt(1/3)
    assert adv == pytest.approx([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    assert grpo.group_advantages([3.0, 1.0], scale_by_std=False) == [1.0, -1.0]
    lens = [[2, 4], [1]]
    for lt, total in (("grpo", 1.0), ("dapo", 1.0), ("dr_grpo", 7 / (3 * 10))):
        cfg = grpo.GRPOConfig(loss_type=lt, max_completion_tokens=10)
        w = grpo._seq_weights(lens, cfg)
        assert sum(l * x for g, wg in zip(lens, w) for l, x in zip(g, wg)) == pytest.approx(total)
    assert grpo.GRPOConfig(loss_type="dapo").eps_high == 0.28
    with pytest.raises(ValueError, match="loss_type"):
        grpo.GRPOConfig(loss_type="ppo")


def _grads(m, prompt, comps, adv):
    logp0, _ = grpo.completion_logprobs(m, prompt, comps)
    old = mx.stop_gradient(logp0)

    def loss(mdl):
        lp, mask = grpo.completion_logprobs(mdl, prompt, comps)
        return grpo.clipped_token_loss(lp, old, mx.array(adv), mask, 0.2, 0.2).sum()

    return nn.value_and_grad(m, loss)(m)[1]


def test_gradients_reach_every_lora_parameter(tok):
    m, _ = lora_model()
    prompt = grpo.encode_prompt(tok, "gradients")
    comps = [[40, 41, 42, 2], [50, 51], [60, 61, 62]]
    adv = [1.0, -1.0, 0.3]
    g = dict(tree_flatten(_grads(m, prompt, comps, adv)))
    assert len(g) == 2 * 7 * 2  # lora_a, lora_b x 7 projections x 2 layers
    # LoRA starts with B = 0, so only the B matrices get gradient at step 0 ...
    assert all(mx.abs(v).max().item() > 0 for k, v in g.items() if k.endswith("lora_b"))
    opt = optim.Adam(learning_rate=1e-2)
    opt.update(m, _grads(m, prompt, comps, adv))
    mx.eval(m.parameters())
    # ... and after one update every A and B has a non-zero gradient.
    g = dict(tree_flatten(_grads(m, prompt, comps, adv)))
    zero = [k for k, v in g.items() if mx.abs(v).max().item() == 0]
    assert not zero, zero


def test_reward_rises_and_adapter_changes(tok):
    m, _ = lora_model(seed=1)
    before = {k: mx.array(v) for k, v in adapter_weights(m).items()}
    cfg = grpo.GRPOConfig(group_size=8, prompts_per_step=2, max_completion_tokens=16, seed=0,
                          max_steps=20, loss_type="grpo")
    stats = grpo.train_grpo(m, tok, ["one", "two", "three", "four"], letters_reward,
                            optim.Adam(learning_rate=2e-2), cfg, deadline=time.time() + 120)
    r = stats["rewards"]
    assert stats["steps"] >= 10 and stats["shared_prefix"] is True
    first, last = sum(r[:3]) / 3, sum(r[-3:]) / 3
    assert last > first + 0.15, r
    after = adapter_weights(m)
    assert any(not mx.array_equal(before[k], after[k]) for k in before)


def test_zero_variance_groups_are_skipped(tok):
    m, _ = lora_model()
    before = {k: mx.array(v) for k, v in adapter_weights(m).items()}
    cfg = grpo.GRPOConfig(group_size=4, prompts_per_step=2, max_completion_tokens=4, max_steps=2)
    stats = grpo.train_grpo(m, tok, ["a", "b"], lambda t, p: [1.0] * len(t),
                            optim.Adam(learning_rate=1e-2), cfg, deadline=time.time() + 60)
    assert stats["skipped_groups"] == stats["groups"] == 4 and stats["steps"] == 0
    assert all(mx.array_equal(before[k], v) for k, v in adapter_weights(m).items())


@pytest.mark.parametrize("loss_type", ["dr_grpo", "dapo"])
def test_loss_variants_and_kl_train(tok, loss_type):
    m, _ = lora_model()
    cfg = grpo.GRPOConfig(group_size=4, max_completion_tokens=8, max_steps=2, beta=0.05, loss_type=loss_type)
    stats = grpo.train_grpo(m, tok, ["p"], letters_reward, optim.Adam(learning_rate=1e-2), cfg,
                            deadline=time.time() + 60)
    assert stats["batches"] == 2 and all(l is None or l == l for l in stats["losses"])


def test_reference_is_base_model_with_adapters_off(tok):
    base = tiny_llama(seed=0)
    x = mx.array([[1, 5, 9, 33]])
    want = base(x)
    m, _ = lora_model(seed=0)
    m.load_weights([(k, mx.random.normal(v.shape) * 0.1) for k, v in adapter_weights(m).items()], strict=False)
    assert mx.max(mx.abs(m(x) - want)).item() > 1e-3
    with adapters_disabled(m):
        assert mx.max(mx.abs(m(x) - want)).item() < 1e-5
    assert mx.max(mx.abs(m(x) - want)).item() > 1e-3  # scales restored


def test_deadline_is_respected(tok):
    m, _ = lora_model()
    cfg = grpo.GRPOConfig(group_size=8, max_completion_tokens=32)
    t0 = time.time()
    stats = grpo.train_grpo(m, tok, ["a", "b", "c"], letters_reward, optim.Adam(learning_rate=1e-3),
                            cfg, deadline=t0 + 1.5)
    assert time.time() - t0 < 1.5 + 0.5
    assert stats["batches"] >= 1 and stats["stopped_by"] == "deadline"


def test_resume_continues_exactly(tok, tmp_path):
    sched = optim.cosine_decay(1e-2, 10)
    cfg = dict(group_size=4, max_completion_tokens=8, seed=5)
    prompts = ["alpha", "beta", "gamma"]
    a, acfg = lora_model(seed=2)
    oa = optim.Adam(learning_rate=sched)
    grpo.train_grpo(a, tok, prompts, letters_reward, oa, grpo.GRPOConfig(max_steps=2, **cfg), time.time() + 60)
    save_adapter(a, oa, tmp_path / "ck", acfg, step=2)
    grpo.train_grpo(a, tok, prompts, letters_reward, oa,
                    grpo.GRPOConfig(max_steps=1, start_step=2, **cfg), time.time() + 60)
    b = tiny_llama(seed=2)
    ob = optim.Adam(learning_rate=sched)
    state = load_adapter(b, ob, tmp_path / "ck")
    assert state["step"] == 2
    grpo.train_grpo(b, tok, prompts, letters_reward, ob,
                    grpo.GRPOConfig(max_steps=1, start_step=state["step"], **cfg), time.time() + 60)
    wa, wb = adapter_weights(a), adapter_weights(b)
    assert all(mx.array_equal(wa[k], wb[k]).item() for k in wa)
    assert oa.state["step"].item() == ob.state["step"].item() >= 2  # real updates happened


def test_overlong_penalty_ramps_and_teaches_shorter_replies(tok):
    """DAPO's soft overlong punishment: zero before the ramp, linear in it, the whole penalty at the cap; with a
    task reward that is the same for every reply, the penalty alone makes replies shorter."""
    cfg = grpo.GRPOConfig(max_completion_tokens=10, overlong_buffer=4, overlong_penalty=0.5)
    assert [grpo.overlong_penalty(n, True, cfg) for n in (5, 6, 7, 8, 10)] == [0.0, 0.0, -0.125, -0.25, -0.5]
    assert grpo.overlong_penalty(3, False, cfg) == -0.5  # not stopped: cut at the cap, whatever its length
    with pytest.raises(ValueError, match="overlong_buffer"):
        grpo.GRPOConfig(max_completion_tokens=10, overlong_buffer=10)
    m, _ = lora_model(seed=2)
    eos = next(iter(grpo._eos_ids(tok)))
    prompt = grpo.encode_prompt(tok, "stop")

    def mean_len() -> float:
        mx.random.seed(123)
        rolls = grpo.sample_groups(m, tok, [prompt], group_size=32, max_tokens=12)
        return sum(len(r.token_ids) for r in rolls) / len(rolls)

    before = mean_len()
    cfg = grpo.GRPOConfig(group_size=8, prompts_per_step=2, max_completion_tokens=12, overlong_buffer=11,
                          max_steps=25, seed=0)
    stats = grpo.train_grpo(m, tok, ["stop"], lambda t, p: [1.0] * len(t), optim.Adam(learning_rate=3e-2), cfg,
                            deadline=time.time() + 120)
    assert stats["rewards"] == [1.0] * stats["batches"]  # the curve is the task reward, the penalty apart
    assert len(stats["overlong_share"]) == len(stats["capped_share"]) == stats["batches"] and stats["steps"] > 0
    after = mean_len()
    assert after < before - 2, (before, after, eos)
