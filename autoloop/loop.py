"""The checkpoint-and-score loop, top to bottom.

    baseline ─► propose ─► run (child, deadline) ─► score (child, deadline) ─► decide ─► keep | revert
                   ▲                                                                         │
                   └─────────────────────────── until a stop rule holds ◄────────────────────┘

Every step is written to the run's journal before the next one starts, so a kill -9 anywhere loses at
most the iteration in flight, which `resume` records as `interrupted` and runs again.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

from autoloop import reaper, sandbox
from autoloop.checkpoint import best_tag, discarded_ref, tag_name
from autoloop.decide import LoopState, decide, stop_reason
from autoloop.envfault import fault
from autoloop.journal import replay
from autoloop.report import reference_points
from autoloop.runs import FAILED, Run, release_lock
from autoloop.target import Candidate, Scores


def run_loop(run: Run) -> str:
    """Drive iterations until a stop rule holds; returns the stop reason.

    A fault of the machine (disk full, read-only, permissions) ends the run with stop reason
    `environment` and raises EnvironmentFault (one line); the journal stays the truth for `resume`."""
    interrupts = _InterruptFlag()
    with interrupts, run.display, _owning_processes(run):
        try:
            reason = _drive(run, interrupts)
            run.finish(reason, run.stop_detail)
        except Exception as e:
            f = fault(e, run.dir, then=f"then `autoloop resume {run.run_id}`")
            if f is None:
                raise
            _record_environment_stop(run, str(f))
            raise f from None
    return reason


def _drive(run: Run, interrupts: "_InterruptFlag") -> str:
    redo = run.take_redo()  # the candidate an earlier process was running when it died
    sf = run.stop_file()
    if sf is not None:
        run.display.message(f"note: stop file {sf} exists, so this run stops at the first check; "
                            f"remove it (rm {sf}) to let it go on")
    refs_done = False
    while True:
        hist = replay(run.journal.events(), run.dir)
        if hist.incumbent is None and not interrupts.raised:
            # Every curve starts at a measured point: the unchanged state, scored before any candidate.
            iterate(run, hist, interrupts, baseline=True)
            last = replay(run.journal.events(), run.dir).last()
            if last.status == "keep":
                continue
            if last.status == "interrupted":
                return "sigint"
            run.stop_detail = (f"the baseline could not be scored ({last.status}: {last.reason}); logs in "
                               f"{run.dir / 'iters' / f'{last.iter:03d}'}; fix the target, then "
                               f"`autoloop resume {run.run_id}`")
            return "baseline_failed"
        if not refs_done and not interrupts.raised:
            score_references(run, interrupts)  # once per run: what a score means on this gold set
            refs_done = True
        reason = "sigint" if interrupts.raised else stop_reason(_loop_state(run, hist), run.limits)
        if reason:
            return reason
        iterate(run, hist, interrupts, redo=redo)
        redo = None
        last = replay(run.journal.events(), run.dir).last()
        if last and last.status == "invalid" and last.reason.startswith("budget"):
            return "max_cost"  # the target refused to spend past the dollar cap: nothing more can run


@contextlib.contextmanager
def _owning_processes(run: Run) -> Iterator[None]:
    """Nothing this run starts outlives it (see autoloop.reaper): orphans re-parent to this process, the
    engine's own helpers carry `<run>/engine`, and at the end every marked or adopted process is ended."""
    reaper.become_subreaper()
    before = reaper.child_pids()
    old = os.environ.get(reaper.MARKER)
    os.environ[reaper.MARKER] = f"{run.run_id}/engine"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(reaper.MARKER, None)
        else:
            os.environ[reaper.MARKER] = old
        reaper.terminate(reaper.marked(prefix=f"{run.run_id}/") + reaper.adopted(before), grace=sandbox.GRACE_S)
        reaper.become_subreaper(False)  # a process that drives runs in-process (a benchmark) is left as it was


def _record_environment_stop(run: Run, line: str) -> None:
    """Best effort: the disk that refused the last write may refuse this one too."""
    with contextlib.suppress(Exception):
        run.record("run_end", stop_reason="environment", status="failed", detail=line)
    release_lock(run.dir)


