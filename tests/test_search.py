"""autoloop.proposers.search: search spaces and the Optuna / random proposers, driven by synthetic histories."""
from __future__ import annotations

import math
import random

import pytest

from autoloop.history import History, IterationRecord
from autoloop.proposers.search import OptunaProposer, RandomProposer, SearchExhausted, SearchSpace
from autoloop.target import TargetError

SPACE = {"x": ("float", -5.0, 5.0), "n": ("int", 1, 64, True), "mode": ("cat", ["a", "b", "c"]),
         "flag": ("cat", [False, True])}


def objective(p: dict) -> float:
    """A synthetic latency: minimal at x=1.5, n=8, mode=b, flag=True."""
    return (p["x"] - 1.5) ** 2 + abs(math.log2(p["n"]) - 3) + {"a": 3, "b": 0, "c": 1}[p["mode"]] + (0 if p["flag"] else 2)


def drive(proposer, n_iters: int, fail_if=None, direction: str = "min") -> History:
    """A tiny engine stand-in: propose, score with the objective, record keep/revert (or a crash)."""
    h = History(run_id="t", direction=direction)
    best = None
    for i in range(n_iters):
        cand = proposer.propose(h)
        if fail_if and fail_if(cand.params):
            h.iterations.append(IterationRecord(iter=i, status="crash", params=cand.params))
            continue
        v = objective(cand.params) * (1 if direction == "min" else -1)
        keep = best is None or (v < best if direction == "min" else v > best)
        best = v if keep else best
        h.iterations.append(IterationRecord(iter=i, status="keep" if keep else "revert", params=cand.params,
                                            description=cand.description, score=v))
    return h


def best_of(h: History) -> float:
    return min(objective(r.params) for r in h if r.score is not None)


def test_space_from_plain_dict_validates_and_samples():
    import random

    s = SearchSpace(SPACE)
    assert s.names == ["x", "n", "mode", "flag"]
    assert s.size() is None  # a float makes it unbounded
    assert SearchSpace({"m": ("cat", ["a", "b"]), "k": ("int", 1, 3)}).size() == 6
    rng = random.Random(0)
    for _ in range(200):
        assert s.contains(s.sample(rng))
    assert not s.contains({"x": 9.0, "n": 2, "mode": "a", "flag": True})
    assert not s.contains({"x": 0.0, "n": 2, "mode": "a", "flag": 1})  # 1 is not the choice True
    assert s.complete({"x": 0.0}, {"n": 4, "mode": "c", "flag": False, "extra": 1}) == {
        "x": 0.0, "n": 4, "mode": "c", "flag": False}
    assert s.complete({"x": 0.0}) is None


@pytest.mark.parametrize("bad", [{"x": ("float", 1.0)}, {"x": ("nope", 1, 2)}, {"x": ("int", 5, 1)}, {}, {"x": 3}])
def test_bad_space_is_one_line_target_error(bad):
    with pytest.raises(TargetError) as e:
        SearchSpace(bad)
    assert "\n" not in str(e.value)


def test_bad_sampler_name():
    with pytest.raises(TargetError, match="sampler"):
        OptunaProposer(SPACE, sampler="cmaes-ish")


@pytest.mark.parametrize("cls,kw", [(OptunaProposer, {"sampler": "tpe"}), (OptunaProposer, {"sampler": "random"}),
                                    (RandomProposer, {})])
def test_never_repeats_a_tried_config_in_a_small_finite_space(cls, kw):
    space = {"m": ("cat", ["a", "b", "c"]), "k": ("int", 1, 3)}
    p = cls(space, seed=1, **kw)
    h = History(run_id="t", direction="min")
    seen = set()
    for i in range(9):
        c = p.propose(h)
        key = (c.params["m"], c.params["k"])
        assert key not in seen
        seen.add(key)
        h.iterations.append(IterationRecord(iter=i, status="revert", params=c.params, score=float(i)))
    assert len(seen) == 9
    with pytest.raises(SearchExhausted):
        p.propose(h)


