"""GRPO (group relative policy optimisation) with LoRA on an mlx-lm model.

One step: for each of `prompts_per_step` prompts sample `group_size` completions with
mlx-lm's BatchGenerator (the engine behind `batch_generate`), score them with a plain
`reward_fn(completions, prompts) -> list[float]`, normalise rewards within each group,
and take one clipped policy-ratio gradient step on the LoRA weights.

Decisions (and why):
- Old-policy log-probs are the ones the sampler produced (no re-tokenising, no extra
  forward pass). `batch_generate` drops the stop token, so we drive its BatchGenerator
  directly and keep the stop token and its log-prob.
- The loss mask covers exactly the sampled completion tokens, INCLUDING the EOS token
  when the completion stopped on it (the model must learn when to stop; a completion
  cut at max_completion_tokens has no EOS). Never prompt tokens, never padding.
- The policy is the model's distribution at temperature 1: the returned log-probs are
  of the untempered logits, and `temperature` only shapes sampling.
- Training log-probs share the prompt: the prompt is run once per group and its keys/values
  are broadcast to the G completions (same maths as a full forward, checked once per
  run against one, with a fallback to full forwards for models where it differs).
- The KL reference is the same model with every LoRA scale set to 0 (no second copy).
- Groups whose rewards all equal each other carry no signal: skipped and counted.
- Loss normalisation: grpo = mean over sequences of the per-sequence token mean;
  dr_grpo = token sum / (sequences x max_completion_tokens), advantages not divided by
  the std; dapo = token sum / all completion tokens of the step (token level),
  epsilon_high 0.28 unless set.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from .lora import adapters_disabled

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


@dataclass
class GRPOConfig:
    group_size: int = field(default=8, metadata={"help": "Completions sampled per prompt (G)."})
    prompts_per_step: int = field(default=1, metadata={"help": "Prompts (groups) per optimizer step."})
    max_completion_tokens: int = field(default=128, metadata={"help": "Cap on sampled tokens per completion."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (policy log-probs stay at T=1)."})
    top_p: float = field(default=0.0, metadata={"help": "Nucleus sampling; 0 = off."})
    loss_type: str = field(default="grpo", metadata={"help": "grpo | dr_grpo | dapo."})
    epsilon: float = field(default=0.2, metadata={"help": "Lower clip: ratio >= 1 - epsilon."})
    epsilon_high: Optional[float] = field(default=None, metadata={"help": "Upper clip; None = epsilon (dapo: 0.28)."})
    beta: float = field(default=0.0, metadata={"help": "KL weight to the base model (adapters off); 0 = no KL pass."})
    updates_per_batch: int = field(default=1, metadata={"help": "Optimizer steps per batch of rollouts (mu)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the global gradient norm; 0 = off."})
    reward_std_eps: float = field(default=1e-4, metadata={"help": "eps in (r - mean) / (std + eps)."})
    overlong_buffer: int = field(default=0, metadata={
        "help": "DAPO's soft overlong punishment: the last this-many tokens before max_completion_tokens cost "
                "reward linearly, up to overlong_penalty for a completion cut at the cap; 0 = off."})
    overlong_penalty: float = field(default=1.0, metadata={"help": "Reward lost by a completion cut at the cap."})
    seed: int = field(default=0, metadata={"help": "Seeds prompt order and sampling."})
    start_step: int = field(default=0, metadata={"help": "Batches already consumed (resume position)."})
    max_steps: Optional[int] = field(default=None, metadata={"help": "Stop after this many batches."})

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"GRPOConfig.loss_type={self.loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
        if self.group_size < 2:
            raise ValueError(f"GRPOConfig.group_size={self.group_size}: needs >= 2 to compare completions")
        if self.max_completion_tokens < 1 or self.prompts_per_step < 1 or self.updates_per_batch < 1:
            raise ValueError("GRPOConfig: max_completion_tokens, prompts_per_step, updates_per_batch must be >= 1")
        if not 0 <= self.overlong_buffer < self.max_completion_tokens:
            raise ValueError(f"GRPOConfig.overlong_buffer={self.overlong_buffer}: use 0 (off) up to "
                             f"max_completion_tokens - 1 ({self.max_completion_tokens - 1})")

    @property
    def eps_high(self) -> float:
        if self.epsilon_high is not None:
            return self.epsilon_high
        return 0.28 if self.loss_type == "dapo" else self.epsilon


@dataclass
class Rollout:
    """One sampled completion: ids include the EOS token if it stopped on one."""
    prompt_index: int
    token_ids: list
    logprobs: list
    text: str
    stopped: bool


# ---------------------------------------------------------------- prompts


def encode_prompt(tokenizer, example) -> list:
    """Token ids of a prompt: str, {"messages": [...]} (chat template + generation
    prompt) or {"prompt": str}."""
    if isinstance(example, dict) and "messages" in example:
        msgs = [m for m in example["messages"]]
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
        return list(tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True))
    text = example["prompt"] if isinstance(example, dict) else example
    if not isinstance(text, str):
        raise TypeError(f"prompt must be str, {{'messages': [...]}} or {{'prompt': str}}, got {type(example).__name__}")
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                  add_generation_prompt=True, tokenize=True))
    return list(tokenizer.encode(text))


# ---------------------------------------------------------------- sampling


def _eos_ids(tokenizer) -> set:
    ids = getattr(tokenizer, "eos_token_ids", None)
    if ids is None:
        ids = [tokenizer.eos_token_id]
    return set(int(i) for i in ids)


def sample_groups(model, tokenizer, prompt_ids: Sequence[list], group_size: int, max_tokens: int,
                  temperature: float = 1.0, top_p: float = 0.0, deadline: Optional[float] = None):
    """Sample `group_size` completions per prompt in one batched generator.

    Returns a list of Rollout (grouped, prompt-major) or None if `deadline` passed
    while generating. The prompt is prefilled once per group and its KV cache shared.
    """
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    eos = _eos_ids(tokenizer)
    sampler = make_sampler(temp=temperature, top_p=top_p)
    was_training = model.training
    model.eval()
    gens, caches, histories, owners = [], [], [], []
    for pi, ids in enumerate(prompt_ids):
        if len(ids) >= 2:
            template = make_prompt_cache(model)
            model(mx.array([ids[:-1]]), cache=template)
            mx.eval([c.state for c in template])
        else:
            template = None
        for _ in range(group_size):
            if template is None:
                gens.append(list(ids)); caches.append(None); histories.append([])
            else:
                fork = make_prompt_cache(model)
                for dst, src in zip(fork, template):
                    dst.state = src.state
                gens.append(list(ids[-1:])); caches.append(fork); histories.append(list(ids[:-1]))
            owners.append(pi)
    n = len(gens)
    gen = BatchGenerator(model, stop_tokens=[[t] for t in sorted(eos)], sampler=sampler,
                         completion_batch_size=n, prefill_batch_size=n)
    try:
        uids = gen.insert(gens, [max_tokens] * n,
                          caches=caches if all(c is not None for c in caches) else None,
                          all_tokens=histories if all(c is not None for c in caches) else None)
        toks = {u: [] for u in uids}
        lps = {u: [] for u in uids}
        stopped = {u: False for u in uids}
        while responses := gen.next_generated():
            for r in responses:
                toks[r.uid].append(int(r.token))
                lps[r.uid].append(r.logprobs[r.token])
                if r.finish_reason == "stop":
                    stopped[r.uid] = True
            if deadline is not None and time.time() > deadline:
                return None
    finally:
        gen.close()
        model.train(was_training)
    out = []
    for u, pi in zip(uids, owners):
        ids = toks[u]
        lp = mx.stack(lps[u]).tolist() if lps[u] else []
        text_ids = ids[:-1] if ids and stopped[u] and ids[-1] in eos else ids
        out.append(Rollout(pi, ids, lp, tokenizer.decode(text_ids), stopped[u]))
    return out


# ---------------------------------------------------------------- log-probs


class _RecordCache:
    """KV 'cache' for a differentiable prompt pass: keeps the keys/values it is given."""

    def __init__(self):
        self.offset = 0
        self.keys = self.values = None

    def update_and_fetch(self, k, v):
        self.keys, self.values = k, v
        self.offset += k.shape[2]
        return k, v

    def make_mask(self, n, return_array=False, window_size=None):
        from mlx_lm.models.base import create_causal_mask
        if n == 1:
            return None
        return create_causal_mask(n, window_size=window_size) if (return_array or window_size) else "causal"


class _PrefixCache:
    """Differentiable cache holding a shared prompt's keys/values broadcast to G rows."""

    def __init__(self, rec: _RecordCache, g: int):
        self.offset = rec.offset
        k, v = rec.keys, rec.values
        self.pk = mx.broadcast_to(k, (g,) + k.shape[1:])
        self.pv = mx.broadcast_to(v, (g,) + v.shape[1:])

    def update_and_fetch(self, k, v):
        return mx.concatenate([self.pk, k], axis=2), mx.concatenate([self.pv, v], axis=2)

    def make_mask(self, n, return_array=False, window_size=None):
        from mlx_lm.models.base import create_causal_mask
        return create_causal_mask(n, offset=self.offset, window_size=window_size)


