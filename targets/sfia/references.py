"""Reference points for a forge_score on a gold set: what a score means before any model answers.

A constant, schema-valid reply that names one real skill (`PROG` at level 3) earns JSON validity and
non-hallucination credit on every item, and skill F1 / level credit wherever PROG is expected: a trained
model must beat it to have learned anything beyond the format.
"""
from __future__ import annotations

from pathlib import Path

from autoloop import Scores
from sfia.forge_score import aggregate, reward_components
from sfia.prompting import load_jsonl

CONSTANT_REPLY = '{"skills":[{"code":"PROG","level":3,"evidence":"x"}],"rationale":"r"}'
COMPONENTS = ("forge_score", "json_validity", "skill_f1", "level_within_1", "hallucination", "evidence_grounding")


def constant_reply_scores(gold: Path, limit: int | None = None, reply: str = CONSTANT_REPLY) -> Scores:
    """forge_score and its components of `reply` given to every gold item (the first `limit` items, as the
    target scores them); no model, milliseconds."""
    items = load_jsonl(gold, required=("id", "input", "skills"))[:limit or None]
    comps = [reward_components(reply, ex) for ex in items]
    agg = aggregate(comps)
    return Scores(score=agg["forge_score"], components={k: agg[k] for k in COMPONENTS},
                  items={ex["id"]: c["forge_score"] for ex, c in zip(items, comps)}, info={"reply": reply})
