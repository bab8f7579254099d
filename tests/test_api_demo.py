"""The API tuning target on a real service: every correct knob gives the gold answers, wrong caches are
caught and rejected, the baseline measured against itself is never kept, a real speed-up is."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "targets"))

from api_demo import config as knobs  # noqa: E402
from api_demo import data  # noqa: E402
from api_demo.gold import write_gold  # noqa: E402
from api_demo.service import demo_service  # noqa: E402

from autoloop.services.calls import load_calls  # noqa: E402
from autoloop.services.measure import measure_interleaved, scores_from  # noqa: E402

from autoloop.decide import decide  # noqa: E402
from autoloop.target import Candidate, TargetError, load_target  # noqa: E402

ROWS, CALLS = 5000, 60
FAST = {"index_skill_level": True, "index_location": True, "search_query": "join", "detail_query": "pk",
        "stats_query": "eq", "cache": "lru", "cache_size": 256, "workers": 4, "sqlite_cache_kb": 16000,
        "mmap_mb": 64}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 5000-profile database and its own gold calls (hashes from the Python reference)."""
    cache = tmp_path_factory.mktemp("api_cache")
    gold = write_gold(cache / "gold.jsonl", ROWS, 0, CALLS, cache_dir=cache)
    tgt = load_target(ROOT / "targets" / "api_tuning.py")
    t = type(tgt)(gold=gold, repeats=6, score_repeats=2, cache_dir=cache, proposer="tpe")
    return t, cache, gold


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """20000 profiles: enough that the slow formulations cost far more than the noise."""
    cache = tmp_path_factory.mktemp("api_cache20k")
    gold = write_gold(cache / "gold.jsonl", 20_000, 0, CALLS, cache_dir=cache)
    tgt = load_target(ROOT / "targets" / "api_tuning.py")
    return type(tgt)(gold=gold, cache_dir=cache, proposer="tpe"), cache, gold


def states(tmp_path: Path, t, *cfgs: dict) -> list[Path]:
    out = []
    for i, cfg in enumerate(cfgs):
        d = tmp_path / f"state{i}"
        t.setup(d)
        t.run(Candidate(params=cfg), d, time.time() + 60)
        out.append(d)
    return out


def keep(inc, cand, t) -> object:
    return decide(cand.score, inc.score, t.direction, min_delta=t.min_delta, cand_components=cand.components,
                  inc_components=inc.components, guards=t.guards, cand_items=cand.items, inc_items=inc.items,
                  bootstrap=t.bootstrap)


def test_every_correct_knob_returns_the_gold_answers(small, tmp_path):
    t, cache, gold = small
    variants = [dict(knobs.BASELINE), knobs.validate(FAST)]
    for k, (kind, *rest) in knobs.SPACE.items():
        values = rest[0] if kind == "cat" else [rest[1]]  # the far end of a numeric range
        for v in values:
            if k == "cache" and v in knobs.WRONG_CACHES or v == knobs.BASELINE[k]:
                continue
            variants.append(knobs.validate({**knobs.BASELINE, k: v, **({"cache": "lru"} if k == "cache_size" else {})}))
    _, calls = load_calls(gold)
    base = data.ensure_db(ROWS, 0, cache)
    services = [demo_service(cfg, base, tmp_path / f"s{i}") for i, cfg in enumerate(variants)]
    try:
        for s in services:
            s.start()
        results = measure_interleaved(services, calls, repeats=2, concurrency=4)
    finally:
        for s in services:
            s.stop()
    for cfg, res in zip(variants, results):
        sc = scores_from(res)
        assert sc.components["correctness"] == 1.0, (knobs.summary(cfg), sc.info["wrong_calls"])
        assert len(sc.items) == 2 * CALLS and all(v > 0 for v in sc.items.values())
    assert len(variants) >= 12


@pytest.mark.parametrize("wrong", ["ttl", "lru_pathkey"])
def test_a_wrong_cache_is_caught_and_never_kept(small, tmp_path, wrong):
    t, _, gold = small
    inc_state, cand_state = states(tmp_path, t, {}, {**FAST, "cache": wrong, "cache_ttl_s": 120.0})
    inc, cand = t.compare(inc_state, cand_state, gold)
    assert inc.components["correctness"] == 1.0
    assert 0 < cand.components["correctness"] < 1.0
    assert "wrong answers; full comparison skipped" in cand.info["screen"]
    assert cand.info["wrong_calls"] and cand.feedback
    d = keep(inc, cand, t)
    assert not d.keep and "guard correctness" in d.reason


