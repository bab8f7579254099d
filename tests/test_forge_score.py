"""forge_score: hand-computed cases for every component and the degenerate cases that must not be gameable."""
import doctest
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "targets"))

from sfia import forge_score as fs  # noqa: E402
from sfia.forge_score import aggregate, forge_score, reward_components  # noqa: E402

EX = {
    "input": "Role: developer. You will be writing and maintaining application code with broad direction. "
             "Another part of the job is running functional testing cycles under close supervision. "
             "We offer a generous pension.",
    "skills": [{"code": "PROG", "level": 4, "evidence": "writing and maintaining application code"},
               {"code": "TEST", "level": 1, "evidence": "running functional testing cycles"}],
}
PROG = {"code": "PROG", "level": 4, "evidence": "writing and maintaining application code"}
TEST = {"code": "TEST", "level": 1, "evidence": "running functional testing cycles"}


def reply(*skills, rationale="r"):
    return json.dumps({"skills": list(skills), "rationale": rationale})


def check(completion, **expected):
    got = reward_components(completion, EX)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), (k, got)
    return got


def test_perfect_reply_scores_one():
    got = check(reply(PROG, TEST), json_validity=1, skill_f1=1, level_within_1=1, hallucination=0,
                evidence_grounding=1)
    assert got["forge_score"] == 1.0
    assert set(got) == {"json_validity", "skill_f1", "level_within_1", "hallucination", "evidence_grounding", "forge_score"}


@pytest.mark.parametrize("bad", [
    '{"skills": [', "", "Sure! Here are the skills: PROG", "[]", '{"skills": []}',  # no rationale
    reply({"code": "PROG", "level": "4"}), reply({"code": "PROG", "level": 8}), reply({"code": "PROG", "level": 0}),
    reply({"code": "PROG", "level": 4.0}), reply({"code": "PROG", "level": True}), reply({"level": 4}),
    reply({"code": "", "level": 4}), reply({"code": "PROG", "level": 4, "evidence": 3}), reply("PROG"),
    json.dumps({"skills": {"code": "PROG"}, "rationale": "r"}), json.dumps({"skills": [PROG], "rationale": 5}),
])
def test_invalid_json_or_schema_puts_every_component_at_its_worst(bad):
    check(bad, json_validity=0, skill_f1=0, level_within_1=0, hallucination=1, evidence_grounding=0, forge_score=0)


def test_fenced_json_is_accepted():
    for fence in ("```json\n{}\n```", "```\n{}\n```", "  ```JSON\n{}```\n"):
        check(fence.replace("{}", reply(PROG, TEST)), json_validity=1, forge_score=1.0)


def test_name_instead_of_code_any_case():
    # only PROG, given by name: P=1, R=1/2 -> F1=2/3; forge = .30 + .25*2/3 + .25 + .15 + .05
    named = {"name": "programming/SOFTWARE  development", "level": 4, "evidence": PROG["evidence"]}
    check(reply(named), skill_f1=2 / 3, level_within_1=1, hallucination=0, evidence_grounding=1,
          forge_score=0.30 + 0.25 * 2 / 3 + 0.25 + 0.15 + 0.05)
    check(reply(dict(PROG, code="prog"), TEST), forge_score=1.0)  # codes are case-insensitive


def test_hallucinated_code():
    # {PROG, ?ZZZZ}: P=R=1/2 -> F1=.5; level 1/1; hallucination 1/2; grounding 1/2
    fake = {"code": "ZZZZ", "level": 3, "evidence": "inventing things"}
    check(reply(PROG, fake), skill_f1=0.5, level_within_1=1, hallucination=0.5, evidence_grounding=0.5,
          forge_score=0.30 + 0.125 + 0.25 + 0.075 + 0.025)
    # a made-up name counts as hallucinated too, and a present code decides over a name
    check(reply({"name": "Quantum wizardry", "level": 4}, PROG, TEST), hallucination=1 / 3)
    check(reply(dict(TEST, code="XXXX", name="Functional testing"), PROG), hallucination=0.5)


def test_level_off_by_two_and_by_one():
    check(reply(dict(PROG, level=6), TEST), skill_f1=1, level_within_1=0.5, forge_score=0.875)
    check(reply(dict(PROG, level=5), dict(TEST, level=2)), level_within_1=1, forge_score=1.0)


