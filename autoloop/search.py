"""Search-space proposers for any target that declares its parameters (Optuna ask/tell, or random).

A target declares a space as a plain dict and delegates `propose` to a proposer:

    space = SearchSpace({"lr": ("float", 1e-5, 1e-2, True), "layers": ("int", 1, 8),
                         "cache": ("cat", ["none", "lru"])})
    proposer = OptunaProposer(space, sampler="tpe", seed=0, defaults=BASELINE)
    def propose(self, history): return proposer.propose(history)

Options: `defaults` fills params a record lacks (the baseline's {}); `value(rec, history)` maps a record to the
sampler's objective (None = failed trial, +-inf = as bad as it gets); `normalize(params)` drops knobs
that cannot matter before dedup; `describe(params)` writes the one-line description (default: what
changed versus the incumbent).

The proposers keep no state of their own: every call rebuilds an in-memory Optuna study from the
History (each past iteration becomes a finished trial; crash / timeout / oom / invalid / nonfinite
become FAIL), so a resumed run proposes exactly what an uninterrupted one would. Configs already
tried are never proposed again.
"""
from __future__ import annotations

import json
import math
import random
import warnings
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from autoloop.history import History, IterationRecord
from autoloop.target import Candidate, TargetError

FAILED_STATUSES = {"crash", "timeout", "oom", "invalid", "nonfinite", "interrupted"}


class SearchExhausted(TargetError):
    """Every config of a finite space has been tried."""