@pytest.mark.slow  # ~20-30 s: runs in .ci/run's slow step, keeping the README's test command under 10 minutes
def test_baseline_against_itself_is_never_kept(medium, tmp_path):
    """The target's real keep rule (8 interleaved repeats, block bootstrap, 10% bar) on two copies of
    the baseline: whatever the noise, no iteration may claim an improvement."""
    t, _, gold = medium
    a, b = states(tmp_path, t, {}, {})
    for _ in range(4):
        inc, cand = t.compare(a, b, gold)
        assert "screen" not in cand.info  # equal configs always get the full measurement
        units = {k.split("/")[0] for k in cand.items}
        assert units == {k.split("/")[0] for k in inc.items} and len(units) == t.repeats * 8
        assert len(cand.items) == t.repeats * CALLS
        assert cand.components["correctness"] == inc.components["correctness"] == 1.0
        d = keep(inc, cand, t)
        assert not d.keep, d.reason
        lo, hi = cand.info["p95_ratio_ci"]
        assert lo <= cand.info["p95_ratio"] <= hi and (lo, hi) == pytest.approx(d.ci, abs=1e-4)


def test_a_real_speedup_is_kept_with_its_interval(medium, tmp_path):
    t, _, gold = medium
    inc_state, cand_state = states(tmp_path, t, {}, FAST)
    inc, cand = t.compare(inc_state, cand_state, gold)
    d = keep(inc, cand, t)
    assert d.keep, d.reason
    assert d.ci[1] < 0.90 and cand.info["p95_ratio_ci"][1] < 0.90 and cand.info["clears_noise"]
    assert cand.info["config"].startswith("index_skill_level=True")
    assert cand.components["p95_ms"] < inc.components["p95_ms"]


def test_a_clearly_slower_candidate_is_screened_out(medium, tmp_path):
    t, _, gold = medium
    fast, slow = states(tmp_path, t, FAST, {})
    inc, cand = t.compare(fast, slow, gold)  # the baseline challenging a fast incumbent
    assert cand.info["screen"].startswith("screen: p95") and len(cand.items) == CALLS  # one repeat only
    assert not keep(inc, cand, t).keep


def test_score_of_the_baseline_state(small, tmp_path):
    t, _, gold = small
    (s,) = states(tmp_path, t, {})
    sc = t.score(s, gold)
    assert sc.is_finite() and sc.score == pytest.approx(sc.components["p95_ms"])
    assert sc.components["correctness"] == 1.0 and sc.info["config"] == "baseline"
    assert sc.info["p50_ms"] <= sc.info["p95_ms"] <= sc.info["p99_ms"]


def test_bad_knobs_are_one_line_errors(small, tmp_path):
    t, _, _ = small
    (s,) = states(tmp_path, t, {})
    with pytest.raises(TargetError, match="unknown knob 'wokers'"):
        t.run(Candidate(params={"wokers": 2}), s, time.time() + 5)
    with pytest.raises(TargetError, match=r"workers=99 must be a number in \[1, 8\]"):
        t.run(Candidate(params={"workers": 99}), s, time.time() + 5)
    (s / "config.json").write_text("{not json")
    with pytest.raises(TargetError, match=r"config.json:1: invalid JSON"):
        t.score(s, t.gold)
    assert json.loads((ROOT / "gold" / "api_calls.jsonl").read_text().splitlines()[0])["_meta"]["rows"] == 200_000


