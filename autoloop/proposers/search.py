"""Search-space proposers for any target that declares its parameters (Optuna ask/tell, or random).

A target declares a space as a plain dict and delegates `propose` to a proposer:

    space = SearchSpace({"lr": ("float", 1e-5, 1e-2, True), "layers": ("int", 1, 8),
                         "cache": ("cat", ["none", "lru"])})
    proposer = OptunaProposer(space, sampler="tpe", seed=0, defaults=BASELINE)
    def propose(self, history): return proposer.propose(history)

Options: `defaults` fills params a record lacks (the baseline's {}); `value(rec, history)` maps a record to the
sampler's objective (None = failed trial, +-inf = as bad as it gets); `constraint(rec, history)` says how far
a record's config is from feasible (> 0 = infeasible, e.g. its share of wrong answers: Optuna's constrained
TPE then ranks it below every feasible config, however good its value); `normalize(params)` drops knobs
that cannot matter before dedup; `describe(params)` writes the one-line description (default: what
changed versus the incumbent).

Ablation: after a keep that changed several knobs at once, OptunaProposer first proposes the kept config
with each changed knob set back to its value in the config it replaced (one knob at a time), so a knob
that rode along with a real gain but only costs is dropped in the next iterations, not by luck.

Batches: `propose_batch(history, n)` returns n distinct untried configs, one Candidate each, for the
engine's batch step (autoloop/loop.py: every member is run and screened, the best measured in full, every one
recorded in `trials` and, through History.trials, told back to the proposer). (`propose` with `batch=k`
still packs k configs into one candidate, the first in params and the others in params["alternatives"].)
In a batch, `explore=j` makes j of them uniformly random (TPE alone can settle in a local optimum when a gain
needs several knobs at once). The `trials(rec, history)` hook lets such a target report every config an
iteration measured, as (params, value) or (params, value, constraint) with the config measured in full
first, so each one informs the sampler and none is proposed again.
LLMSearchProposer puts an LLM in front of any of these (see its docstring).

The proposers keep no state of their own: every call rebuilds an in-memory Optuna study from the
History (each past iteration becomes a finished trial; crash / timeout / oom / invalid / nonfinite
become FAIL), so a resumed run proposes exactly what an uninterrupted one would. Configs already
tried are never proposed again.
"""
from __future__ import annotations

import abc
import json
import math
import random
import re
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


Trial = tuple  # (params, value | None) or (params, value | None, constraint)


