"""The MLX trainers and batched generation report progress through autoloop.progress (tiny llama, real
mlx-lm classes); generation driven for progress yields exactly mlx-lm's batch_generate tokens."""
from __future__ import annotations

import time

import mlx.optimizers as optim
import pytest

from autoloop import progress
from autoloop.mlx.lora import apply_lora
from autoloop.mlx.tiny import tiny_llama, tiny_tokenizer

CHATS = [[{"role": "user", "content": f"say something about {w}"}] for w in ("cats", "rain", "tea", "maps", "x")]


@pytest.fixture
def in_child(tmp_path, monkeypatch):
    """The environment the engine gives a child process in phase 'run'."""
    monkeypatch.setenv("AUTOLOOP_ITER_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOLOOP_PHASE", "run")
    monkeypatch.setenv("AUTOLOOP_PROGRESS_MIN_S", "0")
    return tmp_path


def test_generation_reports_replies_and_matches_mlx_lm_batch_generate(in_child):
    import mlx.core as mx
    from mlx_lm import batch_generate
    from mlx_lm.sample_utils import make_sampler

    from autoloop.mlx.generation import encode_chats, generate_batch_with_stats

    model, tok = tiny_llama(seed=2), tiny_tokenizer()
    texts, stats = generate_batch_with_stats(model, tok, CHATS, max_tokens=12, batch_size=2)
    mx.random.seed(0)
    prompts = encode_chats(tok, CHATS)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # ours decodes shortest first
    assert order != list(range(len(prompts)))  # so the reordering is exercised
    ref = batch_generate(model, tok, [prompts[i] for i in order], max_tokens=12, sampler=make_sampler(temp=0.0),
                         completion_batch_size=2, prefill_batch_size=2, return_token_ids=True)
    assert [texts[i] for i in order] == list(ref.texts)
    assert stats["generated_tokens"] == sum(len(t) for t in ref.token_ids)
    p = progress.read_progress(in_child, "run")
    assert (p["task"], p["done"], p["total"], p["unit"]) == ("generate", 5, 5, "replies")
    assert p["metrics"]["tokens_per_s"] > 0


def test_sft_reports_steps_loss_and_tokens_per_s(in_child):
    from autoloop.mlx.sft import train_sft

    m, tok = tiny_llama(seed=1), tiny_tokenizer()
    apply_lora(m, rank=4)
    ex = [{"messages": [{"role": "user", "content": f"q{i}"}], "reply": '{"a": %d}' % i} for i in range(4)]
    train_sft(m, tok, ex, optim.Adam(learning_rate=1e-3), deadline=time.time() + 60, batch_size=2, max_steps=3,
              start_step=7)
    p = progress.read_progress(in_child, "run")
    assert (p["task"], p["done"], p["total"], p["unit"]) == ("SFT", 3, 3, "steps")
    assert p["metrics"]["step"] == 10 and p["metrics"]["loss"] > 0 and p["metrics"]["tokens_per_s"] > 0


def test_grpo_reports_steps_mean_reward_and_time_left(in_child):
    from autoloop.mlx import grpo

    m, tok = tiny_llama(seed=0), tiny_tokenizer()
    apply_lora(m, rank=4)
    cfg = grpo.GRPOConfig(group_size=4, max_completion_tokens=6, max_steps=2)
    grpo.train_grpo(m, tok, ["p", "q"], lambda texts, owners: [len(t) / 10 for t in texts],
                    optim.Adam(learning_rate=1e-3), cfg, deadline=time.time() + 60)
    p = progress.read_progress(in_child, "run")
    assert (p["task"], p["done"], p["total"]) == ("GRPO", 2, 2)
    assert p["metrics"]["step"] == 2 and p["metrics"]["reward"] >= 0 and p["metrics"]["tokens_per_s"] > 0
    line = progress.describe(p)
    assert line.startswith("GRPO 2/2 steps (100%) · step 2") and "mean reward" in line


def test_outside_a_run_the_trainers_write_nothing(tmp_path, monkeypatch):
    from autoloop.mlx.generation import generate_batch

    monkeypatch.delenv("AUTOLOOP_ITER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert len(generate_batch(tiny_llama(seed=2), tiny_tokenizer(), CHATS[:2], max_tokens=4)) == 2
    assert not list(tmp_path.iterdir())


def test_alive_stops_ruled_out_rows_early_and_leaves_the_others_alone(in_child):
    """A row `alive` rules out leaves the batch with the tokens it had; the others decode as without it."""
    from autoloop.mlx.generation import generate_batch_with_stats

    model, tok = tiny_llama(seed=4), tiny_tokenizer()  # this tiny model starts one reply with newlines
    full, ref_stats = generate_batch_with_stats(model, tok, CHATS, max_tokens=12, batch_size=5)
    killed = {i for i, f in enumerate(full) if f.startswith("\n")}
    assert 0 < len(killed) < len(full)

    def alive(text):
        return False if text.startswith("\n") else (True if text else None)

    texts, stats = generate_batch_with_stats(model, tok, CHATS, max_tokens=12, batch_size=5, alive=alive)
    assert stats["stopped_early"] == len(killed)
    assert stats["generated_tokens"] < ref_stats["generated_tokens"]
    for i, (t, f) in enumerate(zip(texts, full)):
        assert f.startswith(t)
        assert (len(t) < len(f)) if i in killed else (t == f)
    p = progress.read_progress(in_child, "run")
    assert (p["done"], p["total"]) == (5, 5)


def test_generation_rate_counts_prompt_tokens_when_rows_stop_early(in_child, monkeypatch):
    """Long prompts, rows ruled out after their first token (the scorer's early stop): nearly all the work
    is prefill. The reported tok/s must count it, so the rate and the ETA stay meaningful (generated tokens
    alone read ~0 tok/s and an ETA of hours on the flagship's first scoring)."""
    from autoloop.mlx.generation import encode_chats, generate_batch_with_stats

    seen: list[dict] = []
    real = progress.report
    monkeypatch.setattr(progress, "report", lambda **kw: (seen.append(kw), real(**kw)))
    model, tok = tiny_llama(seed=3), tiny_tokenizer()
    chats = [[{"role": "user", "content": " ".join(["responsibility autonomy influence"] * 40) + f" {i}"}]
             for i in range(6)]
    prompt_tokens = sum(len(p) for p in encode_chats(tok, chats))
    t0 = time.perf_counter()
    texts, stats = generate_batch_with_stats(model, tok, chats, max_tokens=64, batch_size=2, alive=lambda t: False)
    wall = time.perf_counter() - t0
    assert stats["generated_tokens"] <= 2 * len(chats) < prompt_tokens / 20
    last = seen[-1]
    assert last["done"] == last["total"] == 6 and last["eta_s"] == 0
    # the rate covers prompt + generated tokens over the phase's wall clock (within timing slack)
    assert last["tokens_per_s"] * wall >= 0.8 * prompt_tokens
    mid = [kw for kw in seen if 0 < kw["done"] < 6]
    assert all(kw["eta_s"] is not None and kw["eta_s"] < 60 * wall + 60 for kw in mid)