def test_baseline_params_come_from_defaults_and_count_as_tried():
    space = {"m": ("cat", ["a", "b"])}
    p = OptunaProposer(space, seed=0, defaults={"m": "a"})
    h = History(run_id="t", direction="min", iterations=[IterationRecord(iter=0, status="keep", params={}, score=1.0)])
    c = p.propose(h)
    assert c.params == {"m": "b"}  # "a" is the baseline, already measured
    assert c.description.startswith("tpe: m=b")


def test_failures_become_fail_trials_and_are_not_retried():
    p = OptunaProposer(SPACE, seed=3)
    h = drive(p, 12, fail_if=lambda q: q["mode"] == "a")
    crashed = [r for r in h if r.status == "crash"]
    assert crashed, "the seed should have hit mode=a at least once"
    keys = [SearchSpace.key(r.params) for r in h]
    assert len(keys) == len(set(keys))


def test_resume_proposes_the_same_as_an_uninterrupted_run():
    """No state outside the history: a fresh proposer on the same history gives the same candidate."""
    h = drive(OptunaProposer(SPACE, seed=7), 8)
    a = OptunaProposer(SPACE, seed=7).propose(h)
    b = OptunaProposer(SPACE, seed=7).propose(h)
    assert a.params == b.params
    r1, r2 = RandomProposer(SPACE, seed=7).propose(h), RandomProposer(SPACE, seed=7).propose(h)
    assert r1.params == r2.params


def test_direction_comes_from_history():
    """With direction max and negated scores TPE still homes in on the same optimum."""
    h = drive(OptunaProposer(SPACE, seed=0, n_startup_trials=5), 30, direction="max")
    assert best_of(h) < 2.0


def test_value_hook_turns_records_into_failures():
    """A target can hide records from the sampler (e.g. wrong answers) by returning None."""
    p = OptunaProposer({"m": ("cat", ["a", "b", "c"])}, seed=0, value=lambda r, h: None)
    h = History(run_id="t", direction="min", iterations=[
        IterationRecord(iter=0, status="revert", params={"m": "a"}, score=0.1)])
    assert p.propose(h).params["m"] in ("b", "c")


def test_tpe_beats_random_on_a_synthetic_objective():
    """Over 5 seeds and 30 iterations each, TPE's best is better than random search's on average."""
    tpe = [best_of(drive(OptunaProposer(SPACE, seed=s, n_startup_trials=8), 30)) for s in range(5)]
    rnd = [best_of(drive(RandomProposer(SPACE, seed=s), 30)) for s in range(5)]
    assert sum(tpe) / 5 < sum(rnd) / 5, (tpe, rnd)


def test_describe_hook_writes_the_description():
    p = RandomProposer({"m": ("cat", ["a", "b"])}, seed=0, describe=lambda q: f"mode {q['m']}")
    c = p.propose(History(run_id="t", direction="min"))
    assert c.description == f"random: mode {c.params['m']}"


def test_a_batch_is_distinct_untried_configs_with_its_exploration_share():
    space = {"m": ("cat", ["a", "b", "c", "d"]), "k": ("int", 1, 4)}
    h = History(run_id="t", direction="min", iterations=[
        IterationRecord(iter=0, status="keep", params={"m": "a", "k": 1}, score=5.0)])
    p = OptunaProposer(space, seed=2, batch=5, explore=2, n_startup_trials=1)
    c = p.propose(h)
    configs = [{k: v for k, v in c.params.items() if k != "alternatives"}] + c.params["alternatives"]
    keys = {SearchSpace.key(q) for q in configs}
    assert len(configs) == 5 and len(keys) == 5 and SearchSpace.key({"m": "a", "k": 1}) not in keys
    assert c.description == "tpe: screen 5 configs (3 tpe + 2 random), measure the best in full"
    assert OptunaProposer(space, seed=2, batch=5, explore=2, n_startup_trials=1).propose(h).params == c.params
    with pytest.raises(TargetError, match="explore"):
        OptunaProposer(space, batch=3, explore=3)
    with pytest.raises(TargetError, match="batch"):
        RandomProposer(space, batch=0)