def _head(model, h):
    if "lm_head" in model:
        return model.lm_head(h)
    return model.model.embed_tokens.as_linear(h)


def _pad(seqs: Sequence[list], width: int, pad: int = 0) -> mx.array:
    return mx.array([list(s) + [pad] * (width - len(s)) for s in seqs], dtype=mx.int32)


def completion_mask(lengths: Sequence[int], width: int) -> mx.array:
    """[G, width] float mask, 1 exactly on the first lengths[i] positions of row i."""
    return (mx.arange(width)[None, :] < mx.array(lengths)[:, None]).astype(mx.float32)


def _token_logprobs(logits, targets):
    logits = logits.astype(mx.float32)
    sel = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return sel - mx.logsumexp(logits, axis=-1)


def completion_logprobs_full(model, prompt: list, completions: Sequence[list]):
    """Teacher-forced log-probs of each completion token, by full forwards of
    prompt + completion (right-padded). Returns ([G, Lmax] log-probs, [G, Lmax] mask)."""
    p = len(prompt)
    width = max(1, max(len(c) for c in completions))
    seqs = [list(prompt) + list(c) for c in completions]
    x = _pad(seqs, p + width)
    logits = model(x[:, :-1])[:, p - 1:]
    targets = x[:, p:]
    return _token_logprobs(logits, targets), completion_mask([len(c) for c in completions], width)