def test_proposer_learns_endpoint_p95s_from_paired_ratios(small):
    """A candidate's value is its paired per-endpoint p95 ratio (geometric mean) times the incumbent's value, so background
    load that inflated every absolute latency of an iteration cancels out; wrong answers make it infeasible (the
    constraint, its share of wrong answers), a crash is a failed trial."""
    from autoloop.history import History, IterationRecord

    t, _, _ = small
    ok = {"correctness": 1.0}
    h = History(run_id="x", direction="min", iterations=[
        IterationRecord(iter=0, status="keep", params={}, score=100.0, components=ok, info={"gm_p95_ms": 40.0}),
        IterationRecord(iter=1, status="revert", params={**knobs.BASELINE, "cache": "ttl"}, score=1.0,
                        components={"correctness": 0.9}, info={"gm_ratio": 0.01}),
        IterationRecord(iter=2, status="keep", params={**knobs.BASELINE, "workers": 2}, score=400.0,
                        components=ok, info={"gm_ratio": 0.5, "gm_p95_ms": 90.0}),  # measured under heavy load
        IterationRecord(iter=3, status="revert", params={**knobs.BASELINE, "workers": 3}, score=90.0,
                        components=ok, info={"gm_ratio": 1.2}),
        IterationRecord(iter=4, status="crash", params={**knobs.BASELINE, "workers": 4})])
    from api_tuning import _sampler_value, _trials  # the target's hooks

    vals = [_sampler_value(r, h) for r in h.iterations]
    assert vals == [40.0, pytest.approx(0.4), 20.0, pytest.approx(24.0), None]
    assert [_trials(r, h)[0][2] for r in h.iterations] == [0.0, pytest.approx(0.1), 0.0, 0.0, 0.0]
    batch = t.propose_batch(h, t.batch)  # the engine's batch step asks for the target's batch (6)
    assert len(batch) == 6 and all(knobs.validate(c.params) for c in batch)
    assert len({json.dumps(c.params, sort_keys=True) for c in batch}) == 6
    assert [c.description.split(":")[0] for c in batch] == ["tpe", "tpe", "neighbour", "neighbour", "random", "random"]


def test_screen_measures_every_member_beside_the_incumbent_and_the_sampler_hears_each(small, tmp_path):
    """The engine's batch screen: one interleaved replay of the incumbent and every member; a wrong cache
    shows as correctness < 1; each member's paired ratio and share of wrong answers reach the sampler."""
    from autoloop.history import History, IterationRecord
    from api_tuning import _trials

    t, _, gold = small
    wrong_fast = {**FAST, "cache": "lru_pathkey"}
    slow = {**knobs.BASELINE, "mmap_mb": 64}
    inc_state, *members = states(tmp_path, t, {}, slow, wrong_fast, FAST)
    inc_sc, screened = t.screen(inc_state, members, gold)
    assert len(screened) == 3 and inc_sc.components["correctness"] == 1.0
    by = {s.info["config"]: s for s in screened}
    assert by[knobs.summary(knobs.validate(wrong_fast))].components["correctness"] < 1.0
    assert all(s.components["correctness"] == 1.0 for cfg, s in by.items() if cfg != knobs.summary(knobs.validate(wrong_fast)))
    assert all(s.info["config_params"] == knobs.load(m / "config.json") for s, m in zip(screened, members))
    assert all(isinstance(s.info["gm_ratio"], float) for s in screened)
    # The engine measured FAST in full (say); what the sampler is told: that config with its value, the
    # other members by their screened ratios, the wrong one infeasible.
    inc, cand = t.compare(inc_state, members[2], gold)
    assert cand.info["config_params"] == knobs.validate(FAST)
    trials = [{"member": k, "params": c, "status": "ok", "components": s.components, "info": s.info,
               "chosen": k == 2, "score": cand.score if k == 2 else None, "screen_score": s.score}
              for k, (c, s) in enumerate(zip((slow, wrong_fast, FAST), screened))]
    h = History(run_id="x", direction="min", iterations=[
        IterationRecord(iter=0, status="keep", params={}, score=inc.score, components=inc.components,
                        info={**inc.info, "gm_p95_ms": 10.0}),
        IterationRecord(iter=1, status="keep", params=FAST, score=cand.score, components=cand.components,
                        info=cand.info, trials=trials)])
    got = _trials(h.iterations[1], h)
    assert got[0] == (knobs.validate(FAST), pytest.approx(10.0 * cand.info["gm_ratio"]), 0.0)
    values = {knobs.summary(c): (v, wrong) for c, v, wrong in got[1:]}
    v, wrong = values[knobs.summary(knobs.validate(wrong_fast))]
    assert wrong > 0 and v == pytest.approx(10.0 * by[knobs.summary(knobs.validate(wrong_fast))].info["gm_ratio"])
    assert values[knobs.summary(knobs.validate(slow))] == (
        pytest.approx(10.0 * by[knobs.summary(knobs.validate(slow))].info["gm_ratio"]), 0.0)
    # A crashed member is a failed trial, never a value.
    h.iterations[1].trials.append({"member": 3, "params": {**FAST, "workers": 2}, "status": "crash", "chosen": False})
    assert _trials(h.iterations[1], h)[-1] == ({**FAST, "workers": 2}, None, 0.0)


