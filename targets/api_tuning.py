"""API performance tuning: find the fastest correct configuration of the demo profile API.

    autoloop run targets/api_tuning.py          (stops at a plateau: 12 iterations without a keep)

Score (minimise) = p95 latency in ms over all replayed calls / correctness, where correctness is the
share of responses whose sha256 matches gold/api_calls.jsonl (computed by an independent Python
reference). The calls are replayed CONCURRENCY = 4 at a time (API_TUNING_CONCURRENCY; `autoloop show`
prints it): the demo models a service under light concurrent load, which is what its `workers` knob is
for; with 1, each latency is a call's own time, as a sequential client sees it. Correctness is also a
guard with zero allowance: a config returning any wrong answer is never kept. Latency is noisy, so
`compare` runs the incumbent and the candidate side by side, interleaved block by block over `repeats`
replays, and the engine keeps the candidate only when the 95% interval of p95(candidate) / p95(incumbent)
lies entirely below 1 - 0.10. The interval is a paired block bootstrap: whole (repeat, block) units --
~15 calls measured on both services back to back -- are resampled, so a burst of background load counts
as one event, not as fifteen independent ones. A one-repeat screen comes first: wrong answers, or a p95
over twice the incumbent's, end the compare early (autoloop/services/measure.py). The run stops at a
plateau: `patience` iterations without a keep.

The state dir holds config.json (the knobs, see api_demo/config.py). The database (~2e5 profiles) is
generated once, seeded, into runs/api_demo/ (or $AUTOLOOP_API_DEMO_CACHE).

Proposers: each iteration is an engine batch of 6 configs: the engine runs each (run() writes its config),
screens them all beside the incumbent in one interleaved replay (screen()), and compares the fastest config
with all answers correct in full; every member is recorded in the `trials` table and told to the sampler:
2 from Optuna TPE over api_demo/config.py's SPACE, 2 one-knob neighbours of the best configs so far, 2
uniformly random (default without an API key). A config with any wrong answer is infeasible to TPE (Optuna
constraints): it learns to avoid the wrong caches instead of ignoring them. After a keep that changed
several knobs, that config minus each changed knob (one-knob ablations) takes the neighbours' places in
the next batches, so a knob that rode along with a real gain and only costs is dropped next. With
ANTHROPIC_API_KEY set, an LLM reads the space and the history and names the first config
(autoloop.proposers.search.LLMSearchProposer, capped by
--max-cost; TPE takes over for any reply that is not a new point of the space).

Environment overrides (used by bench/api_proposers.py): API_TUNING_PROPOSER=auto|tpe|random|llm (the
target's own proposer; `autoloop run ... --proposer tpe|random|llm` chooses per run instead),
API_TUNING_SEED, API_TUNING_CONCURRENCY, API_TUNING_ROWS, API_TUNING_CALLS, API_TUNING_REPEATS,
API_TUNING_BATCH (configs screened per iteration, 6), API_TUNING_EXPLORE (how many are uniformly random, a
third of the batch), API_TUNING_NEIGHBOURS (how many are one-knob neighbours of the best so far, a third of
the batch).
"""
from __future__ import annotations

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
from api_demo.service import demo_service

from autoloop.history import History, IterationRecord
from autoloop.proposers.search import LLMSearchProposer, OptunaProposer, RandomProposer
from autoloop.services.calls import load_calls
from autoloop.services.measure import (gm_ratio, incumbent_before, measure_interleaved, paired_compare,
                                       paired_value, scores_from, wrong_share)
from autoloop.services.replay import ReplayResult
from autoloop.services.service import remove_stale, sigterm_as_exit
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


LLM_CONTEXT = """The system is a JSON HTTP API over SQLite (profiles, profile_skills tables; ~2e5 profiles).
Endpoints replayed by the benchmark: /search?skill=&min_level= (top 20 by level), /profiles/<id> (detail),
/stats/skills?location= (per-skill aggregate), and a few POST /profiles/<id>/availability writes.
The score is the p95 latency (ms) of the replayed calls divided by correctness; lower is better. Any wrong
answer (correctness < 1) is rejected. Some cache modes are deliberately unsafe (stale or wrongly keyed).
Knobs: index_skill_level = index on profile_skills(skill, level); index_location = index on profiles(location);
search_query = correlated subqueries or a join; detail_query = CAST(id AS TEXT) scan or primary key;
stats_query = LIKE or = on location; cache = response cache mode; workers = SQLite connections serving at once;
sqlite_cache_kb / mmap_mb = SQLite page cache and memory map."""


