"""Supervised LoRA fine-tuning on chat examples, loss on the assistant reply only.

Why: the 135M model never emits the task's JSON out of the box, so GRPO would see no
reward variance; a short SFT warm-start teaches the format first (design notes 7).

An example is {"messages": [..., {"role": "assistant", "content": reply}]} or
{"messages": [...], "reply": str}. It is tokenised as
    chat_template(messages, add_generation_prompt=True) + encode(reply) + [eos]
i.e. exactly the tokens generation would produce, and the loss mask covers the reply
tokens and the EOS (so the model learns to stop), never the prompt or the padding.
Batches follow a seeded permutation indexed by the global step, so a resumed run
(`start_step`) sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn


def encode_example(tokenizer, example: dict) -> tuple[list, int]:
    """(token ids, prompt length) of one chat example; see the module docstring."""
    if not isinstance(example, dict) or "messages" not in example:
        raise ValueError("SFT example must be a dict with 'messages' (and the reply as the last "
                         "assistant message or under 'reply')")
    msgs = list(example["messages"])
    reply = example.get("reply")
    if reply is None:
        if not msgs or msgs[-1].get("role") != "assistant":
            raise ValueError("SFT example has no reply: end 'messages' with an assistant message or add 'reply'")
        reply = msgs.pop()["content"]
    prompt = list(tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True))
    eos = tokenizer.eos_token_id
    reply_ids = list(tokenizer.encode(reply, add_special_tokens=False))
    return prompt + reply_ids + [eos], len(prompt)


def reply_mask(prompt_lens: Sequence[int], lengths: Sequence[int], width: int) -> mx.array:
    """[B, width] mask over *target* positions t (predicting token t+1): 1 where
    prompt_len <= t+1 < length, i.e. exactly the reply tokens and EOS."""
    t = mx.arange(1, width + 1)[None, :]
    p = mx.array(prompt_lens)[:, None]
    n = mx.array(lengths)[:, None]
    return ((t >= p) & (t < n)).astype(mx.float32)


def sft_loss(model, inputs, prompt_lens, lengths):
    """Mean cross-entropy over reply tokens; returns (loss, n_tokens)."""
    x, y = inputs[:, :-1], inputs[:, 1:]
    mask = reply_mask(prompt_lens, lengths, y.shape[1])
    ce = nn.losses.cross_entropy(model(x).astype(mx.float32), y) * mask
    n = mask.sum()
    return ce.sum() / mx.maximum(n, 1), n


def make_batch(encoded: Sequence[tuple], max_seq_length: int = 1024):
    """Right-pad a list of (ids, prompt_len) to one array; truncates over-long rows."""
    rows = [ids[:max_seq_length] for ids, _ in encoded]
    width = max(len(r) for r in rows)
    x = mx.array([r + [0] * (width - len(r)) for r in rows], dtype=mx.int32)
    return x, [p for _, p in encoded], [len(r) for r in rows]


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list:
    """Example indices of global step `step`: a fresh seeded permutation per epoch."""
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    epoch, k = divmod(step, per_epoch)
    perm = list(range(n))
    random.Random(seed * 7919 + epoch).shuffle(perm)
    if n < batch_size:
        return [perm[i % n] for i in range(batch_size)]
    return perm[k * batch_size:(k + 1) * batch_size]


def train_sft(model, tokenizer, examples: Sequence[dict], optimizer, deadline: float, batch_size: int = 4,
              max_steps: Optional[int] = None, on_step: Optional[Callable] = None, seed: int = 0,
              start_step: int = 0, max_seq_length: int = 1024) -> dict:
    """Train LoRA on `examples` until `deadline` (time.time()), `max_steps` or on_step
    returning False. A step is started only if the estimated step time (running max-ish
    average of past steps) fits before the deadline. Returns stats.

    Inside an autoloop child each step is reported through `autoloop.progress` (task "SFT": steps this
    cycle, global step, loss, processed tokens/s, time left until the deadline)."""
    from autoloop import progress

    if not examples:
        raise ValueError("train_sft: no examples")
    encoded = [encode_example(tokenizer, e) for e in examples]
    vg = nn.value_and_grad(model, sft_loss)
    model.train()
    stats = {"steps": 0, "losses": [], "tokens": 0, "processed_tokens": 0, "step_seconds": [], "stopped_by": "deadline"}
    est = 0.0
    t_start = time.time()
    step = start_step

    def report() -> None:
        secs = sum(stats["step_seconds"])
        progress.report(done=stats["steps"], total=max_steps, unit="steps", task="SFT", step=step,
                        loss=stats["losses"][-1] if stats["losses"] else None,
                        tokens_per_s=stats["processed_tokens"] / secs if secs else None,
                        eta_s=None if max_steps else max(0.0, deadline - time.time()))

    report()
    while True:
        if max_steps is not None and stats["steps"] >= max_steps:
            stats["stopped_by"] = "max_steps"
            break
        if time.time() >= deadline or (est and time.time() + est > deadline):
            break
        t0 = time.time()
        mx.random.seed(seed * 1_000_003 + step)  # dropout stream per step: exact on resume
        idx = batch_indices(len(encoded), batch_size, step, seed)
        x, plens, lens = make_batch([encoded[i] for i in idx], max_seq_length)
        (loss, ntok), grads = vg(model, x, plens, lens)
        optimizer.update(model, grads)
        mx.eval(loss, ntok, model.trainable_parameters(), optimizer.state)
        step += 1
        dt = time.time() - t0
        est = dt if not est else max(dt, 0.5 * (dt + est))
        stats["steps"] += 1
        stats["losses"].append(loss.item())
        stats["tokens"] += int(ntok.item())
        stats["processed_tokens"] += sum(lens)
        stats["step_seconds"].append(dt)
        report()
        if on_step is not None and on_step({"step": step, "loss": stats["losses"][-1], "seconds": dt}) is False:
            stats["stopped_by"] = "callback"
            break
    stats["step"] = step
    stats["elapsed"] = time.time() - t_start
    stats["tokens_per_s"] = stats["tokens"] / max(sum(stats["step_seconds"]), 1e-9)
    return stats
