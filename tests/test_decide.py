"""Keep/revert and stop rules: pure functions, checked case by case and by property."""
from __future__ import annotations

import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from autoloop.decide import LoopState, StopLimits, check_guards, decide, paired_bootstrap, stop_reason


def test_direction_and_min_delta() -> None:
    assert decide(0.6, 0.5, "max").keep
    assert not decide(0.4, 0.5, "max").keep
    assert decide(0.4, 0.5, "min").keep
    assert not decide(0.6, 0.5, "min").keep
    assert not decide(0.5, 0.5, "max").keep  # equal is not better
    assert not decide(0.505, 0.5, "max", min_delta=0.01).keep
    assert decide(0.52, 0.5, "max", min_delta=0.01).keep
    assert not decide(0.495, 0.5, "min", min_delta=0.01).keep
    assert decide(0.48, 0.5, "min", min_delta=0.01).keep


def test_guard_blocks_an_overall_win() -> None:
    d = decide(0.9, 0.5, "max", cand_components={"json_validity": 0.70}, inc_components={"json_validity": 0.95},
               guards={"json_validity": 0.05})
    assert not d.keep and "json_validity" in d.reason
    d = decide(0.9, 0.5, "max", cand_components={"json_validity": 0.92}, inc_components={"json_validity": 0.95},
               guards={"json_validity": 0.05})
    assert d.keep
    assert check_guards({}, {"c": 1.0}, {"c": 0.0}) is not None  # a vanished component is a violation
    assert check_guards({"c": 1.0}, {"c": 1.0}, {"c": 0.0}) is None


def test_bootstrap_needs_a_clear_interval() -> None:
    rng = random.Random(1)
    inc = {str(i): rng.random() for i in range(100)}
    noisy = {k: v + rng.gauss(0, 0.05) for k, v in inc.items()}
    better = {k: v + 0.1 + rng.gauss(0, 0.02) for k, v in inc.items()}
    boot = {"confidence": 0.95}
    assert decide(sum(better.values()) / 100, sum(inc.values()) / 100, "max", cand_items=better, inc_items=inc,
                  bootstrap=boot).keep
    d = decide(sum(noisy.values()) / 100 + 1e-3, sum(inc.values()) / 100, "max", cand_items=noisy, inc_items=inc,
               bootstrap={"confidence": 0.95, "threshold": 0.02})
    assert not d.keep and "within noise" in d.reason and d.ci is not None
    assert not decide(0.9, 0.5, "max", cand_items={"a": 1.0}, inc_items={"a": 0.0}, bootstrap=boot).keep  # 1 pair


def test_ratio_bootstrap_for_latency() -> None:
    inc = {f"rep{i}": 100.0 + i for i in range(6)}
    fast = {k: v / 3 for k, v in inc.items()}
    d = decide(34.0, 102.0, "min", cand_items=fast, inc_items=inc, bootstrap={"stat": "ratio", "threshold": 0.05})
    assert d.keep and d.ci[1] < 0.95
    same = {k: v * 0.99 for k, v in inc.items()}
    assert not decide(101.0, 102.0, "min", cand_items=same, inc_items=inc,
                      bootstrap={"stat": "ratio", "threshold": 0.05}).keep


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=40), st.integers(0, 10_000))
def test_identical_items_never_clear_noise(values, seed) -> None:
    items = {str(i): v for i, v in enumerate(values)}
    point, lo, hi, n = paired_bootstrap(items, items, seed=seed)
    assert point == lo == hi == 0.0 and n == len(values)
    assert not decide(0.5 + 1e-9, 0.5, "max", cand_items=items, inc_items=items, bootstrap={}).keep


def test_stop_rules_in_order() -> None:
    s = LoopState(direction="max", candidates_done=3, since_keep=2, best_score=0.5, cost=1.0, now=100.0)
    assert stop_reason(s, StopLimits()) is None
    assert stop_reason(s, StopLimits(max_iters=3)) == "max_iters"
    assert stop_reason(s, StopLimits(patience=2)) == "plateau"
    assert stop_reason(s, StopLimits(patience=3)) is None
    assert stop_reason(s, StopLimits(deadline=99.0)) == "max_time"
    assert stop_reason(s, StopLimits(max_cost=1.0)) == "max_cost"
    assert stop_reason(s, StopLimits(target_score=0.5)) == "target_score"
    s_min = LoopState(direction="min", best_score=0.5)
    assert stop_reason(s_min, StopLimits(target_score=0.6)) == "target_score"
    assert stop_reason(s_min, StopLimits(target_score=0.4)) is None
    s.stop_file_exists = True
    assert stop_reason(s, StopLimits(max_iters=3)) == "stop_file"


def test_a_revert_still_carries_its_interval() -> None:
    inc = {f"rep{i}": 100.0 + i for i in range(6)}
    fast = {k: v / 3 for k, v in inc.items()}
    d = decide(34.0, 102.0, "min", cand_components={"correctness": 0.99}, inc_components={"correctness": 1.0},
               guards={"correctness": 0.0}, cand_items=fast, inc_items=inc, bootstrap={"stat": "ratio"})
    assert not d.keep and "guard correctness" in d.reason and d.ci is not None and d.ci[1] < 0.5


def _latencies(seed: int, units: int = 16, per: int = 15, scale: float = 1.0) -> dict[str, float]:
    import random as _r

    rng = _r.Random(seed)
    return {f"u{u}/c{c}": scale * rng.lognormvariate(3, 0.6) for u in range(units) for c in range(per)}


def test_quantile_ratio_is_a_block_bootstrap_over_units() -> None:
    import numpy as np

    inc, cand = _latencies(1), _latencies(2, scale=1 / 3)
    point, lo, hi, n = paired_bootstrap(cand, inc, stat="quantile_ratio", q=95)
    assert n == 16  # units, not 240 calls
    assert point == pytest.approx(np.percentile(list(cand.values()), 95) / np.percentile(list(inc.values()), 95))
    assert lo <= point <= hi < 0.5
    boot = {"stat": "quantile_ratio", "q": 95, "threshold": 0.10}
    assert decide(point, 1.0, "min", cand_items=cand, inc_items=inc, bootstrap=boot).keep
    # Same distribution, other draws: never clears a 10% bar.
    for seed in range(10):
        a, b = _latencies(100 + seed), _latencies(200 + seed)
        p = paired_bootstrap(a, b, stat="quantile_ratio")[0]
        d = decide(p, 1.0, "min", cand_items=a, inc_items=b, bootstrap=boot)
        assert not d.keep, d.reason


def test_a_burst_inside_one_unit_widens_the_interval() -> None:
    inc, cand = _latencies(3), _latencies(4)
    burst = dict(inc)
    for c in range(15):
        burst[f"u5/c{c}"] *= 8  # the incumbent's unit 5 ran during a load spike
    _, lo0, hi0, _ = paired_bootstrap(cand, inc, stat="quantile_ratio")
    _, lo1, hi1, _ = paired_bootstrap(cand, burst, stat="quantile_ratio")
    assert hi1 - lo1 > hi0 - lo0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.1, 1000), min_size=4, max_size=60), st.integers(0, 10_000))
def test_identical_units_give_a_ratio_of_exactly_one(values, seed) -> None:
    items = {f"u{i % 4}/c{i}": v for i, v in enumerate(values)}
    point, lo, hi, n = paired_bootstrap(items, items, stat="quantile_ratio", seed=seed)
    assert point == pytest.approx(1.0) and n == 4
    assert not decide(point, 1.0, "min", cand_items=items, inc_items=items,
                      bootstrap={"stat": "quantile_ratio", "threshold": 0.0}).keep