class SearchSpace:
    """Named parameters: ("int", lo, hi[, log]) | ("float", lo, hi[, log]) | ("cat", [choices]) | an optuna distribution."""

    def __init__(self, spec: dict[str, Any]):
        if not isinstance(spec, dict) or not spec:
            raise TargetError("search space: give a non-empty dict such as {'lr': ('float', 1e-5, 1e-2, True)}")
        self.distributions: dict[str, BaseDistribution] = {k: _to_dist(k, v) for k, v in spec.items()}

    @property
    def names(self) -> list[str]:
        return list(self.distributions)

    def size(self) -> int | None:
        """Number of distinct configs, or None when a float makes it unbounded."""
        n = 1
        for d in self.distributions.values():
            if isinstance(d, CategoricalDistribution):
                n *= len(d.choices)
            elif isinstance(d, IntDistribution):
                n *= (d.high - d.low) // d.step + 1
            else:
                return None
        return n

    def contains(self, params: dict[str, Any]) -> bool:
        return all(k in params and _in(d, params[k]) for k, d in self.distributions.items())

    def complete(self, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The space's params of `params`, missing ones from `defaults`; None when not a point of the space."""
        out = {k: params[k] if k in params else (defaults or {}).get(k, _MISSING) for k in self.names}
        return out if self.contains(out) else None

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {k: _draw(d, rng) for k, d in self.distributions.items()}

    @staticmethod
    def key(params: dict[str, Any]) -> str:
        return json.dumps(params, sort_keys=True, default=str)


_MISSING = object()


def _to_dist(name: str, v: Any) -> BaseDistribution:
    if isinstance(v, BaseDistribution):
        return v
    bad = TargetError(f"search space: {name}={v!r}; use ('int', lo, hi[, log]), ('float', lo, hi[, log]) or ('cat', [choices])")
    if not isinstance(v, (tuple, list)) or not v:
        raise bad
    kind = v[0]
    try:
        if kind == "cat" and len(v) == 2 and len(v[1]) > 0:
            return CategoricalDistribution(list(v[1]))
        if kind == "int" and len(v) in (3, 4):
            return IntDistribution(int(v[1]), int(v[2]), log=bool(v[3]) if len(v) == 4 else False)
        if kind == "float" and len(v) in (3, 4):
            return FloatDistribution(float(v[1]), float(v[2]), log=bool(v[3]) if len(v) == 4 else False)
    except (ValueError, TypeError) as e:
        raise TargetError(f"search space: {name}={v!r}: {e}") from None
    raise bad


def _in(d: BaseDistribution, x: Any) -> bool:
    if x is _MISSING:
        return False
    if isinstance(d, CategoricalDistribution):
        return any(x == c and type(x) is type(c) for c in d.choices)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    if isinstance(d, IntDistribution):
        return float(x).is_integer() and d.low <= x <= d.high
    return d.low <= x <= d.high


def _draw(d: BaseDistribution, rng: random.Random) -> Any:
    if isinstance(d, CategoricalDistribution):
        return rng.choice(d.choices)
    if isinstance(d, IntDistribution):
        if d.log:
            return min(d.high, max(d.low, round(math.exp(rng.uniform(math.log(d.low), math.log(d.high + 1) - 1e-9)) - 0.5)))
        return rng.randrange(d.low, d.high + 1, d.step)
    if d.log:
        return math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    return rng.uniform(d.low, d.high)


def default_value(rec: IterationRecord, history: History | None = None) -> float | None:
    """A record's objective for the sampler: its score when the iteration completed with a finite one."""
    if rec.status in FAILED_STATUSES or rec.score is None or not math.isfinite(rec.score):
        return None
    return float(rec.score)


class _Base:
    label = "search"

    def __init__(self, space: SearchSpace | dict, seed: int = 0, defaults: dict[str, Any] | None = None,
                 value: Callable[[IterationRecord, History], float | None] = default_value,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 describe: Callable[[dict[str, Any]], str] | None = None):
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.seed, self.defaults, self.value = seed, defaults, value
        self.normalize = normalize or (lambda p: p)
        self.describe = describe

    def _past(self, history: History) -> list[tuple[dict[str, Any], float | None]]:
        """(params, value or None for failed) of every past iteration that is a point of the space."""
        out = []
        for rec in history:
            p = self.space.complete(rec.params, self.defaults)
            if p is not None:
                out.append((p, self.value(rec, history)))
        return out

    def _random_unseen(self, rng: random.Random, seen: set[str]) -> dict[str, Any]:
        for _ in range(2000):
            p = self.space.sample(rng)
            if self.space.key(self.normalize(p)) not in seen:
                return p
        raise SearchExhausted(f"{self.label}: no untried config left in the search space after {len(seen)} tries; "
                              "widen the space or stop the run")

    def _candidate(self, params: dict[str, Any], history: History, how: str) -> Candidate:
        if self.describe is not None:
            return Candidate(params=params, description=f"{how}: {self.describe(params)}")
        inc = history.incumbent
        ref = self.space.complete(inc.params, self.defaults) if inc is not None else None
        if ref is None:
            ref = self.defaults or {}
        shown = self.normalize(params)  # knobs that cannot matter are not worth a word
        changed = [f"{k}={_fmt(v)}" for k, v in shown.items() if ref.get(k, _MISSING) != v]
        what = ", ".join(changed) if changed else "same as incumbent"
        return Candidate(params=params, description=f"{how}: {what}")

    def __call__(self, history: History) -> Candidate:
        return self.propose(history)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class RandomProposer(_Base):
    """Uniform random search over the space, never repeating a tried config; deterministic per (seed, iteration)."""

    label = "random"

    def propose(self, history: History) -> Candidate:
        seen = {self.space.key(self.normalize(p)) for p, _ in self._past(history)}
        rng = random.Random(f"{self.seed}:{history.next_iter}")
        return self._candidate(self._random_unseen(rng, seen), history, "random")


class OptunaProposer(_Base):
    """Optuna ask/tell over the space; the study is rebuilt from the history on every call."""

    def __init__(self, space: SearchSpace | dict, sampler: str | optuna.samplers.BaseSampler = "tpe", seed: int = 0,
                 defaults: dict[str, Any] | None = None,
                 value: Callable[[IterationRecord, History], float | None] = default_value,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 describe: Callable[[dict[str, Any]], str] | None = None,
                 n_startup_trials: int = 5, max_retries: int = 30):
        super().__init__(space, seed, defaults, value, normalize, describe)
        if not isinstance(sampler, optuna.samplers.BaseSampler) and sampler not in ("tpe", "random"):
            raise TargetError(f"OptunaProposer: sampler={sampler!r}; use 'tpe', 'random' or an optuna sampler")
        self.sampler, self.n_startup_trials, self.max_retries = sampler, n_startup_trials, max_retries
        self.label = sampler if isinstance(sampler, str) else type(sampler).__name__

    def _make_sampler(self, n: int) -> optuna.samplers.BaseSampler:
        if isinstance(self.sampler, optuna.samplers.BaseSampler):
            return self.sampler
        seed = self.seed * 100_003 + n  # differs per iteration, identical after a resume
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate is flagged experimental
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True)

    def propose(self, history: History) -> Candidate:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        past = self._past(history)
        study = optuna.create_study(direction="maximize" if history.direction == "max" else "minimize",
                                    sampler=self._make_sampler(history.next_iter))
        dists = self.space.distributions
        known: dict[str, float | None] = {}
        for params, val in past:
            known[self.space.key(self.normalize(params))] = val
            study.add_trial(create_trial(params=params, distributions=dists, value=val,
                                         state=TrialState.COMPLETE if val is not None else TrialState.FAIL))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(self.max_retries):
                trial = study.ask(dists)
                params = dict(trial.params)
                k = self.space.key(self.normalize(params))
                if k not in known:
                    return self._candidate(params, history, self.label)
                # A repeat: tell the sampler what it already knows and ask again.
                val = known[k]
                study.tell(trial, val, state=TrialState.COMPLETE if val is not None else TrialState.FAIL)
        rng = random.Random(f"{self.seed}:{history.next_iter}:fallback")
        return self._candidate(self._random_unseen(rng, set(known)), history, f"{self.label} (random fallback)")