def test_partial_match():
    # only TEST, level 2 (within 1 of 1): F1 = 2/3
    check(reply(dict(TEST, level=2)), skill_f1=2 / 3, level_within_1=1, hallucination=0, evidence_grounding=1,
          forge_score=0.30 + 0.25 * 2 / 3 + 0.25 + 0.15 + 0.05)
    # a real but wrong skill: F1 0, no matched skill -> level 0, not hallucinated
    check(reply({"code": "DBAD", "level": 4, "evidence": "writing and maintaining application code"}),
          skill_f1=0, level_within_1=0, hallucination=0, evidence_grounding=1, forge_score=0.50)


def test_empty_list_earns_no_non_hallucination_credit():
    check(reply(), json_validity=1, skill_f1=0, level_within_1=0, hallucination=1, evidence_grounding=0,
          forge_score=0.30)
    # ...unless the example expects nothing: then the empty answer is exactly right
    got = reward_components(reply(), {"input": "We offer a pension.", "skills": []})
    assert got == {"json_validity": 1.0, "skill_f1": 1.0, "level_within_1": 0.0, "hallucination": 0.0,
                   "evidence_grounding": 0.0, "forge_score": 0.70}


def test_duplicates_count_once_and_cannot_dilute_hallucination():
    check(reply(PROG, dict(PROG, level=7, evidence="x"), TEST), forge_score=1.0)  # first occurrence wins
    fake = {"code": "ZZZZ", "level": 3}
    check(reply(fake, PROG, PROG, PROG, PROG), hallucination=0.5, skill_f1=2 * 0.5 * 0.5 / 1.0)


def test_evidence_missing_short_or_ungrounded():
    check(reply({"code": "PROG", "level": 4}, {"code": "TEST", "level": 1}), evidence_grounding=0, forge_score=0.95)
    check(reply(dict(PROG, evidence="code"), TEST), evidence_grounding=0.5)  # under 3 words never counts
    check(reply(dict(PROG, evidence="writing Python code daily"), TEST), evidence_grounding=0.5)
    spaced = dict(PROG, evidence="WRITING  and maintaining\nApplication code")  # case and whitespace normalised
    check(reply(spaced, TEST), evidence_grounding=1)


def test_forge_score_and_aggregate():
    assert forge_score(reply(PROG, TEST), EX) == 1.0
    rows = [reward_components(reply(PROG, TEST), EX), reward_components("nope", EX), reward_components(reply(), EX)]
    agg = aggregate(rows)
    assert agg["forge_score"] == pytest.approx((1.0 + 0.0 + 0.3) / 3)
    assert agg["json_validity"] == pytest.approx(2 / 3)
    assert agg["hallucination"] == pytest.approx(2 / 3)
    assert list(agg) == list(fs.COMPONENTS)
    assert aggregate([]) == {}


def test_weights_are_the_seed_weights():
    assert fs.WEIGHTS == {"json_validity": 0.30, "skill_f1": 0.25, "level_within_1": 0.25, "hallucination": 0.15,
                          "evidence_grounding": 0.05}


def test_doctests():
    res = doctest.testmod(fs)
    assert res.attempted >= 5 and res.failed == 0


# -- can_still_parse: the scorer may stop generating a reply it rules out, so it must never rule out a valid one
from hypothesis import given, settings, strategies as st  # noqa: E402

from sfia.forge_score import can_still_parse, parse_reply  # noqa: E402

VALID = json.dumps({"skills": [PROG], "rationale": "r"})
_pieces = st.sampled_from(["```", "```json", "json", "\n", " ", "\t", "\u00a0", "{", "}", "`", "Here is", "x",
                           VALID, '"skills"', ":", "[", "]", "JSON"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_pieces, max_size=8), st.data())
def test_can_still_parse_never_rules_out_a_reply_that_parses(parts, data):
    reply = "".join(parts)
    k = data.draw(st.integers(0, len(reply)))
    if can_still_parse(reply[:k]) is False:
        assert parse_reply(reply) is None


@pytest.mark.parametrize("reply", [VALID, "  " + VALID, "```json\n" + VALID + "\n```", "```\n\n" + VALID + "```",
                                   "```JSON " + VALID + "\n```\n"])
def test_no_prefix_of_a_valid_reply_is_ruled_out(reply):
    assert parse_reply(reply) is not None
    assert all(can_still_parse(reply[:k]) is not False for k in range(len(reply) + 1))


@pytest.mark.parametrize("reply", ["Here is the JSON:\n" + VALID, "https://x", "``x", "```json\nSure! " + VALID,
                                   "[" + VALID + "]"])
def test_replies_that_start_wrong_are_ruled_out_early(reply):
    assert parse_reply(reply) is None
    assert any(can_still_parse(reply[:k]) is False for k in range(12))