def test_the_trials_hook_feeds_every_screened_config_to_the_sampler_and_to_dedup():
    """An iteration that screened several configs counts each as tried (never proposed again)."""
    space = {"m": ("cat", ["a", "b", "c"])}

    def trials(rec, history):
        return [({"m": x}, 1.0) for x in rec.info.get("screened", [])] + [(rec.params, rec.score)]

    h = History(run_id="t", direction="min", iterations=[
        IterationRecord(iter=0, status="keep", params={"m": "a"}, score=5.0, info={"screened": ["b"]})])
    for cls in (OptunaProposer, RandomProposer):
        assert cls(space, seed=0, trials=trials).propose(h).params == {"m": "c"}


def test_neighbours_change_one_knob_of_the_best_config_so_far():
    space = {"a": ("cat", ["x", "y", "z"]), "b": ("cat", [False, True]), "n": ("int", 1, 50)}
    best = {"a": "y", "b": True, "n": 7}
    h = History(run_id="t", direction="min", iterations=[
        IterationRecord(iter=0, status="keep", params={"a": "x", "b": False, "n": 1}, score=9.0),
        IterationRecord(iter=1, status="keep", params=best, score=1.0),
        IterationRecord(iter=2, status="revert", params={"a": "z", "b": False, "n": 40}, score=5.0)])
    c = OptunaProposer(space, seed=4, batch=4, neighbours=2, explore=1, n_startup_trials=1, ablate=False).propose(h)
    assert c.description.endswith("(1 tpe + 2 neighbours + 1 random), measure the best in full")
    local = c.params["alternatives"][:2]
    for p in local:
        assert sum(p[k] != best[k] for k in space) == 1, p  # one knob away from the best
    with pytest.raises(TargetError, match="at least one"):
        OptunaProposer(space, batch=4, neighbours=2, explore=2)


def test_the_description_names_the_batch_as_it_was_drawn():
    """Before any config has a value there is no best to take neighbours of: random fills in, and says so."""
    space = {"a": ("cat", ["x", "y", "z"]), "n": ("int", 1, 50)}
    c = OptunaProposer(space, seed=1, batch=4, neighbours=2, explore=1).propose(History(run_id="t", direction="min"))
    assert c.description == "tpe: screen 4 configs (1 tpe + 3 random), measure the best in full"


