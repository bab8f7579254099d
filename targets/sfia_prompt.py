"""Prompt optimisation for the SFIA mapping task: the system prompt and few-shot demos, not the weights.

    autoloop run targets/sfia_prompt.py --max-iters 10            # offline: local SmolLM2 via mlx_lm.server
    ANTHROPIC_API_KEY=... autoloop run targets/sfia_prompt.py --max-cost 2

Environment (bench/prompt_optimisers.py drives the target through these): SFIA_PROMPT_GOLD (a gold JSONL
other than gold/sfia_gold.jsonl), SFIA_PROMPT_LIBRARY=0 (no instruction library: demos only),
SFIA_PROMPT_SEED (split and proposer seed), SFIA_PROMPT_{HELDOUT,FEEDBACK,SCREEN}_N (sizes; 0 = the whole split),
SFIA_PROMPT_RUN_S / SFIA_PROMPT_SCORE_S (phase time limits, seconds), SFIA_PROMPT_PROPOSER
(auto | offline | reflective; AUTOLOOP_TASK_MODEL names the Anthropic task model).

Scored with the same forge_score, on the same gold set, as the GRPO target (targets/sfia/). The gold set
is split into a feedback split (shown to the proposer, used for screening) and a held-out split (keep
decisions, per-item paired bootstrap). Demos come from the training split only. The machinery is the
generic autoloop.prompt_target.PromptTarget; this file only says what is SFIA-specific.
"""
from __future__ import annotations

import json
import os

from autoloop.prompt_target import PromptTarget
from sfia import GOLD_PATH, TRAIN_PATH
from sfia.forge_score import reward_components
from sfia.framework import LEVEL_NAMES, load_framework
from sfia.prompting import SYSTEM_PROMPT, build_messages, load_jsonl


def skill_codes(row: dict) -> set[str]:
    return {str(s["code"]).upper() for s in row.get("skills") or []}


def expected_reply(row: dict) -> str:
    """What a proposer is shown as the right answer: schema-valid, so it must carry the `rationale` that
    forge_score requires (a rewrite copying a rationale-free example would make every reply invalid)."""
    skills = [{k: s.get(k) for k in ("code", "level", "evidence")} for s in row["skills"]]
    why = "; ".join(f"{s['code']} at level {s['level']}" for s in skills)
    return json.dumps({"skills": skills, "rationale": why})


def instruction_library() -> dict[str, str]:
    """Sentences the offline proposer may append to the instruction. Built from the framework and the
    training split (which codes occur there), never from the gold set."""
    fw = load_framework()
    seen = sorted(set().union(*(skill_codes(r) for r in load_jsonl(TRAIN_PATH))))
    codes = "; ".join(f"{c}={fw.by_code(c).name}" for c in seen if fw.by_code(c))
    levels = ", ".join(f"{n} {name}" for n, name in sorted(LEVEL_NAMES.items()))
    return {
        "json_only": "Output the JSON object only, with no text or code fence around it.",
        "codes": f"Valid codes: {codes}.",
        "levels": f"Levels: {levels}.",
        "evidence": "Each evidence is an exact phrase of at least three words copied from the text.",
        "no_invent": "Use only real SFIA codes; never invent a code.",
        "one_per_duty": "Give one skill for each distinct duty mentioned; do not repeat a skill.",
    }


def _messages(input_text: str, system: str, demos):
    return build_messages(input_text, system=system, demos=demos)


target = PromptTarget(
    name="sfia-prompt",
    gold=os.environ.get("SFIA_PROMPT_GOLD") or GOLD_PATH,
    base_instruction=SYSTEM_PROMPT,
    score_item=reward_components,
    composite="forge_score",
    metric="forge",
    train=TRAIN_PATH,
    build_messages=_messages,
    expected=expected_reply,
    item_keys=skill_codes,
    library=instruction_library() if os.environ.get("SFIA_PROMPT_LIBRARY", "1") != "0" else {},
    split_seed=int(os.environ.get("SFIA_PROMPT_SEED", "0")),
    # Sizes for a busy 2-core CPU and the local 135M model (measured: 6-15 answers a minute, 8 at a time,
    # replies run to max_tokens): the baseline takes ~7 min, an iteration 2.5-4 min (screen_n new calls to
    # screen, then heldout_n + feedback_n - screen_n to score). On 30 held-out items a one-demo prompt's
    # paired 90% CI over the baseline was [0.33, 0.44]. Raise the sizes with an API model.
    heldout_n=int(os.environ.get("SFIA_PROMPT_HELDOUT_N", "30")),
    feedback_n=int(os.environ.get("SFIA_PROMPT_FEEDBACK_N", "12")),
    screen_n=int(os.environ.get("SFIA_PROMPT_SCREEN_N", "6")),
    max_demos=3,
    # Phase time limits: a CPU shared with a training run needs more (the bench sets them).
    budget_s=float(os.environ.get("SFIA_PROMPT_RUN_S", "300")),
    score_budget_s=float(os.environ.get("SFIA_PROMPT_SCORE_S", "900")),
    max_tokens=128,  # the longest gold reply is 82 SmolLM2 tokens; the untuned model rambles to the cap
    proposer=os.environ.get("SFIA_PROMPT_PROPOSER", "auto"),  # auto: reflective with ANTHROPIC_API_KEY, else offline
)