# What the sampler learns for a fully measured config: the geometric mean of the per-endpoint p95s, from the
# ratio to the incumbent measured in the same interleaved compare (autoloop.services.measure.paired_value);
# a config with any wrong answer is infeasible to it (wrong_share > 0), whatever its speed.
_sampler_value = paired_value


def _trials(rec: IterationRecord, history: History) -> list[tuple[dict, float | None, float]]:
    """Every config an iteration measured, as (config, value, share of wrong answers): the one that got the
    full comparison first, then the other members of its batch, screened by the engine (one interleaved replay
    next to the incumbent: their value is their screened p95 ratio to the incumbent times its value)."""
    chosen = rec.info.get("config_params") or {k: v for k, v in rec.params.items() if k != "alternatives"}
    out = [(chosen, _sampler_value(rec, history), wrong_share(rec))]
    inc = incumbent_before(rec, history)
    base = _sampler_value(inc, history) if inc is not None else None
    for tr in rec.trials:
        if tr.get("chosen"):
            continue
        info = tr.get("info") or {}
        ratio = info.get("gm_ratio")
        ok = isinstance(ratio, (int, float)) and math.isfinite(ratio) and base is not None
        if tr.get("status") != "ok" or "correctness" not in (tr.get("components") or {}):
            out.append((info.get("config_params") or tr["params"], None, 0.0))  # failed before it was measured
            continue
        out.append((info.get("config_params") or tr["params"], ratio * base if ok else None,
                    round(1.0 - float(tr["components"]["correctness"]), 6)))
    return out


