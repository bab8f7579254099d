"""What to try next, chosen per run: `autoloop run T --proposer tpe|random|llm|package.module:Class`.

Without `--proposer` a target proposes for itself (its own `propose`, and `propose_batch` when it has one).
With it, the engine builds the proposer here and records the choice in the run's config, so `resume`
proposes exactly what the first process would have (every proposer rebuilds its state from the History).

  tpe | random   Optuna TPE (with constraints) or uniform random search over the target's `space`
                 (autoloop.proposers.search), never repeating a tried config. A config that broke a guard
                 (e.g. a wrong answer) is infeasible to TPE, not merely slow: the constraint is the target's
                 `constraint(rec, history)` hook if it has one, else 1 for an iteration a guard rejected.
  llm            an LLM names the next config from the space and the history, TPE fills the rest of a batch
                 and takes over for an unusable reply; the client is built here (Anthropic, ANTHROPIC_API_KEY,
                 AUTOLOOP_PROPOSER_MODEL) and handed to the proposer, which imports none itself.
  module:Class   `Class(target)`: any object with `propose(history)` (and optionally `propose_batch(history, n)`).

A target opts in to tpe/random/llm by declaring `space` (the plain dict of autoloop.proposers.search) and,
optionally, `search_options() -> dict` (seed, defaults, value, constraint, normalize, describe, trials,
n_startup_trials, explore, neighbours, context) so the engine-built proposer scores and describes as the
target's own does.

Modules: `search` (space-based proposers), `prompt` (prompt proposers: offline demos/edits, reflective LLM).
"""
from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from autoloop.target import TargetError

NAMES = ("tpe", "random", "llm")


def guard_constraint(rec: Any, history: Any = None) -> float:
    """1.0 for an iteration the keep rule rejected because a guard metric fell (autoloop.decide), else 0."""
    return 1.0 if str(getattr(rec, "reason", "") or "").startswith("guard ") else 0.0


def _options(target: Any) -> dict[str, Any]:
    hook = getattr(target, "search_options", None)
    opts = dict(hook() if callable(hook) else {})
    opts.setdefault("seed", int(getattr(target, "seed", 0) or 0))
    return opts


def _kwargs(cls: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """The options `cls.__init__` accepts (RandomProposer takes no constraint, no explore, ...)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in opts.items() if k in params}


def default_llm_client() -> Any:
    """The proposer's client for `--proposer llm`: Anthropic's proposer model (needs ANTHROPIC_API_KEY)."""
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise TargetError("--proposer llm: set ANTHROPIC_API_KEY (the proposer calls Anthropic), or use "
                          "--proposer tpe / random")
    from autoloop.llm.anthropic_client import DEFAULT_PROPOSER_MODEL, AnthropicClient

    return AnthropicClient(os.environ.get("AUTOLOOP_PROPOSER_MODEL") or DEFAULT_PROPOSER_MODEL)


def make_proposer(spec: str | None, target: Any, client: Any = None) -> Any:
    """The run's proposer: the target itself when `spec` is empty. TargetError (one line, with the fix) when
    the spec is unusable for this target."""
    if not spec:
        return target
    if spec in NAMES:
        space = getattr(target, "space", None)
        if space is None:
            raise TargetError(f"--proposer {spec}: target {getattr(target, 'name', '?')!r} declares no `space` "
                              f"(see autoloop/proposers/__init__.py); drop --proposer to use the target's own")
        from autoloop.proposers import search

        opts = _options(target)
        if spec == "random":
            return search.RandomProposer(space, **_kwargs(search.RandomProposer, opts))
        opts.setdefault("constraint", guard_constraint)
        tpe = search.OptunaProposer(space, sampler="tpe", **_kwargs(search.OptunaProposer, opts))
        if spec == "tpe":
            return tpe
        return search.LLMSearchProposer(space, fallback=tpe, client=client or default_llm_client(),
                                        **_kwargs(search.LLMSearchProposer, opts))
    mod, _, cls = spec.partition(":")
    if not mod or not cls:
        raise TargetError(f"--proposer {spec!r}: use tpe, random, llm or package.module:Class")
    try:
        factory = getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise TargetError(f"--proposer {spec!r}: cannot import it ({e}); check the module is on PYTHONPATH") from None
    prop = factory(target)
    if not callable(getattr(prop, "propose", None)) and not callable(getattr(prop, "propose_batch", None)):
        raise TargetError(f"--proposer {spec!r}: {cls} has no propose(history); see autoloop/proposers/__init__.py")
    return prop