def completion_logprobs(model, prompt: list, completions: Sequence[list]):
    """As completion_logprobs_full, but the prompt runs once and its keys/values are
    shared by the G completions (about G x fewer prompt FLOPs). Needs an mlx-lm model
    with `.model(inputs, cache=...)` and either `lm_head` or tied `embed_tokens`."""
    g = len(completions)
    width = max(1, max(len(c) for c in completions))
    inner = model.model
    recs = [_RecordCache() for _ in inner.layers]
    hp = inner(mx.array([list(prompt)]), cache=recs)           # [1, P, D]
    last = mx.broadcast_to(hp[:, -1:, :], (g, 1, hp.shape[-1]))
    x = _pad(completions, width)
    if width > 1:
        hc = inner(x[:, :-1], cache=[_PrefixCache(r, g) for r in recs])  # [G, W-1, D]
        h = mx.concatenate([last, hc], axis=1)
    else:
        h = last
    return _token_logprobs(_head(model, h), x), completion_mask([len(c) for c in completions], width)


def shared_prefix_ok(model, prompt: list, completion: list, tol: float = 1e-3) -> bool:
    """True when the prompt-sharing forward matches a full forward on this model."""
    try:
        a, m = completion_logprobs(model, prompt, [completion, completion[:1]])
    except Exception:
        return False
    b, _ = completion_logprobs_full(model, prompt, [completion, completion[:1]])
    return bool(mx.max(mx.abs((a - b) * m)).item() < tol)