def iterate(run: Run, hist, interrupts, baseline: bool = False, redo: dict | None = None) -> None:
    n = hist.next_iter
    t0 = time.time()
    it_dir = run.dir / "iters" / f"{n:03d}"
    it_dir.mkdir(parents=True, exist_ok=True)
    run.set_context(n, it_dir, "propose")
    durations = {"propose_s": 0.0, "run_s": 0.0, "score_s": 0.0}
    run.note_target_changes()  # children re-import the target file: an edit mid-run must be on record

    # 1. propose (engine process: proposers read history and may call an LLM)
    if baseline:
        cand, error = Candidate({}, "baseline: the unchanged starting state"), ""
    elif redo is not None:
        cand, error = Candidate.from_json(redo["candidate"]), ""
        cand.description = f"redo of #{redo['iter']} (interrupted): {cand.description}"
    else:
        run.display.phase(n, "propose")
        cand, error = _propose(run, hist)
    durations["propose_s"] = time.time() - t0
    run.record("iter_start", iter=n, candidate=cand.to_json(), redo_of=redo["iter"] if redo else None,
               baseline=baseline or None)

    # 2. run the candidate in a child (the baseline is scored as it is)
    status, res_value, peak = ("crash", None, 0.0) if error else ("ok", None, 0.0)
    if status == "ok" and not baseline:
        run.display.phase(n, "run", run.target.budget_s)
        res = run.child(n, it_dir, "run", {"candidate": cand.to_json(), "state": str(run.state_dir),
                                           "deadline": time.time() + run.target.budget_s},
                        run.target.budget_s, interrupts)
        durations["run_s"], peak = res.method_s or res.duration_s, res.peak_rss_mb
        status, error = res.status, res.error

    # 3. score it (or measure incumbent and candidate interleaved, for noisy targets)
    scores = inc_scores = None
    if status == "ok":
        run.set_context(n, it_dir, "score")
        res, scores, inc_scores = _score(run, hist, n, it_dir, baseline, interrupts)
        durations["score_s"], peak = res.method_s or res.duration_s, max(peak, res.peak_rss_mb)
        status, error = res.status, res.error
        if status == "ok" and scores is not None and scores.score is None:
            status, error = "invalid", "score() returned no score (None)"
        elif status == "ok" and scores is not None and not scores.is_finite():
            status, error = "nonfinite", f"score() returned {scores.score!r}"

    # 4. decide
    inc = hist.incumbent
    decision = None
    if status == "ok" and baseline:
        status, reason = "keep", "baseline"
    elif status == "ok":
        ref = inc_scores or Scores(inc.score, inc.components, inc.items)
        t = run.target
        decision = decide(scores.score, ref.score, t.direction, min_delta=float(getattr(t, "min_delta", 0.0) or 0.0),
                          cand_components=scores.components, inc_components=ref.components,
                          guards=getattr(t, "guards", None), cand_items=scores.items, inc_items=ref.items,
                          bootstrap=getattr(t, "bootstrap", None))
        status, reason = ("keep" if decision.keep else "revert"), decision.reason
    else:
        reason = (error.strip().splitlines() or [status])[-1][:300]

    # 5. checkpoint or revert (every candidate becomes a commit: nothing is lost)
    commit = run.repo.commit(f"iter {n}: {cand.description}\n\nstatus: {status}\nreason: {reason}\n")
    tag = None
    if status == "keep":
        tag = tag_name(run.run_id, n)
        msg = f"score={scores.score:.6g} " + " ".join(f"{k}={v:.4g}" for k, v in scores.components.items())
        msg += f" | {cand.description}\n\n{reason}\n"
        run.repo.tag(tag, commit, msg)
        run.repo.tag(best_tag(run.run_id), commit, f"best: ckpt-{n:03d} {msg}", force=True)
    else:
        run.repo.set_ref(discarded_ref(run.run_id, n), commit)
        run.repo.restore(inc.commit if inc else commit)

    # 6. record
    if status == "interrupted":
        reason = "interrupted by the user; state restored from the best checkpoint"
    calls = run.collect_llm_calls(n, it_dir)
    cost = max(sum(float(c.get("cost_usd") or 0) for c in calls), float(scores.cost_usd if scores else 0.0))
    if scores is not None and scores.feedback:
        (it_dir / "feedback.json").write_text(_dumps(scores.feedback))
    durations["total_s"] = time.time() - t0
    durations["overhead_s"] = durations["total_s"] - durations["propose_s"] - durations["run_s"] - durations["score_s"]
    sj = scores.to_json() if scores else None
    if sj:
        sj.pop("feedback", None)
    run.record("iter_end", iter=n, status=status, scores=sj, commit=commit, tag=tag, reason=reason,
               error=error if status in FAILED else None,
               incumbent_score=(inc_scores.score if inc_scores else (inc.score if inc else None)),
               incumbent_scores=(_slim(inc_scores) if inc_scores else None),
               delta=decision.delta if decision else None, ci=list(decision.ci) if decision and decision.ci else None,
               durations=durations, peak_rss_mb=peak, cost_usd=cost, llm_calls=len(calls))
    best = scores.score if status == "keep" else (inc.score if inc else None)
    run.display.finished({"iter": n, "status": status, "score": scores.score if scores else None,
                          "reason": reason}, best)