def test_after_a_bundled_keep_each_changed_knob_is_ablated_in_turn():
    """A keep that changed two knobs: the next proposals set each back, one at a time, then the sampler resumes;
    in a batch the ablations come first and take the neighbours' places."""
    space = {"index": ("cat", [False, True]), "slow_log": ("cat", [False, True]), "n": ("int", 1, 50)}
    base = {"index": False, "slow_log": False, "n": 1}
    recs = [IterationRecord(iter=0, status="keep", params={}, score=10.0),
            IterationRecord(iter=1, status="keep", params={"index": True, "slow_log": True, "n": 1}, score=4.0)]
    prop = OptunaProposer(space, seed=0, defaults=base, n_startup_trials=1)
    c = prop.propose(History(run_id="t", direction="min", iterations=recs))
    assert c.params == {"index": False, "slow_log": True, "n": 1} and c.description == "ablation: index=False"
    recs.append(IterationRecord(iter=2, status="revert", params=c.params, score=9.0))
    c = prop.propose(History(run_id="t", direction="min", iterations=recs))
    assert c.params == {"index": True, "slow_log": False, "n": 1} and c.description == "ablation: slow_log=False"
    recs.append(IterationRecord(iter=3, status="keep", params=c.params, score=1.0))
    c = prop.propose(History(run_id="t", direction="min", iterations=recs))  # a one-knob keep: nothing to ablate
    assert c.description.startswith("tpe: ")
    # batch: both ablations of iteration 1's keep first, then the sampler, neighbours and random as asked
    c = OptunaProposer(space, seed=0, defaults=base, batch=5, neighbours=2, explore=1).propose(
        History(run_id="t", direction="min", iterations=recs[:2]))
    assert [c.params["index"], c.params["slow_log"]] == [False, True]
    assert c.params["alternatives"][0] == {"index": True, "slow_log": False, "n": 1}
    assert c.description == "tpe: screen 5 configs (2 ablations + 2 tpe + 1 random), measure the best in full"
    # a keep that changed three knobs, batch 6 = 2 tpe + 2 neighbours + 2 random: ablations take the neighbours'
    # places only, so the sampler and the random members keep theirs
    wide = [recs[0], IterationRecord(iter=1, status="keep", params={"index": True, "slow_log": True, "n": 9}, score=4.0)]
    c = OptunaProposer(space, seed=0, defaults=base, batch=6, neighbours=2, explore=2).propose(
        History(run_id="t", direction="min", iterations=wide))
    assert c.description == "tpe: screen 6 configs (2 ablations + 2 tpe + 2 random), measure the best in full"
    assert OptunaProposer(space, seed=0, defaults=base, ablate=False).propose(
        History(run_id="t", direction="min", iterations=recs[:2])).description.startswith("tpe: ")


def test_configs_with_wrong_answers_are_infeasible_to_tpe():
    """A trap value is the fastest but gives wrong answers. Told as a constraint, TPE ranks it below every
    correct config and rarely proposes it again; learning only the (fast) score, it chases the trap."""
    space = {"cache": ("cat", ["none", "lru", "trap"]), "x": ("int", 1, 30)}
    rng = random.Random(0)
    recs = [IterationRecord(iter=0, status="keep", params={"cache": "none", "x": 15}, score=30.0,
                            components={"correctness": 1.0})]
    for i in range(1, 25):
        cache, x = rng.choice(["none", "lru", "trap"]), rng.randint(1, 30)
        fast = {"none": 20.0, "lru": 15.0, "trap": 2.0}[cache] + x / 10
        recs.append(IterationRecord(iter=i, status="revert", params={"cache": cache, "x": x}, score=fast,
                                    components={"correctness": 0.9 if cache == "trap" else 1.0}))
    h = History(run_id="t", direction="min", iterations=recs)

    def wrong(rec, history):
        return 1.0 - rec.components["correctness"]

    def traps(**kw) -> int:
        return sum(OptunaProposer(space, seed=s, ablate=False, **kw).propose(h).params["cache"] == "trap"
                   for s in range(20))

    constrained, naive = traps(constraint=wrong), traps()
    assert constrained <= 4 and naive >= 12, (constrained, naive)
    # the constraint travels with the trial (also for configs reported through the trials hook)
    trial = OptunaProposer(space, constraint=wrong)._record_trials(recs[1], h)[0]
    assert trial[2] == pytest.approx(wrong(recs[1], h))


def test_the_knob_that_did_least_so_far_is_ablated_first():
    """Configs with slow_log=True have been slow in the history, configs with the index fast: slow_log goes first."""
    space = {"index": ("cat", [False, True]), "slow_log": ("cat", [False, True]), "n": ("int", 1, 50)}
    base = {"index": False, "slow_log": False, "n": 1}
    recs = [IterationRecord(iter=0, status="keep", params={}, score=10.0),
            IterationRecord(iter=1, status="revert", params={"index": False, "slow_log": True, "n": 30}, score=12.0),
            IterationRecord(iter=2, status="keep", params={"index": True, "slow_log": True, "n": 1}, score=4.0)]
    c = OptunaProposer(space, seed=0, defaults=base).propose(History(run_id="t", direction="min", iterations=recs))
    assert c.description == "ablation: slow_log=False"
