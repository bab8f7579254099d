"""A prompt-optimisation target to copy for your own task: a prompt file, a gold JSONL file, a scoring function.

    autoloop run targets/prompt_generic.py --max-iters 8               # offline: local SmolLM2 server
    ANTHROPIC_API_KEY=... autoloop run targets/prompt_generic.py --max-cost 1

To adapt it:
  1. PROMPT: a text file with your starting instruction (the system prompt).
  2. GOLD: one JSON object per line with a unique "id", the "input" and whatever your scorer needs
     (here "expected"). It is split once into a feedback half (shown to the proposer) and a held-out
     half (decides what is kept); never train or pick demos from it.
  3. TRAIN (optional): rows with "id", "input", "reply": the pool few-shot demos are drawn from.
  4. score_item(reply, row) -> dict of components in [0, 1], one of them named by `composite`.
  5. LIBRARY (optional): sentences the offline proposer may append to the instruction.
Options worth knowing (see autoloop/prompt_target.py): heldout_n / feedback_n / screen_n (sizes),
max_tokens, proposer ("auto" | "offline" | "reflective"), task_model / proposer_model (Anthropic ids),
batch=True (Message Batches, half price, slower), bootstrap (the paired keep rule).
"""
from __future__ import annotations

from pathlib import Path

from autoloop.prompt_target import PromptTarget

HERE = Path(__file__).resolve().parent / "prompt_example"
PROMPT = HERE / "prompt.txt"
GOLD = HERE / "gold.jsonl"
TRAIN = HERE / "train.jsonl"

LIBRARY = {
    "one_word": "Reply with the name of the city only, nothing else.",
    "no_period": "Do not end with a full stop.",
    "english": "Use the usual English name of the city.",
}


def score_item(reply: str, row: dict) -> dict[str, float]:
    """1 when the reply is exactly the expected answer (case and a final full stop ignored)."""
    got = reply.strip().rstrip(".").strip().lower()
    want = str(row["expected"]).strip().lower()
    return {"exact": float(got == want), "contains": float(want in got), "short": float(len(got.split()) <= 3)}


target = PromptTarget(
    name="prompt-generic",
    gold=GOLD,
    base_instruction=PROMPT.read_text().strip(),
    score_item=score_item,
    composite="exact",
    metric="exact",
    train=TRAIN,
    expected=lambda row: str(row["expected"]),
    library=LIBRARY,
    heldout_n=12,
    feedback_n=12,
    screen_n=6,
    max_demos=3,
    max_tokens=16,
)