class _Base(abc.ABC):
    label = "search"
    # (ablations, sampler, neighbours, random) members of the last batch asked
    _mix: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __init__(self, space: SearchSpace | dict, seed: int = 0, defaults: dict[str, Any] | None = None,
                 value: Callable[[IterationRecord, History], float | None] = default_value,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 describe: Callable[[dict[str, Any]], str] | None = None,
                 trials: Callable[[IterationRecord, History], list[Trial]] | None = None,
                 batch: int = 1, constraint: Callable[[IterationRecord, History], float] | None = None):
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.seed, self.defaults, self.value = seed, defaults, value
        self.constraint = constraint
        self.normalize = normalize or (lambda p: p)
        self.describe = describe
        self.trials = trials
        if int(batch) < 1:
            raise TargetError(f"{type(self).__name__}: batch={batch!r}; must be >= 1")
        self.batch = int(batch)

    def _record_trials(self, rec: IterationRecord, history: History) -> list[tuple[dict[str, Any], float | None, float]]:
        """(params, value, constraint) of every config one iteration measured, the fully measured one first."""
        if self.trials:
            raw = self.trials(rec, history)
        else:
            params = {k: v for k, v in rec.params.items() if k != "alternatives"}
            raw = [(params, self.value(rec, history))]
            for t in rec.trials:  # the other members of an engine batch: their full score, else their screen
                if not t.get("chosen"):
                    v = t.get("score") if t.get("score") is not None else t.get("screen_score")
                    raw.append((t.get("params") or {}, _finite(v) if t.get("status") == "ok" else None))
        out = []
        for i, t in enumerate(raw):
            viol = t[2] if len(t) > 2 else (self.constraint(rec, history) if self.constraint and i == 0 else 0.0)
            out.append((t[0], t[1], float(viol or 0.0)))
        return out

    def _past(self, history: History) -> list[tuple[dict[str, Any], float | None, float]]:
        """(params, value or None for failed, constraint) of every config past iterations evaluated (points of
        the space). An iteration that screened several configs reports each through the `trials` hook."""
        out = []
        for rec in history:
            for params, val, viol in self._record_trials(rec, history):
                p = self.space.complete(params, self.defaults)
                if p is not None:
                    out.append((p, val, viol))
        return out

    def _measured(self, rec: IterationRecord, history: History) -> dict[str, Any] | None:
        """The config a record measured in full, as a point of the space."""
        trials = self._record_trials(rec, history)
        return self.space.complete(trials[0][0], self.defaults) if trials else None

    def ablations(self, history: History, seen: set[str]) -> list[dict[str, Any]]:
        """Untried one-knob ablations of the last keep: when it changed several knobs versus the config it
        replaced, the kept config with each changed knob set back, one at a time; the knob whose new value
        looks least useful in the history comes first."""
        kept = history.kept()
        if len(kept) < 2:
            return []
        new, old = self._measured(kept[-1], history), self._measured(kept[-2], history)
        if new is None or old is None:
            return []
        nn, no = self.normalize(dict(new)), self.normalize(dict(old))
        changed = [k for k in self.space.names
                   if not (nn.get(k, _MISSING) == no.get(k, _MISSING) and type(nn.get(k)) is type(no.get(k)))]
        if len(changed) < 2:
            return []  # a one-knob change: its ablation is the config it replaced
        # Knobs whose new value has done least for the configs measured so far go first: the median value
        # of configs with the new value over the median with the old one (ties keep the space's order).
        past = [(p, v) for p, v, viol in self._past(history) if v is not None and math.isfinite(v) and viol <= 0]

        def looks_useless(k: str) -> float:
            with_new = [v for p, v in past if p.get(k) == new[k]]
            with_old = [v for p, v in past if p.get(k) == old[k]]
            if not with_new or not with_old:
                return 0.0
            r = _median(with_new) / max(abs(_median(with_old)), 1e-12)
            return r if history.direction != "max" else 1.0 / max(r, 1e-12)

        changed.sort(key=lambda k: -looks_useless(k))
        out, keys = [], set(seen)
        for k in changed:
            p = {**new, k: old[k]}
            key = self.space.key(self.normalize(p))
            if key not in keys:
                keys.add(key)
                out.append(p)
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

    @abc.abstractmethod
    def ask(self, history: History, n: int) -> list[dict[str, Any]]:
        """n distinct configs never tried before."""

    def propose(self, history: History) -> Candidate:
        """One config; with batch=k > 1 the others ride along as params["alternatives"], for a target
        that screens them cheaply and measures only the most promising one in full."""
        configs = self.ask(history, self.batch)
        if self.batch == 1:
            return self._candidate(configs[0], history, self._how)
        ablate, model, local, explore = self._mix if sum(self._mix) == len(configs) else (0, len(configs), 0, 0)
        parts = ([f"{ablate} ablation{'s' if ablate > 1 else ''}"] if ablate else []) \
            + ([f"{model} {self.label}"] if model else []) + ([f"{local} neighbours"] if local else []) \
            + ([f"{explore} random"] if explore else [])
        mix = f" ({' + '.join(parts)})" if len(parts) > 1 else ""
        return Candidate(params={**configs[0], "alternatives": configs[1:]},
                         description=f"{self._how}: screen {len(configs)} configs{mix}, measure the best in full")

    _how = "search"

    def propose_batch(self, history: History, n: int) -> list[Candidate]:
        """n distinct untried configs, one Candidate each, for the engine's batch step (which runs and screens
        them, measures the best in full and records every one as a trial). Each description says which part
        of the batch it came from: ablation, the sampler, a neighbour of the best so far, or random."""
        configs = self.ask(history, n)
        ablate, model, local, explore = self._mix if sum(self._mix) == len(configs) else (0, len(configs), 0, 0)
        roles = ["ablation"] * ablate + [self._how] * model + ["neighbour"] * local + ["random"] * explore
        return [self._candidate(c, history, role) for c, role in zip(configs, roles)]

    def __call__(self, history: History) -> Candidate:
        return self.propose(history)


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    m = len(ys) // 2
    return ys[m] if len(ys) % 2 else (ys[m - 1] + ys[m]) / 2


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _neighbour_of(space: SearchSpace, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`base` with one knob drawn anew (a categorical knob always changes)."""
    k = rng.choice(space.names)
    d = space.distributions[k]
    p = dict(base)
    if isinstance(d, CategoricalDistribution):
        others = [c for c in d.choices if not (c == base.get(k) and type(c) is type(base.get(k)))]
        p[k] = rng.choice(others) if others else base.get(k)
    else:
        p[k] = _draw(d, rng)
    return p


class RandomProposer(_Base):
    """Uniform random search over the space, never repeating a tried config; deterministic per (seed, iteration)."""

    label = _how = "random"

    def ask(self, history: History, n: int) -> list[dict[str, Any]]:
        seen = {self.space.key(self.normalize(p)) for p, *_ in self._past(history)}
        rng = random.Random(f"{self.seed}:{history.next_iter}")
        out = []
        for _ in range(n):
            p = self._random_unseen(rng, seen)
            seen.add(self.space.key(self.normalize(p)))
            out.append(p)
        return out


class OptunaProposer(_Base):
    """Optuna ask/tell over the space; the study is rebuilt from the history on every call.

    With a `constraint` hook, infeasible configs (e.g. any wrong answer) become complete trials carrying
    their constraint, and TPE (its constraints_func) ranks them below every feasible config: it learns to
    avoid a fast-but-wrong region instead of ignoring it as it ignores failed trials.
    After a keep that changed several knobs, the next proposals are its one-knob ablations (`ablate`,
    default on; see the module docstring), first in the batch.
    In a batch, `neighbours` members are one-knob changes of the best feasible configs measured so far (a
    local move the sampler's per-knob densities rarely make when a gain needs one more knob on top of a good
    combination) and `explore` members are uniformly random; ablations take the neighbours' places (at
    least one) and always leave one place to the sampler."""

    def __init__(self, space: SearchSpace | dict, sampler: str | optuna.samplers.BaseSampler = "tpe", seed: int = 0,
                 defaults: dict[str, Any] | None = None,
                 value: Callable[[IterationRecord, History], float | None] = default_value,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 describe: Callable[[dict[str, Any]], str] | None = None,
                 trials: Callable[[IterationRecord, History], list[Trial]] | None = None,
                 batch: int = 1, n_startup_trials: int = 5, max_retries: int = 30, explore: int = 0,
                 neighbours: int = 0, constraint: Callable[[IterationRecord, History], float] | None = None,
                 ablate: bool = True):
        super().__init__(space, seed, defaults, value, normalize, describe, trials, batch, constraint)
        if int(explore) < 0 or int(neighbours) < 0 or int(explore) + int(neighbours) >= max(2, self.batch):
            raise TargetError(f"OptunaProposer: explore={explore!r} + neighbours={neighbours!r} must leave at least "
                              f"one of batch={batch} to the sampler")
        self.explore, self.neighbours, self.ablate = int(explore), int(neighbours), bool(ablate)
        if not isinstance(sampler, optuna.samplers.BaseSampler) and sampler not in ("tpe", "random"):
            raise TargetError(f"OptunaProposer: sampler={sampler!r}; use 'tpe', 'random' or an optuna sampler")
        self.sampler, self.n_startup_trials, self.max_retries = sampler, n_startup_trials, max_retries
        self.label = self._how = sampler if isinstance(sampler, str) else type(sampler).__name__

    def _make_sampler(self, n: int, constrained: bool) -> optuna.samplers.BaseSampler:
        if isinstance(self.sampler, optuna.samplers.BaseSampler):
            return self.sampler
        seed = self.seed * 100_003 + n  # differs per iteration, identical after a resume
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            # multivariate and constant_liar are flagged experimental; optuna >= 5 also prefers
            # Trial.set_constraint to constraints_func, which older versions lack
            warnings.simplefilter("ignore")
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True,
                                              constant_liar=True,
                                              constraints_func=_trial_constraint if constrained else None)

    def _neighbour(self, bests: list[dict[str, Any]], rng: random.Random, seen: set[str]) -> dict[str, Any] | None:
        for _ in range(200):
            if not bests:
                return None
            p = _neighbour_of(self.space, rng.choice(bests) if rng.random() < 0.3 else bests[0], rng)
            if self.space.key(self.normalize(p)) not in seen:
                return p
        return None

    def _slots(self, n: int, n_ablate: int) -> tuple[int, int, int, int]:
        """(ablations, sampler, neighbours, random) places of a batch of n. One config: an ablation when one is
        due. In a batch, ablations (one-knob moves like the neighbours) take the neighbours' places, at least
        one: a keep that changed ten knobs then costs no iteration its sampler and random members."""
        a = min(n_ablate, 1 if n == 1 else min(n - 1, max(1, self.neighbours)))
        local = max(0, self.neighbours - a)
        explore = min(self.explore, max(0, n - a - 1))
        local = min(local, max(0, n - a - 1 - explore))
        return a, n - a - local - explore, local, explore

    def ask(self, history: History, n: int) -> list[dict[str, Any]]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        past = self._past(history)
        constrained = any(viol > 0 for _, _, viol in past) or self.constraint is not None
        study = optuna.create_study(direction="maximize" if history.direction == "max" else "minimize",
                                    sampler=self._make_sampler(history.next_iter, constrained))
        dists = self.space.distributions
        finite = [v for _, v, _ in past if v is not None and math.isfinite(v)]
        worst = (max(finite) if history.direction != "max" else min(finite)) if finite else 0.0
        known: dict[str, tuple[float | None, float]] = {}
        for params, val, viol in past:
            if viol > 0 and (val is None or not math.isfinite(val)):
                val = worst  # infeasible: the value does not matter, the constraint ranks it
            known[self.space.key(self.normalize(params))] = (val, viol)
            study.add_trial(create_trial(
                params=params, distributions=dists, value=val,
                state=TrialState.COMPLETE if val is not None else TrialState.FAIL,
                user_attrs={"constraint": viol},
                system_attrs={"constraints": [viol]} if constrained and val is not None else None))
        out: list[dict[str, Any]] = []
        batch: set[str] = set()
        abl = self.ablations(history, set(known)) if self.ablate else []
        n_ablate, n_model, n_local, n_explore = self._slots(n, len(abl))
        for p in abl[:n_ablate]:
            batch.add(self.space.key(self.normalize(p)))
            out.append(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(self.max_retries * n_model):
                if len(out) == n_ablate + n_model:
                    break
                trial = study.ask(dists)  # left running: constant_liar spreads the rest of the batch
                params = dict(trial.params)
                k = self.space.key(self.normalize(params))
                if k in batch:
                    continue  # already in this batch: leave the trial running (a constant liar) and ask again
                if k not in known:
                    batch.add(k)
                    out.append(params)
                    continue
                # A repeat: tell the sampler what it already knows and ask again.
                val, viol = known[k]
                trial.set_user_attr("constraint", viol)
                study.tell(trial, val, state=TrialState.COMPLETE if val is not None else TrialState.FAIL)
        n_sampled = len(out) - n_ablate
        if n_ablate and n == 1:
            self._how = "ablation"
        else:
            self._how = self.label if n_sampled == n_model else f"{self.label} (random fallback)"
        rng = random.Random(f"{self.seed}:{history.next_iter}:local")
        ranked = sorted((v, i) for i, (_, v, viol) in enumerate(past)
                        if v is not None and math.isfinite(v) and viol <= 0)
        if history.direction == "max":
            ranked.reverse()
        for _ in range(n_local):
            p = self._neighbour([past[i][0] for _, i in ranked[:3]], rng, set(known) | batch)
            if p is None:
                break
            batch.add(self.space.key(self.normalize(p)))
            out.append(p)
        n_neighbours = len(out) - n_ablate - n_sampled  # none before any feasible config has a value: random fills in
        rng = random.Random(f"{self.seed}:{history.next_iter}:explore")
        while len(out) < n:
            p = self._random_unseen(rng, set(known) | batch)
            batch.add(self.space.key(self.normalize(p)))
            out.append(p)
        self._mix = (n_ablate, n_sampled, n_neighbours, n - n_ablate - n_sampled - n_neighbours)
        return out


def _trial_constraint(trial: optuna.trial.FrozenTrial) -> tuple[float]:
    """TPE's constraints_func: the constraint the history gave this config (> 0 = infeasible)."""
    return (float(trial.user_attrs.get("constraint", 0.0)),)