# ---------------------------------------------------------------- objective


def group_advantages(rewards: Sequence[float], scale_by_std: bool = True, eps: float = 1e-4) -> list:
    """(r - mean) / (std + eps); without std division when scale_by_std is False (dr_grpo)."""
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / max(n - 1, 1))
    return [(r - mean) / (std + eps) if scale_by_std else (r - mean) for r in rewards]


def clipped_token_loss(logp, old_logp, adv, mask, eps_low, eps_high, beta=0.0, ref_logp=None):
    """Per-token -min(ratio*A, clip(ratio)*A) + beta*KL (k3 estimator), zero off-mask."""
    ratio = mx.exp(logp - old_logp)
    a = adv[:, None]
    loss = -mx.minimum(ratio * a, mx.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * a)
    if beta and ref_logp is not None:
        d = ref_logp - logp
        loss = loss + beta * (mx.exp(d) - d - 1.0)
    return loss * mask


def _seq_weights(lengths_per_group: list, cfg: GRPOConfig) -> list:
    """Per-sequence token weights implementing the three normalisations over the step."""
    all_len = [l for g in lengths_per_group for l in g]
    nseq = len(all_len)
    if cfg.loss_type == "grpo":
        return [[1.0 / (max(l, 1) * nseq) for l in g] for g in lengths_per_group]
    if cfg.loss_type == "dr_grpo":
        w = 1.0 / (nseq * cfg.max_completion_tokens)
    else:
        w = 1.0 / max(sum(all_len), 1)
    return [[w for _ in g] for g in lengths_per_group]