def test_a_config_with_exactly_one_wrong_answer_is_rejected_though_faster(small, tmp_path):
    """A stale cache that gets one call of the benchmark wrong: correctness 4/5 and the guard says no,
    however much faster it is."""
    from api_demo.reference import Reference, response_hash

    t, cache, gold = small
    meta, _ = load_calls(gold)
    ref = Reference(data.ensure_db(ROWS, 0, cache))
    pid = sorted(ref.profiles)[7]
    was = bool(ref.profiles[pid][5])
    plan = [("GET", f"/profiles/{pid}", None), ("GET", "/search?skill=PROG&min_level=3", None),
            ("POST", f"/profiles/{pid}/availability", {"available": not was}), ("GET", f"/profiles/{pid}", None),
            ("POST", f"/profiles/{pid}/availability", {"available": was})]
    lines = [{"_meta": meta}]
    for i, (method, path, body) in enumerate(plan):
        status, obj = ref.answer(method, path, body)
        lines.append({"id": f"k{i}", "method": method, "path": path, "body": body, "barrier": method != "GET",
                      "expect": response_hash(status, obj)})
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps(x) + "\n" for x in lines))
    inc_state, cand_state = states(tmp_path, t, {}, {**FAST, "cache": "ttl", "cache_ttl_s": 120.0})
    inc, cand = t.compare(inc_state, cand_state, calls)
    assert inc.components["correctness"] == 1.0
    assert cand.info["wrong_calls"] == ["k3"] and cand.components["correctness"] == pytest.approx(4 / 5)
    d = keep(inc, cand, t)
    assert not d.keep and "guard correctness" in d.reason


def test_endpoints_and_the_geometric_mean_ratio_the_sampler_learns():
    from autoloop.services.measure import gm_ratio
    from autoloop.services.replay import ReplayResult, endpoint_of

    assert endpoint_of({"method": "GET", "path": "/profiles/1856?x=1"}) == "GET /profiles/{id}"
    assert endpoint_of({"method": "POST", "path": "/profiles/7/availability"}) == "POST /profiles/{id}/availability"
    r = ReplayResult(latency_ms={"a": 10.0, "b": 40.0}, correct={"a": True, "b": True},
                     endpoint={"a": "GET /search", "b": "GET /stats/skills"})
    inc = scores_from([r])
    assert inc.info["endpoint_p95_ms"] == {"GET /search": 10.0, "GET /stats/skills": 40.0}
    assert inc.info["gm_p95_ms"] == pytest.approx(20.0)
    # the stats endpoint 4x faster, search unchanged: credited by its factor, sqrt(1 x 1/4) = 0.5
    faster = scores_from([ReplayResult(latency_ms={"a": 10.0, "b": 10.0}, correct={"a": True, "b": True},
                                       endpoint=r.endpoint)])
    assert gm_ratio(faster.info, inc.info) == pytest.approx(0.5)


@pytest.mark.parametrize("env, says", [({"API_TUNING_BATCH": "abc"}, "API_TUNING_BATCH='abc': must be a whole number"),
                                       ({"API_TUNING_EXPLORE": "9"}, "explore=9 + neighbours=0 must leave")])
def test_bad_environment_overrides_are_one_line_errors_and_write_nothing(tmp_path, env, says):
    import os
    import subprocess

    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "autoloop", "run", "targets/api_tuning.py", "--no-progress"], cwd=ROOT,
                       env={**os.environ, "AUTOLOOP_RUNS_DIR": str(runs), **env}, capture_output=True, text=True)
    assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())