def score_references(run: Run, interrupts) -> None:
    """Score the target's reference points once per run (a child process, under the score budget), and
    record them with the baseline (iteration 0) as the `references` event: `show` and `status` print them
    beside the score. Skipped when the target declares none, or when the run already has them."""
    t = run.target
    hook = getattr(t, "reference_scores", None)
    events = run.journal.events()
    if not (callable(hook) or getattr(t, "baseline_label", None)):
        return
    done = next((e for e in events if e["kind"] == "references"), None)
    if done is None:
        base = next((r for r in replay(events, run.dir).iterations if r.iter == 0), None)
        baseline = {"label": str(getattr(t, "baseline_label", None) or "baseline"), "iter": 0,
                    "score": base.score if base else None, "components": base.components if base else {}}
        scores, error = {}, None
        if callable(hook):
            it_dir = run.dir / "iters" / "000"
            run.set_context(0, it_dir, "references")
            budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
            run.display.phase(0, "references", budget)
            res = run.child(0, it_dir, "references", {"gold": str(run.gold)}, budget, interrupts)
            if res.status == "interrupted":
                return  # asked again on resume
            if res.status == "ok":
                scores = {k: (None if v is None else {f: x for f, x in v.items() if f != "feedback"})
                          for k, v in (res.value or {}).items()}
            else:
                error = f"{res.status}: " + (res.error.strip().splitlines() or [res.status])[-1][:300]
        done = run.record("references", baseline=baseline, scores=scores, error=error)
        if error:
            run.display.message(f"[{run.run_id}] reference points could not be scored ({error}); see "
                                f"{run.dir / 'iters' / '000' / 'references.log'}")
    run.display.references(reference_points([done]))


def _propose(run: Run, hist) -> tuple[Candidate, str]:
    import traceback

    try:
        cand = run.target.propose(hist)
        if not isinstance(cand, Candidate):
            cand = Candidate(params=dict(cand or {}), description="")
        return cand, ""
    except Exception:  # a proposer bug is an outcome of this iteration, not the end of the night
        return Candidate({}, "propose() raised"), traceback.format_exc(limit=20)


def _score(run: Run, hist, n: int, it_dir: Path, baseline: bool, interrupts):
    t = run.target
    budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
    compare = getattr(t, "compare", None)
    if callable(compare) and not baseline and hist.incumbent is not None:
        inc_dir = it_dir / "incumbent"
        run.repo.export(hist.incumbent.commit, inc_dir)
        run.display.phase(n, "compare", budget)
        try:
            res = run.child(n, it_dir, "compare", {"incumbent": str(inc_dir), "candidate": str(run.state_dir),
                                                   "gold": str(run.gold)}, budget, interrupts)
        finally:
            import shutil

            shutil.rmtree(inc_dir, ignore_errors=True)
        if res.status != "ok":
            return res, None, None
        return res, Scores.from_json(res.value["candidate"]), Scores.from_json(res.value["incumbent"])
    run.display.phase(n, "score", budget)
    res = run.child(n, it_dir, "score", {"state": str(run.state_dir), "gold": str(run.gold)}, budget, interrupts)
    return res, (Scores.from_json(res.value) if res.status == "ok" else None), None


def _loop_state(run: Run, hist) -> LoopState:
    first = next((r.iter for r in hist.iterations if r.kept), -1)  # the measured baseline
    done = [r for r in hist.iterations if r.iter > max(first, 0) and r.status != "interrupted"]
    since = 0
    for r in reversed(done):
        if r.kept:
            break
        since += 1
    inc = hist.incumbent
    return LoopState(direction=run.target.direction, candidates_done=len(done), since_keep=since,
                     best_score=inc.score if inc else None, cost=sum(r.cost_usd for r in hist.iterations),
                     now=time.time(), stop_file_exists=run.stop_file_exists())


def _slim(s: Scores) -> dict[str, Any]:
    d = s.to_json()
    d.pop("feedback", None)
    return d


def _dumps(v: Any) -> str:
    import json

    return json.dumps(v, default=str, indent=1)


class _InterruptFlag:
    """First Ctrl-C: finish cleanly (the child is killed, the iteration recorded as interrupted).
    Second Ctrl-C: the usual KeyboardInterrupt."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self) -> bool:
        return self.raised

    def _handler(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self) -> "_InterruptFlag":
        self._old = signal.signal(signal.SIGINT, self._handler)
        self._old_term = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._old)
        signal.signal(signal.SIGTERM, self._old_term)