def overlong_penalty(n_tokens: int, stopped: bool, cfg: GRPOConfig) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), <= 0, added to a completion's reward.

    A completion cut at the cap gets no reward for its content from a JSON scorer (it does not parse), but
    neither does one that stopped in time and was wrong, so the group cannot tell "too long" from "wrong".
    The linear ramp over the last `overlong_buffer` tokens says "stop earlier" before replies reach the cap,
    which matters when the texts scored later are longer than the training prompts.

    >>> cfg = GRPOConfig(max_completion_tokens=100, overlong_buffer=20)
    >>> overlong_penalty(80, True, cfg), overlong_penalty(90, True, cfg), overlong_penalty(100, False, cfg)
    (0.0, -0.5, -1.0)
    """
    if not cfg.overlong_buffer:
        return 0.0
    free = cfg.max_completion_tokens - cfg.overlong_buffer
    length = n_tokens if stopped else max(n_tokens, cfg.max_completion_tokens)
    if length <= free:
        return 0.0
    return -cfg.overlong_penalty * min(1.0, (length - free) / cfg.overlong_buffer)


# ---------------------------------------------------------------- training


def _flops_per_token(model) -> float:
    """~2 x parameters (incl. the output projection) FLOPs per token forward."""
    return 2.0 * sum(v.size for _, v in tree_flatten(model.parameters()))


def train_grpo(model, tokenizer, prompts: Sequence, reward_fn: Callable, optimizer: optim.Optimizer,
               config: GRPOConfig, deadline: float, on_step: Optional[Callable] = None) -> dict:
    """Run GRPO steps until `deadline` (time.time()), `config.max_steps` batches, or
    on_step returns False. Never starts a step it expects not to finish; a step whose
    generation overruns the deadline is dropped. Returns stats (see keys below).

    Inside an autoloop child each step is reported through `autoloop.progress` (task "GRPO": steps this
    cycle, global step, mean reward of the last 10 steps, loss, sampled tokens/s, time left to the deadline)."""
    from autoloop import progress

    if not prompts:
        raise ValueError("train_grpo: no prompts")
    cfg = config
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = list(range(len(prompts)))
    random.Random(cfg.seed).shuffle(order)
    scale_std = cfg.loss_type != "dr_grpo"
    fpt = _flops_per_token(model)

    def loss_fn(mdl, group):
        prompt, comps, old, adv, w, ref, use_prefix = group
        fn = completion_logprobs if use_prefix else completion_logprobs_full
        logp, mask = fn(mdl, prompt, comps)
        tl = clipped_token_loss(logp, old, adv, mask, cfg.epsilon, cfg.eps_high, cfg.beta, ref)
        return (tl.sum(axis=1) * w).sum()

    vg = nn.value_and_grad(model, loss_fn)
    stats = {"steps": 0, "batches": 0, "skipped_groups": 0, "groups": 0, "completion_tokens": 0,
             "train_tokens": 0, "trained_completion_tokens": 0, "gen_seconds": 0.0, "train_seconds": 0.0, "rewards": [],
             "losses": [], "step_seconds": [], "stopped_by": "deadline", "gen_flops": 0.0,
             "train_flops": 0.0, "shared_prefix": None, "overlong_share": [], "capped_share": []}
    step_est = 0.0
    t_start = time.time()
    step = cfg.start_step

    def report() -> None:
        recent = stats["rewards"][-10:]
        progress.report(done=stats["batches"], total=cfg.max_steps, unit="steps", task="GRPO", step=step,
                        reward=sum(recent) / len(recent) if recent else None,
                        loss=next((x for x in reversed(stats["losses"]) if x is not None), None),
                        tokens_per_s=stats["completion_tokens"] / stats["gen_seconds"] if stats["gen_seconds"] else None,
                        skipped_groups=stats["skipped_groups"] or None,
                        eta_s=None if cfg.max_steps else max(0.0, deadline - time.time()))

    report()
    model.train()
    while True:
        if cfg.max_steps is not None and stats["batches"] >= cfg.max_steps:
            stats["stopped_by"] = "max_steps"
            break
        if step_est and time.time() + step_est > deadline:
            break
        t0 = time.time()
        mx.random.seed(cfg.seed * 1_000_003 + step)  # per-step stream: exact on resume
        idx = [order[(step * cfg.prompts_per_step + k) % len(order)] for k in range(cfg.prompts_per_step)]
        batch_prompts = [encoded[i] for i in idx]
        rolls = sample_groups(model, tokenizer, batch_prompts, cfg.group_size, cfg.max_completion_tokens,
                              cfg.temperature, cfg.top_p, deadline=deadline)
        t_gen = time.time() - t0
        if rolls is None:
            break
        n_comp = sum(len(r.token_ids) for r in rolls)
        stats["completion_tokens"] += n_comp
        stats["gen_seconds"] += t_gen
        stats["gen_flops"] += fpt * (n_comp + sum(len(p) for p in batch_prompts))
        texts = [r.text for r in rolls]
        owners = [prompts[idx[r.prompt_index]] for r in rolls]
        rewards = [float(x) for x in reward_fn(texts, owners)]
        if len(rewards) != len(rolls):
            raise ValueError(f"reward_fn returned {len(rewards)} rewards for {len(rolls)} completions")
        stats["rewards"].append(sum(rewards) / len(rewards))  # the task reward, before any length penalty
        if cfg.overlong_buffer:
            pens = [overlong_penalty(len(r.token_ids), r.stopped, cfg) for r in rolls]
            stats["overlong_share"].append(sum(p < 0 for p in pens) / len(pens))
            stats["capped_share"].append(sum(not r.stopped for r in rolls) / len(rolls))
            rewards = [x + p for x, p in zip(rewards, pens)]
        if stats["shared_prefix"] is None:
            probe = next((r.token_ids for r in rolls if len(r.token_ids) > 1), [0, 0])
            stats["shared_prefix"] = shared_prefix_ok(model, batch_prompts[0], probe)
        groups = []
        G = cfg.group_size
        for k in range(cfg.prompts_per_step):
            rs = rewards[k * G:(k + 1) * G]
            stats["groups"] += 1
            if max(rs) - min(rs) < 1e-9:
                stats["skipped_groups"] += 1
                continue
            grp = [r for r in rolls[k * G:(k + 1) * G] if r.token_ids]
            adv_all = group_advantages(rs, scale_std, cfg.reward_std_eps)
            adv = [a for a, r in zip(adv_all, rolls[k * G:(k + 1) * G]) if r.token_ids]
            if grp:
                groups.append((batch_prompts[k], grp, adv))
        t1 = time.time()
        loss_val = None
        if groups:
            weights = _seq_weights([[len(r.token_ids) for r in g] for _, g, _ in groups], cfg)
            packed = []
            for (prompt, grp, adv), w in zip(groups, weights):
                comps = [r.token_ids for r in grp]
                width = max(len(c) for c in comps)
                old = mx.array([r.logprobs + [0.0] * (width - len(r.logprobs)) for r in grp])
                ref = None
                if cfg.beta:
                    with adapters_disabled(model):
                        fn = completion_logprobs if stats["shared_prefix"] else completion_logprobs_full
                        ref = mx.stop_gradient(fn(model, prompt, comps)[0])
                        mx.eval(ref)
                packed.append((prompt, comps, old, mx.array(adv), mx.array(w), ref, stats["shared_prefix"]))
                stats["train_tokens"] += len(prompt) + sum(len(c) for c in comps)
                stats["trained_completion_tokens"] += sum(len(c) for c in comps) * cfg.updates_per_batch
            for _ in range(cfg.updates_per_batch):
                total, grads = 0.0, None
                for group in packed:
                    lv, g = vg(model, group)
                    grads = g if grads is None else tree_map(mx.add, grads, g)
                    mx.eval(lv, grads)
                    total += lv.item()
                if cfg.max_grad_norm:
                    grads, _ = optim.clip_grad_norm(grads, cfg.max_grad_norm)
                optimizer.update(model, grads)
                mx.eval(model.trainable_parameters(), optimizer.state)
                stats["steps"] += 1
                loss_val = total
            ntr = sum(len(p[0]) + sum(len(c) for c in p[1]) for p in packed)
            # forward + activation backward (base weights frozen: no weight gradients)
            stats["train_flops"] += 2 * fpt * ntr * cfg.updates_per_batch
        stats["train_seconds"] += time.time() - t1
        stats["losses"].append(loss_val)
        stats["batches"] += 1
        step += 1
        dt = time.time() - t0
        stats["step_seconds"].append(dt)
        step_est = dt if not step_est else max(dt, 0.5 * (dt + step_est))
        report()
        if on_step is not None:
            info = {"step": step, "reward_mean": stats["rewards"][-1], "loss": loss_val,
                    "completion_tokens": n_comp, "seconds": dt, "skipped_groups": stats["skipped_groups"],
                    "texts": texts, "rewards": rewards}
            if on_step(info) is False:
                stats["stopped_by"] = "callback"
                break
    stats["step"] = step
    stats["elapsed"] = time.time() - t_start
    stats["completion_tokens_per_s"] = stats["completion_tokens"] / stats["gen_seconds"] if stats["gen_seconds"] else 0.0
    stats["train_tokens_per_s"] = stats["train_tokens"] * cfg.updates_per_batch / stats["train_seconds"] if stats["train_seconds"] else 0.0
    stats["config"] = asdict(cfg)
    return stats