class ApiTuning:
    name = "api_tuning"
    direction = "min"
    budget_s = 60.0  # run: write config.json
    score_budget_s = 240.0  # screen (incumbent + the batch's services, one interleaved replay); compare: two services
    screen_slack = None  # the best screened config is always compared in full (the compare screens again)
    min_delta = 0.0
    guards = {"correctness": 0.0}
    bootstrap = {"stat": "quantile_ratio", "q": 95, "confidence": 0.95, "threshold": 0.10, "resamples": 2000}
    patience = 12  # a search space proposer needs room: most proposals are (rightly) reverted
    show_columns = ["config", "p95_ms", "p50_ms", "correctness", "concurrency"]
    space = knobs.SPACE

    def __init__(self, gold: Path = GOLD, repeats: int = 8, score_repeats: int = 3, concurrency: int = 4,
                 proposer: str = "auto", seed: int = 0, cache_dir: Path | None = None, batch: int = 6,
                 explore: int | None = None, neighbours: int | None = None):
        if proposer not in ("auto", "tpe", "random", "llm"):
            raise TargetError(f"api_tuning: proposer={proposer!r}; use auto, tpe, random or llm (API_TUNING_PROPOSER)")
        if proposer == "auto":
            proposer = "llm" if os.environ.get("ANTHROPIC_API_KEY") else "tpe"
        self.gold = Path(gold)
        self.repeats, self.score_repeats, self.concurrency = repeats, score_repeats, concurrency
        self.cache_dir = cache_dir
        self.proposer_name, self.seed = proposer, seed
        self.batch = batch  # configs per iteration: the engine runs and screens them, compares the best in full
        # The description is the whole config versus the baseline: it is the "config" column of `autoloop show`.
        # Each iteration screens a batch: configs from the sampler, one-knob neighbours of the best configs so
        # far, and uniformly random ones (TPE alone settles in a local optimum of this space: issue 5's notes).
        common = dict(seed=seed, defaults=knobs.BASELINE, value=_sampler_value, normalize=_normalize,
                      describe=knobs.summary, trials=_trials, batch=batch)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise TargetError(f"api_tuning: concurrency={concurrency!r}; give a whole number >= 1 (API_TUNING_CONCURRENCY)")
        explore = batch // 3 if explore is None else explore
        if neighbours is None:
            neighbours = min(batch // 3, max(0, batch - 1 - explore))
        self._search = {**common, "n_startup_trials": 10, "explore": explore, "neighbours": neighbours,
                        "constraint": wrong_share, "context": LLM_CONTEXT}
        if proposer != "random":
            OptunaProposer(self.space, **{k: v for k, v in self._search.items() if k != "context"})  # bad knobs fail at load
        self._proposer = None

    @property
    def proposer(self):
        """Built on first use, in the engine process only (children never propose, nor build an LLM client)."""
        if self._proposer is None:
            opts = {k: v for k, v in self._search.items() if k != "context"}
            if self.proposer_name == "random":
                self._proposer = RandomProposer(self.space, **{k: v for k, v in opts.items()
                                                                if k not in ("n_startup_trials", "explore", "neighbours", "constraint")})
            else:
                self._proposer = OptunaProposer(self.space, **opts)
            if self.proposer_name == "llm":
                from autoloop.proposers import default_llm_client

                common = {k: v for k, v in opts.items() if k not in ("n_startup_trials", "explore", "neighbours", "constraint")}
                self._proposer = LLMSearchProposer(self.space, fallback=self._proposer, client=default_llm_client(),
                                                   context=LLM_CONTEXT, **common)
        return self._proposer

    # -- engine process -------------------------------------------------------------------------
    def check(self) -> None:
        meta, _ = load_calls(self.gold)
        if meta.get("service") != "api_demo" or "rows" not in meta:
            raise TargetError(f"{self.gold}:1: first line must be the api_demo _meta record; "
                              "regenerate with `python -m api_demo.gold` from targets/")

    def setup(self, state: Path) -> None:
        Path(state).mkdir(parents=True, exist_ok=True)
        (Path(state) / "config.json").write_text(json.dumps(knobs.BASELINE, indent=1) + "\n")

    def search_options(self) -> dict[str, Any]:
        """How an engine-built proposer (`autoloop run ... --proposer tpe|random|llm`) scores, describes and
        constrains configs: as this target's own does."""
        return dict(self._search)

    def propose(self, history: History) -> Candidate:
        return self.proposer.propose_batch(history, 1)[0]

    def propose_batch(self, history: History, n: int) -> list[Candidate]:
        return self.proposer.propose_batch(history, n)

    def describe(self) -> dict[str, Any]:
        meta, calls = load_calls(self.gold)
        return {"rows": meta.get("rows"), "calls": len(calls), "repeats": self.repeats,
                "concurrency": self.concurrency, "proposer": self.proposer_name, "seed": self.seed}

    # -- child processes ------------------------------------------------------------------------
    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        """Write the candidate's config (its knobs over the incumbent's, which the state dir holds)."""
        cfg_path = Path(state) / "config.json"
        current = knobs.load(cfg_path) if cfg_path.exists() else dict(knobs.BASELINE)
        params = {k: v for k, v in candidate.params.items() if k != "alternatives"}
        cfg_path.write_text(json.dumps(knobs.validate({**current, **params}, "candidate params"), indent=1) + "\n")

    def screen(self, incumbent: Path, members: list[Path], gold: Path) -> tuple[Scores, list[Scores]]:
        """The engine's batch screen: start the incumbent and every member, replay the calls once,
        interleaved. The engine then takes the lowest p95 among the members whose answers were all correct
        (the correctness guard) to the full compare; each member's paired p95 ratio (gm_ratio) tells the
        sampler how it did."""
        cfgs = [knobs.load(Path(incumbent) / "config.json")] + [knobs.load(Path(m) / "config.json") for m in members]
        results = self._services(cfgs, gold, lambda services, calls: measure_interleaved(
            services, calls, 1, self.concurrency))
        inc = scores_from(results[0], {"config": knobs.summary(cfgs[0])})
        out = []
        for cfg, res in zip(cfgs[1:], results[1:]):
            sc = scores_from(res, {"config": knobs.summary(cfg), "config_params": cfg, "concurrency": self.concurrency})
            sc.info["gm_ratio"] = gm_ratio(sc.info, inc.info)
            sc.info["p95_ratio"] = round(sc.components["p95_ms"] / max(inc.components["p95_ms"], 1e-9), 4)
            out.append(sc)
        return inc, out

    def score(self, state: Path, gold: Path) -> Scores:
        cfg = knobs.load(Path(state) / "config.json")
        (res,) = self._measure([cfg], gold, self.score_repeats)
        return scores_from(res, {"config": knobs.summary(cfg), "config_params": cfg, "concurrency": self.concurrency})

    def compare(self, incumbent_state: Path, candidate_state: Path, gold: Path) -> tuple[Scores, Scores]:
        inc_cfg = knobs.load(Path(incumbent_state) / "config.json")
        cand_cfg = knobs.load(Path(candidate_state) / "config.json")
        inc, cand = self._services([inc_cfg, cand_cfg], gold, lambda services, calls: paired_compare(
            services, calls, self.repeats, self.concurrency, self.bootstrap,
            {"config": knobs.summary(inc_cfg), "concurrency": self.concurrency},
            {"config": knobs.summary(cand_cfg), "concurrency": self.concurrency}))
        cand.info["config_params"] = cand_cfg
        return inc, cand

    def _measure(self, cfgs: list[dict], gold: Path, repeats: int) -> list[list[ReplayResult]]:
        return self._services(cfgs, gold, lambda services, calls: measure_interleaved(services, calls, repeats,
                                                                                       self.concurrency))

    def _services(self, cfgs: list[dict], gold: Path, work_fn):
        """Start one demo service per config (each on its own copy of the database), run work_fn, stop all."""
        meta, calls = load_calls(Path(gold))
        base = data.ensure_db(int(meta["rows"]), int(meta["seed"]), self.cache_dir)
        tmp_root = (self.cache_dir or data.default_cache_dir()) / "tmp"
        remove_stale(tmp_root)
        tmp_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"inst-{os.getpid()}-", dir=tmp_root))
        services = []
        try:
            with sigterm_as_exit():
                for i, cfg in enumerate(cfgs):  # all start at once, then all are waited for
                    services.append(demo_service(cfg, base, work / f"s{i}").launch())
                for s in services:
                    s.wait_ready()
                return work_fn(services, calls)
        finally:
            for s in services:
                s.stop()
            shutil.rmtree(work, ignore_errors=True)


