"""Tune your own HTTP service: a start command templated by the config, a health URL, a calls file.

Copy this file, edit the `target = ApiGeneric(...)` lines at the bottom, then `autoloop run my_api.py`.

    command   the shell-free start command; {port} is a free 127.0.0.1 port chosen for each start,
              {python} this interpreter, {state} the state dir, every knob of the config by its name,
              e.g. "uvicorn app:app --port {port} --workers {workers}"
    health    a path (or http://127.0.0.1:{port}/... URL) answering 200 once the service is ready
    calls     JSONL, one call per line: {"id": "c1", "method": "GET", "path": "/items?q=x",
              "body": null, "barrier": false, "expect": "<sha256>" | "expect_status": 200}
              "expect" = sha256 of json.dumps({"status": s, "body": parsed_json}, sort_keys=True,
              separators=(",", ":")); write them with record_expectations() from a config you trust.
              Without "expect", a call is correct when its status is "expect_status" (default any 2xx).
              A "barrier" call (default: every non-GET) runs alone, after everything before it.
    space     the knobs: {"workers": ("int", 1, 8), "cache": ("cat", ["none", "lru"])} (autoloop.search)
    baseline  the starting config (state/config.json)

Each iteration starts incumbent and candidate (each under a guardian that takes its whole process
group down on stop, on SIGTERM and when this process dies), warms them up, replays the calls
interleaved `repeats` times and returns p95/correctness; the engine keeps a candidate only when
the paired block-bootstrap 95% interval of the p95 ratio lies below 0.90 and correctness did not fall.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from api_demo.measure import measure_interleaved, paired_compare, scores_from
from api_demo.reference import response_hash
from api_demo.replay import ReplayResult, load_calls, replay
from api_demo.service import ServiceProcess, sigterm_as_exit

from autoloop.history import History
from autoloop.search import OptunaProposer, RandomProposer, SearchSpace
from autoloop.target import Candidate, Scores, TargetError


class ApiGeneric:
    direction = "min"
    min_delta = 0.0
    guards = {"correctness": 0.0}
    bootstrap = {"stat": "quantile_ratio", "q": 95, "confidence": 0.95, "threshold": 0.10, "resamples": 2000}
    patience = 10
    show_columns = ["p95_ms", "p50_ms", "p99_ms", "correctness"]

    def __init__(self, name: str, command: str, calls: Path | str, space: dict[str, Any], baseline: dict[str, Any],
                 health: str = "/health", cwd: Path | str | None = None, env: dict[str, str] | None = None,
                 repeats: int = 8, score_repeats: int = 3, concurrency: int = 4, budget_s: float = 60.0,
                 score_budget_s: float = 300.0, start_timeout_s: float = 60.0, proposer: str = "tpe", seed: int = 0):
        self.name, self.command, self.gold = name, command, Path(calls)
        self.space = SearchSpace(space)
        base = self.space.complete(baseline)
        if base is None:
            raise TargetError(f"{name}: baseline {baseline} is not a point of the search space; give a value in range for every knob")
        self.baseline = base
        self.health = health.split("{port}", 1)[-1] if health.startswith("http") else health
        if not self.health.startswith("/"):
            raise TargetError(f"{name}: health={health!r}; give a path such as /health or http://127.0.0.1:{{port}}/health")
        self.cwd = Path(cwd) if cwd else None
        self.env = env
        self.repeats, self.score_repeats, self.concurrency = repeats, score_repeats, concurrency
        self.budget_s, self.score_budget_s, self.start_timeout_s = budget_s, score_budget_s, start_timeout_s
        if proposer not in ("tpe", "random"):
            raise TargetError(f"{name}: proposer={proposer!r}; use 'tpe' or 'random'")
        cls = OptunaProposer if proposer == "tpe" else RandomProposer
        self.proposer = cls(self.space, seed=seed, defaults=self.baseline)
        self.command_for(self.baseline, Path("."))  # a typo in a {placeholder} fails at load, not at 3 am

    def command_for(self, cfg: dict[str, Any], state: Path) -> list[str]:
        values = {k: (json.dumps(v) if isinstance(v, bool) else v) for k, v in cfg.items()}
        values.update(python=sys.executable, state=str(state), port="{port}")
        try:
            return [part.format(**values) for part in shlex.split(self.command)]
        except KeyError as e:
            raise TargetError(f"{self.name}: command uses {{{e.args[0]}}} which is neither a knob nor port/python/state; "
                              "fix the command template") from None

    # -- engine process -------------------------------------------------------------------------
    def check(self) -> None:
        load_calls(self.gold)

    def setup(self, state: Path) -> None:
        Path(state).mkdir(parents=True, exist_ok=True)
        (Path(state) / "config.json").write_text(json.dumps(self.baseline, indent=1) + "\n")

    def propose(self, history: History) -> Candidate:
        return self.proposer.propose(history)

    # -- child processes ------------------------------------------------------------------------
    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        cfg = {**self._config(Path(state)), **candidate.params}
        if self.space.complete(cfg) is None:
            raise TargetError(f"{self.name}: candidate {candidate.params} is outside the search space")
        (Path(state) / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")

    def score(self, state: Path, gold: Path) -> Scores:
        cfg = self._config(Path(state))
        (res,) = self._measure([(cfg, Path(state))], gold, self.score_repeats)
        return scores_from(res, {"config": _summary(cfg, self.baseline)})

    def compare(self, incumbent_state: Path, candidate_state: Path, gold: Path) -> tuple[Scores, Scores]:
        a, b = self._config(Path(incumbent_state)), self._config(Path(candidate_state))
        return self._services([(a, Path(incumbent_state)), (b, Path(candidate_state))], gold,
                              lambda services, calls: paired_compare(
                                  services, calls, self.repeats, self.concurrency, self.bootstrap,
                                  {"config": _summary(a, self.baseline)}, {"config": _summary(b, self.baseline)}))

    def _config(self, state: Path) -> dict[str, Any]:
        p = state / "config.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise TargetError(f"{p}: unreadable config ({e}); the state dir must hold config.json") from None

    def _measure(self, cfgs: list[tuple[dict, Path]], gold: Path, repeats: int) -> list[list[ReplayResult]]:
        return self._services(cfgs, gold, lambda services, calls: measure_interleaved(services, calls, repeats,
                                                                                       self.concurrency))

    def _services(self, cfgs: list[tuple[dict, Path]], gold: Path, work_fn):
        """Start one service per (config, state), run work_fn(services, calls), stop them all."""
        _, calls = load_calls(Path(gold))
        work = Path(tempfile.mkdtemp(prefix="api-generic-"))
        services: list[ServiceProcess] = []
        try:
            with sigterm_as_exit():
                for i, (cfg, state) in enumerate(cfgs):
                    services.append(ServiceProcess(self.command_for(cfg, state), workdir=work / f"s{i}",
                                                   health_path=self.health, env=self.env, cwd=self.cwd,
                                                   start_timeout_s=self.start_timeout_s).start())
                return work_fn(services, calls)
        finally:
            for s in services:
                s.stop()
            shutil.rmtree(work, ignore_errors=True)


def _summary(cfg: dict[str, Any], baseline: dict[str, Any]) -> str:
    diff = [f"{k}={v}" for k, v in cfg.items() if baseline.get(k) != v]
    return ", ".join(diff) if diff else "baseline"


def record_expectations(t: ApiGeneric, config: dict[str, Any], calls_in: Path, calls_out: Path) -> Path:
    """Run the calls once against `config` (one you trust) and write them back with "expect" hashes."""
    _, calls = load_calls(calls_in)
    work = Path(tempfile.mkdtemp(prefix="api-generic-rec-"))
    try:
        with sigterm_as_exit(), ServiceProcess(t.command_for(config, work), workdir=work, health_path=t.health,
                                               env=t.env, cwd=t.cwd, start_timeout_s=t.start_timeout_s) as s:
            seen: dict[str, str] = {}
            for c in calls:  # one at a time, in order: the answers must not depend on scheduling
                res = _record_one(s.port, c)
                seen[c["id"]] = res
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = [{**c, "expect": seen[c["id"]]} for c in calls]
    calls_out.write_text("".join(json.dumps(c, sort_keys=True) + "\n" for c in out))
    return calls_out


def _record_one(port: int, call: dict) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = None if call.get("body") is None else json.dumps(call["body"]).encode()
        conn.request(call["method"], call["path"], body=body,
                     headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw.decode(errors="replace")
        return response_hash(resp.status, obj)
    finally:
        conn.close()


# -- Example: the bundled demo server tuned through this generic interface. Edit for your service. --
_HERE = Path(__file__).resolve().parent
target = ApiGeneric(
    name="api_generic_demo",
    command="{python} api_demo/server.py --rows 200000 --port {port} --set workers={workers} "
            "--set cache={cache} --set cache_size={cache_size} --set search_query={search_query} "
            "--set index_skill_level={index_skill_level} --set stats_query={stats_query} "
            "--set index_location={index_location} --set detail_query={detail_query}",
    health="http://127.0.0.1:{port}/health",
    calls=_HERE.parent / "gold" / "api_calls.jsonl",
    space={"workers": ("int", 1, 8), "cache": ("cat", ["none", "lru"]), "cache_size": ("int", 8, 1024, True),
           "search_query": ("cat", ["correlated", "join"]), "index_skill_level": ("cat", [False, True]),
           "stats_query": ("cat", ["like", "eq"]), "index_location": ("cat", [False, True]),
           "detail_query": ("cat", ["text_scan", "pk"])},
    baseline={"workers": 1, "cache": "none", "cache_size": 64, "search_query": "correlated",
              "index_skill_level": False, "stats_query": "like", "index_location": False, "detail_query": "text_scan"},
    cwd=_HERE,
)
