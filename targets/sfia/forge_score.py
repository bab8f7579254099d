"""forge_score: the seed's score for one model reply, used as the GRPO reward and as the gold-set score.

    forge_score = 0.30*json_validity + 0.25*skill_f1 + 0.25*level_within_1
                + 0.15*(1 - hallucination) + 0.05*evidence_grounding

The reply must be JSON of the shape
    {"skills": [{"code": "PROG", "level": 4, "evidence": "phrase from the input"}, ...], "rationale": "..."}
Each skill gives "code" or "name" (or both; a present "code" decides), "level" an int 1..7, "evidence" an
optional string. Extra keys are ignored.

Components (each in [0, 1]):
  json_validity       1 if the reply, after stripping whitespace and one optional ``` / ```json fence,
                      parses as JSON and matches the schema above; else 0.
  skill_f1            F1 between the set of predicted codes (names mapped to codes; unknown entries count as
                      wrong predictions) and the set of expected codes. 1 when both sets are empty.
  level_within_1      share of matched (true-positive) skills whose predicted level is within +-1 of the
                      expected level; 0 when nothing matched.
  hallucination       share of distinct predicted skills that are not in the SFIA 9 framework (a made-up
                      code or name).
  evidence_grounding  share of distinct predicted skills whose evidence phrase has >= 3 words and occurs
                      (case-insensitive, whitespace-normalised) in the input text.

Degenerate cases, chosen so the reward cannot be gamed:
  * invalid JSON or any schema fault: every component at its worst (json 0, f1 0, level 0,
    hallucination 1, evidence 0), so forge_score is 0.
  * an empty skills list earns no non-hallucination credit: hallucination = 1 when nothing is predicted
    (0 only when the example also expects no skills, because then the empty answer is exactly right).
  * duplicates: a skill predicted twice counts once; its first occurrence gives the level and evidence.
    So repeating a real skill cannot dilute the hallucination share or inflate the grounding share.
  * evidence shorter than 3 words does not count as grounded (otherwise "the" would always be found).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sfia.framework import load_framework

WEIGHTS = {
    "json_validity": 0.30,
    "skill_f1": 0.25,
    "level_within_1": 0.25,
    "hallucination": 0.15,  # enters as (1 - hallucination)
    "evidence_grounding": 0.05,
}
COMPONENTS = ("json_validity", "skill_f1", "level_within_1", "hallucination", "evidence_grounding", "forge_score")
MIN_EVIDENCE_WORDS = 3

_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Predicted:
    key: str  # the SFIA code when known, else "?" + the raw normalised code/name
    known: bool
    level: int
    evidence: str | None


def strip_fence(text: str) -> str:
    """Strip whitespace and one optional Markdown code fence (``` or ```json).

    >>> strip_fence('  ```json\\n{"a": 1}\\n```  ')
    '{"a": 1}'
    """
    t = text.strip()
    m = _FENCE.match(t)
    return m.group(1).strip() if m else t


def can_still_parse(prefix: str) -> bool | None:
    """Whether a reply that starts with `prefix` can still be schema-valid JSON, judged on its start only.

    False: no continuation can parse (whatever follows, forge_score is 0), so a scorer may stop generating it;
    True: the start is right (a `{`, or a ``` fence then `{`), stop asking; None: too early to say. It never says
    False for a reply that `parse_reply` could accept (tested with hypothesis), so stopping on it is lossless.

    >>> can_still_parse("Here is the JSON"), can_still_parse("  ```js"), can_still_parse("```json\\n{")
    (False, None, True)
    """
    t = prefix.lstrip()
    if not t:
        return None
    if t[0] == "{":
        return True
    if not t.startswith("```"):
        return None if "```".startswith(t) else False
    rest = t[3:]
    after = rest[len(rest) - len(rest.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")):].lstrip()
    if not after:
        return None
    return after[0] == "{"


def parse_reply(completion: str) -> list[Predicted] | None:
    """The distinct predicted skills in reply order, or None when the reply is not schema-valid JSON."""
    try:
        obj = json.loads(strip_fence(completion))
    except (ValueError, TypeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("skills"), list) or not isinstance(obj.get("rationale"), str):
        return None
    fw = load_framework()
    out: dict[str, Predicted] = {}
    for item in obj["skills"]:
        if not isinstance(item, dict):
            return None
        code, name, level, ev = item.get("code"), item.get("name"), item.get("level"), item.get("evidence")
        if code is None and name is None:
            return None
        if any(v is not None and (not isinstance(v, str) or not v.strip()) for v in (code, name)):
            return None
        if type(level) is not int or not 1 <= level <= 7:
            return None
        if ev is not None and not isinstance(ev, str):
            return None
        skill = fw.by_code(code) if code is not None else fw.by_name(name)
        key = skill.code if skill else "?" + " ".join(str(code if code is not None else name).split()).casefold()
        if key not in out:
            out[key] = Predicted(key=key, known=skill is not None, level=level, evidence=ev)
    return list(out.values())


def _norm_text(s: str) -> str:
    return " ".join(s.split()).casefold()


def _grounded(evidence: str | None, input_text: str) -> bool:
    if not evidence or len(evidence.split()) < MIN_EVIDENCE_WORDS:
        return False
    return _norm_text(evidence) in _norm_text(input_text)


def _worst() -> dict[str, float]:
    return {"json_validity": 0.0, "skill_f1": 0.0, "level_within_1": 0.0, "hallucination": 1.0,
            "evidence_grounding": 0.0, "forge_score": 0.0}


def combine(c: dict[str, float]) -> float:
    """The weighted sum; the single place the seed's weights are applied."""
    total = (WEIGHTS["json_validity"] * c["json_validity"] + WEIGHTS["skill_f1"] * c["skill_f1"]
             + WEIGHTS["level_within_1"] * c["level_within_1"] + WEIGHTS["hallucination"] * (1.0 - c["hallucination"])
             + WEIGHTS["evidence_grounding"] * c["evidence_grounding"])
    return round(total, 12)  # so a perfect reply scores exactly 1.0, not 1.0000000000000002


def reward_components(completion: str, example: dict) -> dict[str, float]:
    """All five components and forge_score for one reply against one example {"input", "skills":[{code, level}]}.

    >>> ex = {"input": "Writes and maintains application code independently.",
    ...       "skills": [{"code": "PROG", "level": 4}]}
    >>> r = reward_components('{"skills":[{"code":"PROG","level":5,"evidence":"maintains application code"}],"rationale":"x"}', ex)
    >>> r["forge_score"], r["skill_f1"], r["hallucination"]
    (1.0, 1.0, 0.0)
    >>> reward_components("not json", ex)["forge_score"]
    0.0
    """
    preds = parse_reply(completion)
    if preds is None:
        return _worst()
    expected = {str(s["code"]).strip().upper(): int(s["level"]) for s in example.get("skills") or []}
    pred_codes = {p.key for p in preds}
    tp = [p for p in preds if p.key in expected]
    if not preds and not expected:
        f1 = 1.0
    elif not tp:
        f1 = 0.0
    else:
        precision, recall = len(tp) / len(pred_codes), len(tp) / len(expected)
        f1 = 2 * precision * recall / (precision + recall)
    level = sum(abs(p.level - expected[p.key]) <= 1 for p in tp) / len(tp) if tp else 0.0
    if preds:
        halluc = sum(not p.known for p in preds) / len(preds)
        grounding = sum(_grounded(p.evidence, example.get("input", "")) for p in preds) / len(preds)
    else:
        halluc, grounding = (0.0 if not expected else 1.0), 0.0
    comps = {"json_validity": 1.0, "skill_f1": f1, "level_within_1": level, "hallucination": halluc,
             "evidence_grounding": grounding}
    comps["forge_score"] = combine(comps)
    return comps


def forge_score(completion: str, example: dict) -> float:
    """The composite for one reply.

    >>> forge_score('{"skills":[],"rationale":"none"}', {"input": "Benefits only.", "skills": [{"code": "PROG", "level": 3}]})
    0.3
    """
    return reward_components(completion, example)["forge_score"]


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each component over many replies (the gold-set score); {} for no rows.

    >>> aggregate([{"skill_f1": 0.5, "forge_score": 1.0}, {"skill_f1": 0.5, "forge_score": 0.0}])
    {'skill_f1': 0.5, 'forge_score': 0.5}
    """
    if not rows:
        return {}
    keys = [k for k in COMPONENTS if k in rows[0]] + [k for k in rows[0] if k not in COMPONENTS]
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys}