_remove_stale = remove_stale  # instance databases of scoring processes that were SIGKILLed (their pid is gone)


def _env_int(name: str, default: int | None, low: int = 0) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        v = low - 1
    if v < low:
        raise TargetError(f"environment {name}={raw!r}: must be a whole number >= {low}; fix or unset it")
    return v


# Measurement concurrency: calls in flight at once while replaying (see the module docstring).
CONCURRENCY = _env_int("API_TUNING_CONCURRENCY", 4, 1)


def _from_env() -> ApiTuning:
    rows = _env_int("API_TUNING_ROWS", DEFAULT_ROWS, 100)
    calls = _env_int("API_TUNING_CALLS", DEFAULT_CALLS, 10)
    gold = GOLD
    if (rows, calls) != (DEFAULT_ROWS, DEFAULT_CALLS):  # a smaller benchmark, built once into the cache
        gold = data.default_cache_dir() / f"gold-r{rows}-s{DEFAULT_SEED}-c{calls}.jsonl"
        if not gold.exists():
            write_gold(gold, rows, DEFAULT_SEED, calls)
    try:
        return ApiTuning(gold=gold, repeats=_env_int("API_TUNING_REPEATS", 8, 1), concurrency=CONCURRENCY,
                         batch=_env_int("API_TUNING_BATCH", 6, 1), explore=_env_int("API_TUNING_EXPLORE", None),
                         neighbours=_env_int("API_TUNING_NEIGHBOURS", None),
                         proposer=os.environ.get("API_TUNING_PROPOSER") or "auto",
                         seed=_env_int("API_TUNING_SEED", 0))
    except TargetError as e:
        if "OptunaProposer" not in str(e):
            raise
        raise TargetError(f"{e} (set by API_TUNING_BATCH / API_TUNING_EXPLORE / API_TUNING_NEIGHBOURS)") from None


target = _from_env()
