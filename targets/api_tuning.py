"""API performance tuning: find the fastest correct configuration of the demo profile API.

    autoloop run targets/api_tuning.py --max-iters 15 --patience 6

Score (minimise) = p95 latency in ms over all replayed calls / correctness, where correctness is the
share of responses whose sha256 matches gold/api_calls.jsonl (computed by an independent Python
reference). Correctness is also a guard with zero allowance: a config returning any wrong answer is
never kept. Latency is noisy, so `compare` runs the incumbent and the candidate side by side,
interleaved over `repeats` replays, and the engine keeps the candidate only when the paired bootstrap
95% interval of mean(candidate p95) / mean(incumbent p95) lies entirely below 1 - 0.05.

The state dir holds config.json (the knobs, see api_demo/config.py). The database (~2e5 profiles) is
generated once, seeded, into runs/api_demo/ (or $AUTOLOOP_API_DEMO_CACHE).

Environment overrides (used by bench/api_proposers.py): API_TUNING_PROPOSER=tpe|random,
API_TUNING_SEED, API_TUNING_ROWS, API_TUNING_CALLS, API_TUNING_REPEATS.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from api_demo import config as knobs
from api_demo import data
from api_demo.gold import write_gold
from api_demo.measure import demo_service, measure_interleaved, scores_from
from api_demo.replay import ReplayResult, load_calls
from api_demo.service import sigterm_as_exit
from api_demo.stats import bootstrap_ratio

from autoloop.history import History, IterationRecord
from autoloop.search import OptunaProposer, RandomProposer, default_value
from autoloop.target import Candidate, Scores, TargetError

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "gold" / "api_calls.jsonl"
DEFAULT_ROWS, DEFAULT_SEED, DEFAULT_CALLS = 200_000, 0, 120


def _normalize(p: dict[str, Any]) -> dict[str, Any]:
    """Knobs that cannot matter for this config are dropped, so dedup sees equal configs as equal."""
    q = dict(p)
    if q.get("cache") != "ttl":
        q.pop("cache_ttl_s", None)
    if q.get("cache") == "none":
        q.pop("cache_size", None)
    return q


def _sampler_value(rec: IterationRecord, history: History) -> float | None:
    """What the sampler learns for one iteration.

    Any wrong answer: +inf (not a FAIL, which TPE would ignore), so it steers away from wrong caches.
    Otherwise a load-robust p95: the ratio to the incumbent measured in the same interleaved compare,
    times the incumbent's own value (recursively down to the baseline). Absolute p95s of different
    iterations are taken under different background load; the paired ratio is not.
    """
    v = default_value(rec)
    if v is None:
        return None
    if rec.components.get("correctness") != 1.0:
        return math.inf
    ratio = rec.info.get("p95_ratio")
    inc = next((r for r in reversed(history.iterations) if r.kept and r.iter < rec.iter), None)
    if not isinstance(ratio, (int, float)) or inc is None:
        return v
    base = _sampler_value(inc, history)
    return ratio * base if base is not None and math.isfinite(base) else v


class ApiTuning:
    name = "api_tuning"
    direction = "min"
    budget_s = 60.0  # run only writes config.json
    score_budget_s = 240.0  # compare: two services, `repeats` replays each
    min_delta = 0.0
    guards = {"correctness": 0.0}
    bootstrap = {"stat": "ratio", "confidence": 0.95, "threshold": 0.05, "resamples": 2000}
    show_columns = ["p95_ms", "p50_ms", "p99_ms", "correctness"]
    space = knobs.SPACE

    def __init__(self, gold: Path = GOLD, repeats: int = 6, score_repeats: int = 3, concurrency: int = 4,
                 proposer: str = "tpe", seed: int = 0, cache_dir: Path | None = None):
        if proposer not in ("tpe", "random"):
            raise TargetError(f"api_tuning: proposer={proposer!r}; use 'tpe' or 'random' (API_TUNING_PROPOSER)")
        self.gold = Path(gold)
        self.repeats, self.score_repeats, self.concurrency = repeats, score_repeats, concurrency
        self.cache_dir = cache_dir
        self.proposer_name, self.seed = proposer, seed
        cls = OptunaProposer if proposer == "tpe" else RandomProposer
        # The description is the whole config versus the baseline: it is the "config" column of `autoloop show`.
        kw = {"n_startup_trials": 4} if proposer == "tpe" else {}
        self.proposer = cls(self.space, seed=seed, defaults=knobs.BASELINE, value=_sampler_value, normalize=_normalize,
                            describe=knobs.summary, **kw)

    # -- engine process -------------------------------------------------------------------------
    def check(self) -> None:
        meta, _ = load_calls(self.gold)
        if meta.get("service") != "api_demo" or "rows" not in meta:
            raise TargetError(f"{self.gold}:1: first line must be the api_demo _meta record; "
                              "regenerate with `python -m api_demo.gold` from targets/")

    def setup(self, state: Path) -> None:
        Path(state).mkdir(parents=True, exist_ok=True)
        (Path(state) / "config.json").write_text(json.dumps(knobs.BASELINE, indent=1) + "\n")

    def propose(self, history: History) -> Candidate:
        return self.proposer.propose(history)

    def describe(self) -> dict[str, Any]:
        meta, calls = load_calls(self.gold)
        return {"rows": meta.get("rows"), "calls": len(calls), "repeats": self.repeats,
                "concurrency": self.concurrency, "proposer": self.proposer_name, "seed": self.seed}

    # -- child processes ------------------------------------------------------------------------
    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        cfg_path = Path(state) / "config.json"
        current = knobs.load(cfg_path) if cfg_path.exists() else dict(knobs.BASELINE)
        cfg = knobs.validate({**current, **candidate.params}, "candidate params")
        cfg_path.write_text(json.dumps(cfg, indent=1) + "\n")

    def score(self, state: Path, gold: Path) -> Scores:
        cfg = knobs.load(Path(state) / "config.json")
        (res,) = self._measure([cfg], gold, self.score_repeats)
        return scores_from(res, {"config": knobs.summary(cfg)})

    def compare(self, incumbent_state: Path, candidate_state: Path, gold: Path) -> tuple[Scores, Scores]:
        inc_cfg = knobs.load(Path(incumbent_state) / "config.json")
        cand_cfg = knobs.load(Path(candidate_state) / "config.json")
        inc_res, cand_res = self._measure([inc_cfg, cand_cfg], gold, self.repeats)
        inc = scores_from(inc_res, {"config": knobs.summary(inc_cfg), "role": "incumbent"})
        cand = scores_from(cand_res, {"config": knobs.summary(cand_cfg), "role": "candidate"})
        a, b = list(cand.items.values()), list(inc.items.values())
        point, lo, hi = bootstrap_ratio(a, b, self.bootstrap["confidence"], self.bootstrap["resamples"])
        cand.info.update({"p95_ratio": round(point, 4), "p95_ratio_ci95": [round(lo, 4), round(hi, 4)],
                          "incumbent_p95_ms": inc.info["p95_ms"],
                          "clears_noise": hi < 1 - self.bootstrap["threshold"]})
        return inc, cand

    def _measure(self, cfgs: list[dict], gold: Path, repeats: int) -> list[list[ReplayResult]]:
        meta, calls = load_calls(Path(gold))
        base = data.ensure_db(int(meta["rows"]), int(meta["seed"]), self.cache_dir)
        tmp_root = (self.cache_dir or data.default_cache_dir()) / "tmp"
        _remove_stale(tmp_root)
        tmp_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"inst-{os.getpid()}-", dir=tmp_root))
        services = []
        try:
            with sigterm_as_exit():
                for i, cfg in enumerate(cfgs):
                    services.append(demo_service(cfg, base, work / f"s{i}").start())
                return measure_interleaved(services, calls, repeats, self.concurrency)
        finally:
            for s in services:
                s.stop()
            shutil.rmtree(work, ignore_errors=True)


def _remove_stale(tmp_root: Path) -> None:
    """Instance databases of scoring processes that were SIGKILLed (their pid is gone)."""
    if not tmp_root.exists():
        return
    import psutil

    for d in tmp_root.glob("inst-*"):
        with contextlib.suppress(ValueError, IndexError):
            if not psutil.pid_exists(int(d.name.split("-")[1])):
                shutil.rmtree(d, ignore_errors=True)


def _from_env() -> ApiTuning:
    rows = int(os.environ.get("API_TUNING_ROWS") or DEFAULT_ROWS)
    calls = int(os.environ.get("API_TUNING_CALLS") or DEFAULT_CALLS)
    gold = GOLD
    if (rows, calls) != (DEFAULT_ROWS, DEFAULT_CALLS):  # a smaller benchmark, built once into the cache
        gold = data.default_cache_dir() / f"gold-r{rows}-s{DEFAULT_SEED}-c{calls}.jsonl"
        if not gold.exists():
            write_gold(gold, rows, DEFAULT_SEED, calls)
    return ApiTuning(gold=gold, repeats=int(os.environ.get("API_TUNING_REPEATS") or 6),
                     proposer=os.environ.get("API_TUNING_PROPOSER") or "tpe",
                     seed=int(os.environ.get("API_TUNING_SEED") or 0))


target = _from_env()
