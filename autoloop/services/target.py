"""ApiTarget: any HTTP service you can start with a command becomes an autoloop target.

    from autoloop.services import ApiTarget
    target = ApiTarget(name="orders", command="{python} app.py --port {port} --db {scratch}/db.sqlite ...",
                       health="/health", calls="calls.jsonl", space={...}, baseline={...})

See targets/api_generic.py for the walk-through (calls file, converters, every option). What happens:

- setup (once, when the run is created): the baseline config replays the calls twice, exactly as every
  measurement will (same warm-up, restarts, resets). Calls whose answers differ between the two replays
  stop the run before anything is written, with one line naming them and the fixes. The baseline's
  answers become the expected ones for calls without their own "expect" (state/expected_answers.json).
- run: writes the candidate's config (state/config.json).
- score (the baseline) / compare (every candidate against the incumbent): start one instance per config,
  each with its own scratch dir, replay the calls `repeats` times interleaved, p95 / correctness; keep
  only when the paired block-bootstrap 95% interval of p95(candidate)/p95(incumbent) lies below 0.95 and
  no answer is wrong. Instances and scratch dirs are gone when the method returns (or dies).
- propose: Optuna TPE over `space`; wrong answers make a config infeasible to it; after a keep that
  changed several knobs, each changed knob is ablated in turn (autoloop.proposers.search).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from autoloop.services.calls import load_calls, write_calls
from autoloop.services.measure import Fleet, find_drift, measure_interleaved, paired_compare, paired_value, \
    scores_from, wrong_share
from autoloop.services.service import ServiceError, ServiceProcess, sigterm_as_exit
from autoloop.target import Candidate, Scores, TargetError

EXPECTED = "expected_answers.json"
PLACEHOLDERS = ("port", "scratch", "python", "state", "port_file")
_HTTP_RESET = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")


def _caller_dir() -> Path:
    """The directory of the file that built the target (relative paths in it are relative to that file)."""
    f = sys._getframe(1)
    while f is not None and f.f_globals.get("__name__", "").startswith("autoloop.services"):
        f = f.f_back
    path = f.f_globals.get("__file__") if f is not None else None
    return Path(path).resolve().parent if path else Path.cwd()


class ApiTarget:
    direction = "min"
    min_delta = 0.0
    guards = {"correctness": 0.0}  # one wrong answer more than the incumbent and a config is never kept
    # Keep when the 95% interval of p95(candidate)/p95(incumbent) lies below 1 - threshold. 5%, not the demo's
    # 10%: dropping a knob that only costs (a one-knob ablation) often gains 10-30%, and under background load
    # the interval of such a gain is too wide to clear a 10% bar.
    bootstrap = {"stat": "quantile_ratio", "q": 95, "confidence": 0.95, "threshold": 0.05, "resamples": 2000}
    patience = 8
    screen_slower = 1.5  # a candidate this much slower than the incumbent in the one-repeat screen is not measured on
    # p95_ratio: p95(candidate)/p95(incumbent) in the same interleaved measurement. Rows' p95_ms come from
    # different moments (a busy machine can double them), so a kept row may show a higher p95 than an earlier one.
    show_columns = ["config", "p95_ms", "p95_ratio", "p50_ms", "correctness", "concurrency"]

    def __init__(self, name: str, command: str, calls: Path | str, space: dict[str, Any], baseline: dict[str, Any],
                 *, health: str = "/health", concurrency: int = 1, restart_between_replays: bool = False,
                 reset_command: str | None = None, ignore: list[str] | tuple[str, ...] = (),
                 cwd: Path | str | None = None, env: dict[str, str] | None = None, repeats: int = 8,
                 score_repeats: int = 3, warmup: int = 20, budget_s: float = 60.0, score_budget_s: float = 600.0,
                 start_timeout_s: float = 60.0, proposer: str = "tpe", seed: int = 0, n_startup_trials: int = 5,
                 scratch_dir: Path | str | None = None):
        from autoloop.proposers.search import SearchSpace

        here = _caller_dir()
        self.name, self.command = name, command
        self.gold = (here / calls) if not Path(calls).is_absolute() else Path(calls)
        self.space = SearchSpace(space)
        base = self.space.complete(baseline)
        if base is None:
            bad = next((k for k in self.space.names if k not in baseline), None)
            what = f"has no value for knob {bad!r}" if bad else "has a value outside the space"
            raise TargetError(f"{name}: baseline {what}; give every knob of `space` a value in range")
        self.baseline = base
        self.health = health.split("{port}", 1)[-1] if health.startswith("http") else health
        if not self.health.startswith("/"):
            raise TargetError(f"{name}: health={health!r}; give a path such as /health or http://127.0.0.1:{{port}}/health")
        for opt, v, low in (("concurrency", concurrency, 1), ("repeats", repeats, 2), ("score_repeats", score_repeats, 1),
                            ("warmup", warmup, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise TargetError(f"{name}: {opt}={v!r}; give a whole number >= {low}")
        if restart_between_replays and reset_command:
            raise TargetError(f"{name}: give restart_between_replays=True or reset_command, not both")
        if proposer not in ("tpe", "random"):
            raise TargetError(f"{name}: proposer={proposer!r}; use 'tpe' (the default) or 'random'")
        self.concurrency, self.repeats, self.score_repeats, self.warmup = concurrency, repeats, score_repeats, warmup
        self.restart_between_replays, self.reset_command = bool(restart_between_replays), reset_command
        self.ignore = tuple(ignore)
        self.cwd = (here / cwd if not Path(cwd).is_absolute() else Path(cwd)) if cwd else here
        self.env = dict(env or {})
        self.budget_s, self.score_budget_s, self.start_timeout_s = budget_s, score_budget_s, start_timeout_s
        self.proposer_name, self.seed, self.n_startup_trials = proposer, seed, n_startup_trials
        self.scratch_dir = scratch_dir
        self._proposer = None
        self.command_for(self.baseline, Path("."))  # a typo in a {placeholder} fails at load, not at 3 am
        if reset_command and not _HTTP_RESET.match(reset_command.strip()):
            self._template(reset_command, self.baseline, Path("."), "reset_command")

    # -- templates ----------------------------------------------------------------------------
    def _template(self, template: str, cfg: dict[str, Any], state: Path, option: str) -> list[str]:
        values = {k: (json.dumps(v) if isinstance(v, bool) else v) for k, v in cfg.items()}
        values.update(python=sys.executable, state=str(state), port="{port}", scratch="{scratch}",
                      port_file="{port_file}")
        try:
            return [part.format(**values) for part in shlex.split(template)]
        except KeyError as e:
            raise TargetError(f"{self.name}: {option} uses {{{e.args[0]}}}, which is neither a knob nor one of "
                              f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}; fix {option} "
                              "(write {{ and }} for literal braces)") from None
        except (ValueError, IndexError) as e:
            raise TargetError(f"{self.name}: {option} is not a valid template ({e}); fix {option}") from None

    def command_for(self, cfg: dict[str, Any], state: Path) -> list[str]:
        return self._template(self.command, cfg, state, "command")

    # -- engine process -----------------------------------------------------------------------
    @property
    def proposer(self):
        """Built on first use: child processes, which never propose, do not import Optuna."""
        if self._proposer is None:
            from autoloop.proposers.search import OptunaProposer, RandomProposer

            if self.proposer_name == "random":
                self._proposer = RandomProposer(self.space, seed=self.seed, defaults=self.baseline)
            else:
                self._proposer = OptunaProposer(self.space, seed=self.seed, defaults=self.baseline,
                                                value=paired_value, constraint=wrong_share,
                                                n_startup_trials=self.n_startup_trials)
        return self._proposer

    def check(self) -> None:
        load_calls(self.gold)

    def describe(self) -> dict[str, Any]:
        _, calls = load_calls(self.gold)
        return {"calls": len(calls), "concurrency": self.concurrency, "repeats": self.repeats,
                "restart_between_replays": self.restart_between_replays, "reset_command": self.reset_command,
                "proposer": self.proposer_name, "seed": self.seed}

    def setup(self, state: Path) -> None:
        """Write the baseline config, then check the calls on it (see the module docstring)."""
        state = Path(state)
        state.mkdir(parents=True, exist_ok=True)
        (state / "config.json").write_text(json.dumps(self.baseline, indent=1) + "\n")
        expected = self.check_baseline(state)
        (state / EXPECTED).write_text(json.dumps(expected, indent=0, sort_keys=True) + "\n")

    def check_baseline(self, state: Path) -> dict[str, str]:
        """Replay the calls twice on the baseline; TargetError (one line: the calls and the fixes) when answers
        drift, a call gets no answer or its answer differs from its "expect". Returns the answers of the
        calls that have no "expect" of their own (call id -> hash)."""
        _, calls = load_calls(self.gold)
        try:
            with sigterm_as_exit(), self._fleet([(self.baseline, state)]) as fleet:
                drift, (first, second) = find_drift(fleet, calls, self.concurrency, self.ignore, self.warmup)
        except ServiceError as e:
            raise TargetError(f"{self.name}: the baseline service did not start: {e}; fix `command` or `health` "
                              "in the target file") from None
        where = str(self.gold)
        if drift:
            a, b = _where_they_differ(first.excerpt.get(drift[0]["id"]), second.excerpt.get(drift[0]["id"]))
            seen = f"first {a}, then {b}"
            n = len(drift)
            raise TargetError(
                f"{where}: {n} call{'s' if n > 1 else ''} answer{'' if n > 1 else 's'} differently when the unchanged "
                f"config replays the calls twice ({_lines(drift)}; line {drift[0]['_line']} answered {seen}): "
                "a replay changes data the next replay reads. Fix one of: "
                "restart_between_replays=True in the target (a fresh instance and {scratch} for every replay), "
                "reset_command='...' (restores the data between replays), or mark a call \"volatile\": true "
                "(its answer changes by design; only its status is checked)")
        dead = [c for c in calls if first.status.get(c["id"]) is None]
        if dead:
            raise TargetError(f"{where}: the baseline gave no answer to {_lines(dead)} "
                              f"({first.errors.get(dead[0]['id'], '')}); check the paths and the service log")
        wrong = [c for c in calls if c.get("expect") and not c.get("volatile") and first.answers.get(c["id"]) != c["expect"]]
        if wrong:
            raise TargetError(f"{where}: the baseline's answers differ from \"expect\" at {_lines(wrong)}; re-record "
                              "them from a config you trust (autoloop.services.record_expectations) or remove "
                              "\"expect\" to take the baseline's answers")
        return {c["id"]: first.answers[c["id"]] for c in calls if not c.get("expect") and not c.get("volatile")}

    def propose(self, history) -> Candidate:
        return self.proposer.propose(history)

    # -- child processes ----------------------------------------------------------------------
    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        cfg = {**self._config(Path(state)), **candidate.params}
        if self.space.complete(cfg) is None:
            raise TargetError(f"{self.name}: candidate {candidate.params} is outside the search space")
        (Path(state) / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")

    def score(self, state: Path, gold: Path) -> Scores:
        cfg = self._config(Path(state))
        _, calls = load_calls(Path(gold))
        with sigterm_as_exit(), self._fleet([(cfg, Path(state))]) as fleet:
            (res,) = measure_interleaved(fleet, calls, self.score_repeats, self.concurrency, warmup=self.warmup,
                                         expected=self._expected(Path(state)), ignore=self.ignore)
        return scores_from(res, self._info(cfg))

    def compare(self, incumbent_state: Path, candidate_state: Path, gold: Path) -> tuple[Scores, Scores]:
        a, b = self._config(Path(incumbent_state)), self._config(Path(candidate_state))
        _, calls = load_calls(Path(gold))
        with sigterm_as_exit(), self._fleet([(a, Path(incumbent_state)), (b, Path(candidate_state))]) as fleet:
            inc, cand = paired_compare(fleet, calls, self.repeats, self.concurrency, self.bootstrap, self._info(a),
                                       self._info(b), slower_factor=self.screen_slower,
                                       expected=self._expected(Path(incumbent_state)), ignore=self.ignore)
        cand.info["config_params"] = b
        return inc, cand

    def _info(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"config": _summary(cfg, self.baseline), "concurrency": self.concurrency}

    def _config(self, state: Path) -> dict[str, Any]:
        p = state / "config.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise TargetError(f"{p}: unreadable config ({e}); the state dir must hold config.json") from None

    def _expected(self, state: Path) -> dict[str, str]:
        p = state / EXPECTED
        return json.loads(p.read_text()) if p.exists() else {}

    def _fleet(self, cfgs: list[tuple[dict[str, Any], Path]]) -> Fleet:
        """Not yet started: one instance per (config, state), restarted or reset between replays as configured."""
        def factory(cfg: dict[str, Any], state: Path) -> Callable[[], ServiceProcess]:
            def make() -> ServiceProcess:
                s = ServiceProcess(self.command_for(cfg, state), health_path=self.health, env=self.env, cwd=self.cwd,
                                   start_timeout_s=self.start_timeout_s, scratch_dir=self.scratch_dir)
                s.config, s.state = cfg, state
                return s
            return make

        return Fleet([factory(c, s) for c, s in cfgs], restart=self.restart_between_replays,
                     reset=self._reset if self.reset_command else None)

    def _reset(self, s: ServiceProcess) -> None:
        m = _HTTP_RESET.match(self.reset_command.strip())
        if m:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=self.start_timeout_s)
            try:
                conn.request(m.group(1), m.group(2))
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
            if not 200 <= resp.status < 300:
                raise ServiceError(f"reset_command {self.reset_command!r} answered {resp.status}; fix reset_command")
            return
        argv = [a.replace("{port}", str(s.port)).replace("{scratch}", str(s.scratch))
                for a in self._template(self.reset_command, s.config, s.state, "reset_command")]
        p = subprocess.run(argv, cwd=self.cwd, env={**os.environ, **self.env}, capture_output=True, text=True,
                           timeout=self.start_timeout_s)
        if p.returncode != 0:
            tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-2:])
            raise ServiceError(f"reset_command exited with code {p.returncode}: {tail}; fix reset_command")


def _where_they_differ(a: str | None, b: str | None, width: int = 40) -> tuple[str, str]:
    """The two answers around their first difference (with ... where cut)."""
    if a is None or b is None:
        return a[:2 * width] if a else "(no answer)", b[:2 * width] if b else "(no answer)"
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - width)

    def cut(t: str) -> str:
        return ("..." if lo else "") + t[lo:i + width] + ("..." if i + width < len(t) else "")
    return cut(a), cut(b)


def _lines(calls: list[dict], limit: int = 4) -> str:
    shown = [f"line {c['_line']} {c['method']} {c['path']}" for c in calls[:limit]]
    more = f" and {len(calls) - limit} more" if len(calls) > limit else ""
    return ", ".join(shown) + more


def _summary(cfg: dict[str, Any], baseline: dict[str, Any]) -> str:
    diff = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items() if baseline.get(k) != v]
    return ", ".join(diff) if diff else "baseline"


def record_expectations(t: ApiTarget, config: dict[str, Any], calls_in: Path | str, calls_out: Path | str) -> Path:
    """Replay the calls once on `config` (one you trust), as a measurement does, and write them to `calls_out`
    with the sha256 of each answer as "expect" (volatile calls keep a status check only)."""
    meta, calls = load_calls(calls_in)
    cfg = t.space.complete(config, t.baseline)
    if cfg is None:
        raise TargetError(f"{t.name}: record_expectations: {config} is not a point of the space")
    state = Path(calls_out).parent
    with sigterm_as_exit(), t._fleet([(cfg, state)]) as fleet:
        (res,) = measure_interleaved(fleet, calls, 1, t.concurrency, warmup=t.warmup, ignore=t.ignore)
    missing = [c for c in calls if c["id"] not in res[0].answers]
    if missing:
        raise TargetError(f"{calls_in}: no answer to {_lines(missing)} ({res[0].errors.get(missing[0]['id'])})")
    out = [{**c, "expect": res[0].answers[c["id"]]} if not c.get("volatile") else c for c in calls]
    return write_calls(Path(calls_out), out, meta or None)