LLM_SYSTEM = """You tune the configuration of a system, one experiment at a time. You see the knobs (the search
space), what each experiment scored and whether it was kept. Propose ONE new configuration that is likely
to score better than the best so far and has not been tried. Think about which knobs interact. Reply with
at most three sentences of reasoning, then the configuration as one JSON object with every knob, e.g.
{"knob_a": 1, "knob_b": "x"}."""


class LLMSearchProposer(_Base):
    """An LLM reads the space and the history (configs, scores, decisions) and names the next config.

    The LLM steers; the sampler guarantees progress: a reply that is not a new point of the space
    (no JSON, an unknown knob, a value out of range, a config already tried), an API failure or a refusal
    by the dollar cap hands this iteration to `fallback` (an OptunaProposer by default), and the
    description says why. Calls go through autoloop.llm: cached (temperature 0, so a resumed run gets the
    same reply without paying again), retried, capped by --max-cost and recorded in llm_calls. `client` is
    any autoloop.llm BaseClient, built by the caller (autoloop.proposers.default_llm_client: Anthropic's
    proposer model; or a local OpenAI-compatible server); a proposer without one falls back to the sampler.
    """

    label = "llm"

    def __init__(self, space: SearchSpace | dict, fallback: _Base | None = None, client: Any = None,
                 context: str = "", seed: int = 0, defaults: dict[str, Any] | None = None,
                 value: Callable[[IterationRecord, History], float | None] = default_value,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 describe: Callable[[dict[str, Any]], str] | None = None,
                 trials: Callable[[IterationRecord, History], list[tuple[dict[str, Any], float | None]]] | None = None,
                 batch: int = 1, n_history: int = 60, max_tokens: int = 600):
        super().__init__(space, seed, defaults, value, normalize, describe, trials, batch)
        self.fallback = fallback or OptunaProposer(space, seed=seed, defaults=defaults, value=value,
                                                   normalize=normalize, describe=describe, trials=trials, batch=batch)
        self._client, self.context, self.n_history, self.max_tokens = client, context, n_history, max_tokens

    def ask(self, history: History, n: int) -> list[dict[str, Any]]:
        """Configs without the LLM (the fallback's), e.g. to fill a batch."""
        return self.fallback.ask(history, n)

    @property
    def client(self) -> Any:
        if self._client is None:  # the caller builds it (autoloop.proposers.default_llm_client): none imported here
            raise ValueError("LLMSearchProposer has no client; pass client= (e.g. autoloop.proposers.default_llm_client())")
        return self._client

    def space_text(self) -> str:
        lines = []
        for k, d in self.space.distributions.items():
            if isinstance(d, CategoricalDistribution):
                lines.append(f"- {k}: one of {json.dumps(list(d.choices))}")
            else:
                kind = "integer" if isinstance(d, IntDistribution) else "number"
                lines.append(f"- {k}: {kind} in [{d.low}, {d.high}]{' (log scale)' if d.log else ''}")
        return "\n".join(lines)

    def prompt(self, history: History) -> str:
        goal = "higher" if history.direction == "max" else "lower"
        parts = [self.context.strip(), f"\n## Search space (score: {goal} is better)\n{self.space_text()}"]
        if self.defaults:
            parts.append(f"\n## Baseline\n{json.dumps(self.space.complete(self.defaults, self.defaults) or self.defaults)}")
        rows = []
        for rec in list(history)[-self.n_history:]:
            p = self.space.complete(rec.params, self.defaults)
            if p is None:
                continue
            trials = self._record_trials(rec, history)
            if not trials:
                continue
            _, v, viol = trials[0]
            shown = "failed" if v is None else ("rejected (wrong answers)" if viol > 0 or not math.isfinite(v)
                                                 else f"{v:.4g}")
            why = (rec.reason or "")[:120].replace("\n", " ")
            rows.append(f"#{rec.iter} {rec.status} score={shown} {json.dumps(self.normalize(p), default=str)}"
                        + (f"  ({why})" if why else ""))
        if rows:
            parts.append("\n## Experiments so far (oldest first; 'keep' = became the new best)\n" + "\n".join(rows))
        parts.append("\nPropose the next configuration: reasoning, then one JSON object with every knob.")
        return "\n".join(x for x in parts if x)

    def parse(self, text: str) -> dict[str, Any]:
        """The last JSON object in the reply, completed from the defaults and checked against the space."""
        found = None
        for m in re.finditer(r"\{[^{}]*\}", text, re.S):
            try:
                obj = json.loads(m.group(0))
            except ValueError:
                continue
            if isinstance(obj, dict):
                found = obj
        if found is None:
            raise ValueError("no JSON object in the reply")
        unknown = sorted(set(found) - set(self.space.names))
        if unknown:
            raise ValueError(f"unknown knob {unknown[0]!r}")
        for k, d in self.space.distributions.items():  # 4.0 for an int knob is fine; "4" is not
            if isinstance(d, IntDistribution) and isinstance(found.get(k), float) and found[k].is_integer():
                found[k] = int(found[k])
        params = self.space.complete(found, self.defaults)
        if params is None:
            bad = next(k for k in self.space.names if k in found and not _in(self.space.distributions[k], found[k]))
            raise ValueError(f"{bad}={found[bad]!r} is outside the space")
        return params

    def propose(self, history: History) -> Candidate:
        from autoloop.llm.types import BudgetExceeded, LLMRequest

        seen = {self.space.key(self.normalize(p)) for p, *_ in self._past(history)}
        req = LLMRequest(system=LLM_SYSTEM, messages=[{"role": "user", "content": self.prompt(history)}],
                         max_tokens=self.max_tokens, temperature=0.0, purpose="propose")
        try:
            text = self.client.complete(req).unwrap()
            params = self.parse(text)
            if self.space.key(self.normalize(params)) in seen:
                raise ValueError("already tried")
        except BudgetExceeded as e:
            return self._fell_back(history, f"budget: {e}")
        except Exception as e:  # noqa: BLE001 - any bad reply or API failure: the sampler proposes instead
            return self._fell_back(history, f"{type(e).__name__}: {e}"[:160])
        reason = re.sub(r"\s+", " ", text[: text.rfind("{")]).strip()[:200]
        cand = self._candidate(params, history, "llm")
        if self.batch > 1:  # the sampler fills the rest of the batch
            mine = self.space.key(self.normalize(params))
            alts = [p for p in self.fallback.ask(history, self.batch) if self.space.key(self.normalize(p)) != mine]
            cand.params = {**params, "alternatives": alts[: self.batch - 1]}
            cand.description += f" (+{len(cand.params['alternatives'])} {self.fallback.label} alternatives to screen)"
        if reason:
            cand.description += f" -- {reason}"
        return cand

    def propose_batch(self, history: History, n: int) -> list[Candidate]:
        """The LLM's config first, then the sampler's to fill the batch (each its own member)."""
        first = self.propose_one(history)
        mine = self.space.key(self.normalize({k: v for k, v in first.params.items() if k != "alternatives"}))
        rest = [c for c in self.fallback.propose_batch(history, n) if self.space.key(self.normalize(c.params)) != mine]
        return [first] + rest[: n - 1]

    def propose_one(self, history: History) -> Candidate:
        saved, self.batch = self.batch, 1
        try:
            return self.propose(history)
        finally:
            self.batch = saved

    def _fell_back(self, history: History, why: str) -> Candidate:
        cand = self.fallback.propose_batch(history, 1)[0] if self.batch == 1 else self.fallback.propose(history)
        cand.description = f"{cand.description} (llm reply unusable: {why})"
        return cand
