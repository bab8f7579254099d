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
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from autoloop import reaper, sandbox
from autoloop.checkpoint import best_tag, discarded_ref, tag_name
from autoloop.deadline import TimeLimit, deadline
from autoloop.decide import LoopState, check_guards, decide, stop_reason
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
    with interrupts, run.display, _owning_processes(run), contextlib.closing(run.executor):
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
        hist = run.history()
        if hist.incumbent is None and not interrupts.raised:
            # Every curve starts at a measured point: the unchanged state, scored before any candidate.
            iterate(run, hist, interrupts, baseline=True)
            last = run.history().last()
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
        last = run.history().last()
        if last and last.status == "invalid" and last.reason.startswith("the gold file "):
            run.stop_detail = last.reason
            return "gold_changed"  # every later score would be against another gold set
        if last and last.status == "invalid" and last.reason.startswith("budget"):
            return "max_cost"  # the target refused to spend past the dollar cap: nothing more can run


@contextlib.contextmanager
def _owning_processes(run: Run) -> Iterator[None]:
    """Nothing this run starts outlives it (see autoloop.reaper): orphans re-parent to this process, the
    engine's own helpers carry `<run>/engine`, and at the end every marked or adopted process is ended."""
    reaper.become_subreaper()
    before = reaper.child_pids()
    old = {k: os.environ.get(k) for k in (reaper.MARKER, reaper.OWNER)}
    owner = str(run.dir.resolve())
    os.environ[reaper.MARKER] = f"{run.run_id}/engine"
    os.environ[reaper.OWNER] = owner  # inherited by every helper and child: the sweep below ends only ours
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reaper.terminate(reaper.marked(prefix=f"{run.run_id}/", owner=owner) + reaper.adopted(before),
                         grace=sandbox.GRACE_S)
        reaper.become_subreaper(False)  # a process that drives runs in-process (a benchmark) is left as it was


def _record_environment_stop(run: Run, line: str) -> None:
    """Best effort: the disk that refused the last write may refuse this one too."""
    with contextlib.suppress(Exception):
        run.record("run_end", stop_reason="environment", status="failed", detail=line)
        run.flush_db()
    release_lock(run.dir)


@dataclass
class Member:
    """One candidate of an iteration's batch, with what happened to it."""

    k: int
    cand: Candidate
    state: Path  # its state dir: the run's own when it is alone, else a copy of the incumbent's
    status: str = "ok"
    error: str = ""
    screen: Scores | None = None  # the cheap measurement that ranks the batch (the full score when there is none)
    scores: Scores | None = None  # measured in full
    run_s: float = 0.0
    peak: float = 0.0
    node: str = ""  # where its run ran ("" on this machine; a Ray node's host/id)

    def trial(self, chosen: bool) -> dict[str, Any]:
        s = self.scores or self.screen
        return {"member": self.k, "params": self.cand.params, "description": self.cand.description,
                "status": self.status, "score": self.scores.score if self.scores else None,
                "screen_score": self.screen.score if self.screen else None,
                "components": s.components if s else {}, "info": s.info if s else {}, "chosen": chosen,
                "reason": (self.error.strip().splitlines() or [""])[-1][:300] or None, "node": self.node or None}


def iterate(run: Run, hist, interrupts, baseline: bool = False, redo: dict | None = None) -> None:
    """One iteration: propose a batch (often of one), run every member, screen them, measure the best in
    full, keep or revert once, and record every member (the `trials` of the iteration)."""
    n = hist.next_iter
    # The iteration's clock starts where the previous one's stopped (before its journal and DuckDB writes),
    # so total_s - target time = everything the engine spends between one target call and the next.
    t0 = run.clock_mark or time.time()
    it_dir = run.dir / "iters" / f"{n:03d}"
    it_dir.mkdir(parents=True, exist_ok=True)
    run.set_context(n, it_dir, "propose")
    durations = {"propose_s": 0.0, "run_s": 0.0, "score_s": 0.0}
    run.note_target_changes()  # children re-import the target file: an edit mid-run must be on record

    # 1. propose (engine process: proposers read history and may call an LLM)
    t_propose = time.time()
    if baseline:
        cands, error = [Candidate({}, "baseline: the unchanged starting state")], ""
    elif redo is not None:
        cands, error = [Candidate.from_json(c) for c in redo["candidates"]], ""
        for c in cands:
            c.description = f"redo of #{redo['iter']} (interrupted): {c.description}"
    else:
        run.display.phase(n, "propose")
        cands, error = _propose(run, hist)
    durations["propose_s"] = time.time() - t_propose
    run.record("iter_start", iter=n, candidate=cands[0].to_json(), redo_of=redo["iter"] if redo else None,
               baseline=baseline or None, candidates=[c.to_json() for c in cands] if len(cands) > 1 else None)

    # 2. run every member in a child (the baseline is scored as it is); several run concurrently when the
    #    executor has slots, each in its own copy of the incumbent's state
    members = [Member(k, c, run.state_dir if len(cands) == 1 else it_dir / "members" / f"m{k}")
               for k, c in enumerate(cands)]
    if error:
        members[0].status, members[0].error = "crash", error
    elif not baseline:
        run.display.phase(n, "run", run.target.budget_s)
        _run_members(run, n, it_dir, members, interrupts)
        durations["run_s"] = max(m.run_s for m in members)

    # 3. screen the batch (a target's cheap `screen`, else `score` of each member) and pick the best
    inc = hist.incumbent
    best, inc_screen, screen_s = members[0], None, 0.0
    if not baseline and not error:
        best, inc_screen, screen_s = _screen(run, hist, n, it_dir, members, interrupts)

    # 4. measure the best in full (or measure incumbent and it interleaved, for noisy targets)
    status, error = best.status, best.error
    scores = inc_scores = None
    if status == "ok":
        run.set_context(n, it_dir, "score")
        res, scores, inc_scores = _measure(run, hist, n, it_dir, best, baseline, interrupts)
        if res is not None:
            best.peak = max(best.peak, res.peak_rss_mb)
            status, error = res.status, res.error
            screen_s += res.method_s or res.duration_s
        if status == "ok" and scores is not None and scores.score is None:
            status, error = "invalid", "score() returned no score (None)"
        elif status == "ok" and scores is not None and not scores.is_finite():
            status, error = "nonfinite", f"score() returned {scores.score!r}"
        best.status, best.error, best.scores = status, error, scores if status == "ok" else best.scores
    durations["score_s"] = screen_s
    gold_changed = run.gold_problem()  # the gold set is fixed: a score against another one is never kept
    if gold_changed and status not in ("interrupted",):
        status, error = "invalid", gold_changed

    # 5. decide
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
    if len(members) > 1:
        reason = f"{reason} [best of {len(members)}: member {best.k}]"

    # 6. checkpoint or revert (every iteration becomes a commit: nothing is lost)
    if best.state != run.state_dir:
        _adopt(best.state, run.state_dir)
    commit = run.repo.commit(f"iter {n}: {best.cand.description}\n\nstatus: {status}\nreason: {reason}\n")
    if run.repo.ignored and not getattr(run, "_ignored_noted", False):
        run._ignored_noted = True  # once per engine process: the list is in the journal
        shown = ", ".join(run.repo.ignored[:5]) + (f" and {len(run.repo.ignored) - 5} more" if len(run.repo.ignored) > 5 else "")
        text = (f"a .gitignore in the state keeps {len(run.repo.ignored)} path(s) out of the checkpoints ({shown}); "
                f"they are not restored on revert or checkout: remove the .gitignore if they matter")
        run.record("note", text=text, ignored=run.repo.ignored[:100])
        run.display.message(f"note: {text}")
    tag = None
    if status == "keep":
        tag = tag_name(run.run_id, n)
        msg = f"score={scores.score:.6g} " + " ".join(f"{k}={v:.4g}" for k, v in scores.components.items())
        msg += f" | {best.cand.description}\n\n{reason}\n"
        run.repo.tag(tag, commit, msg)
        run.repo.tag(best_tag(run.run_id), commit, f"best: ckpt-{n:03d} {msg}", force=True)
    else:
        run.repo.set_ref(discarded_ref(run.run_id, n), commit)
        run.repo.restore(inc.commit if inc else commit)
    if len(members) > 1:
        shutil.rmtree(it_dir / "members", ignore_errors=True)  # every member's params and scores are in `trials`

    # 7. record
    if status == "interrupted":
        reason = "interrupted by the user; state restored from the best checkpoint"
    calls = run.collect_llm_calls(n, it_dir)
    cost = max(sum(float(c.get("cost_usd") or 0) for c in calls),
               sum(float((m.scores or m.screen).cost_usd) for m in members if (m.scores or m.screen)),
               float(inc_screen.cost_usd if inc_screen else 0.0))
    if scores is not None and scores.feedback:
        (it_dir / "feedback.json").write_text(_dumps(scores.feedback))
    sj = scores.to_json() if scores else None
    if sj:
        sj.pop("feedback", None)
    trials = [m.trial(m is best) for m in members] if status != "interrupted" else []
    run.clock_mark = now = time.time()
    durations["total_s"] = now - t0
    # Engine time: everything but the target's own methods (child start-up, git, journal, DuckDB, replay).
    durations["overhead_s"] = max(0.0, durations["total_s"] - durations["propose_s"] - durations["run_s"]
                                  - durations["score_s"])
    run.record("iter_end", iter=n, status=status, scores=sj, commit=commit, tag=tag, reason=reason,
               error=error if status in FAILED else None,
               incumbent_score=(inc_scores.score if inc_scores else (inc.score if inc else None)),
               incumbent_scores=(_slim(inc_scores) if inc_scores else None),
               delta=decision.delta if decision else None, ci=list(decision.ci) if decision and decision.ci else None,
               durations=durations, peak_rss_mb=max(m.peak for m in members), cost_usd=cost, llm_calls=len(calls),
               chosen=best.k if len(members) > 1 else None, trials=trials)
    best_score = scores.score if status == "keep" else (inc.score if inc else None)
    run.display.finished({"iter": n, "status": status, "score": scores.score if scores else None,
                          "reason": reason}, best_score)


def _run_members(run: Run, n: int, it_dir: Path, members: list[Member], interrupts) -> None:
    """`run` of every member through the executor, all submitted at once (concurrent when it has slots)."""
    calls = []
    for m in members:
        if m.state != run.state_dir:
            _copy_state(run.state_dir, m.state)
        label = "run" if len(members) == 1 else f"run.m{m.k}"
        calls.append(run.call(n, it_dir, "run", {"candidate": m.cand.to_json(), "state": str(m.state),
                                                 "deadline": time.time() + run.target.budget_s},
                              run.target.budget_s, label=label, paths=("state",), writes=("state",)))
    results = run.executor.wait([run.executor.submit(c) for c in calls], interrupts)
    for m, res in zip(members, results):
        m.status, m.error = res.status, res.error
        m.run_s, m.peak, m.node = res.method_s or res.duration_s, res.peak_rss_mb, res.node


def _screen(run: Run, hist, n: int, it_dir: Path, members: list[Member], interrupts) -> tuple[Member, Scores | None, float]:
    """Rank the batch; returns (best member, the incumbent's screen scores or None, seconds in target code).

    A target with `screen(incumbent, members, gold) -> (Scores, [Scores])` measures every member beside the
    incumbent in one child (cheap: a minibatch, one interleaved replay); with `screen_slack` set, a best
    member that screens worse than the incumbent by more than that is rejected (`invalid`) before any full
    measurement. Without the hook, a batch of several is ranked by `score` of each member. A lone member
    without the hook is not screened: it is measured in full next."""
    t = run.target
    ok = [m for m in members if m.status == "ok"]
    hook = getattr(t, "screen", None)
    inc = hist.incumbent
    inc_screen, spent = None, 0.0
    if ok and callable(hook) and inc is not None:
        budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
        run.set_context(n, it_dir, "screen")
        run.display.phase(n, f"screen {len(ok)}", budget)
        root = it_dir / "members"
        if len(members) == 1:  # a lone member runs in the state dir itself: screen a copy of the incumbent
            _copy_state_at(run, inc.commit, root / "incumbent")
            args = {"incumbent": str(root / "incumbent"), "members": str(run.state_dir.parent), "names": ["state"]}
        else:
            args = {"incumbent": str(run.state_dir), "members": str(root), "names": [m.state.name for m in ok]}
        res = run.child(n, it_dir, "screen", {**args, "gold": str(run.gold)}, budget, interrupts,
                        paths=("incumbent", "members", "gold"))
        if len(members) == 1:
            shutil.rmtree(root, ignore_errors=True)
        spent = res.method_s or res.duration_s
        if res.status != "ok":
            for m in ok:
                m.status, m.error = res.status, res.error
            return ok[0], None, spent
        inc_screen = Scores.from_json(res.value["incumbent"])
        for m, sc in zip(ok, res.value["members"]):
            if sc is None:
                m.status, m.error = "invalid", "screen() gave this member no score"
            else:
                m.screen = Scores.from_json(sc)
    elif ok and len(members) > 1:
        budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
        run.set_context(n, it_dir, "score")
        run.display.phase(n, f"score {len(ok)}", budget)
        calls = [run.call(n, it_dir, "score", {"state": str(m.state), "gold": str(run.gold)}, budget,
                          label=f"score.m{m.k}", paths=("state", "gold")) for m in ok]
        for m, res in zip(ok, run.executor.wait([run.executor.submit(c) for c in calls], interrupts)):
            m.peak = max(m.peak, res.peak_rss_mb)
            spent = max(spent, res.method_s or res.duration_s)  # concurrent: the longest is what the clock saw
            if res.status != "ok":
                m.status, m.error = res.status, res.error
                continue
            sc = Scores.from_json(res.value)
            if not sc.is_finite():
                m.status, m.error = ("invalid" if sc.score is None else "nonfinite"), f"score() returned {sc.score!r}"
            m.screen = m.scores = sc
    else:
        return (ok[0] if ok else members[0]), None, spent
    ranked = [m for m in members if m.status == "ok" and m.screen is not None and m.screen.is_finite()]
    if not ranked:
        return next((m for m in members if m.status != "ok"), members[0]), inc_screen, spent
    ref = inc_screen or (Scores(inc.score, inc.components, inc.items) if inc else None)
    guards = getattr(t, "guards", None) or {}
    sign = 1.0 if t.direction == "max" else -1.0

    def key(m: Member) -> tuple:  # members that break no guard first, then the best score
        broke = ref is not None and check_guards(m.screen.components, ref.components, guards) is not None
        return (not broke, sign * m.screen.score)

    best = max(ranked, key=key)
    slack = getattr(t, "screen_slack", None)
    if inc_screen is not None and slack is not None and inc_screen.is_finite():
        if sign * (best.screen.score - inc_screen.score) < -float(slack):
            best.status = "invalid"
            best.error = (f"screening: best {best.screen.score:.4g} vs incumbent {inc_screen.score:.4g} "
                          f"({len(ranked)} member(s) screened)")
    return best, inc_screen, spent


def _measure(run: Run, hist, n: int, it_dir: Path, best: Member, baseline: bool, interrupts):
    """The full measurement of the chosen member: (child result or None, scores, incumbent scores or None)."""
    t = run.target
    if callable(getattr(t, "compare", None)) and not baseline and hist.incumbent is not None:
        budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
        inc_dir = it_dir / "incumbent"
        _copy_state_at(run, hist.incumbent.commit, inc_dir)
        run.display.phase(n, "compare", budget)
        try:
            res = run.child(n, it_dir, "compare", {"incumbent": str(inc_dir), "candidate": str(best.state),
                                                   "gold": str(run.gold)}, budget, interrupts,
                            paths=("incumbent", "candidate", "gold"))
        finally:
            shutil.rmtree(inc_dir, ignore_errors=True)
        if res.status != "ok":
            return res, None, None
        return res, Scores.from_json(res.value["candidate"]), Scores.from_json(res.value["incumbent"])
    if best.scores is not None:  # the batch was ranked by its full scores: nothing more to measure
        return None, best.scores, None
    budget = float(getattr(t, "score_budget_s", None) or t.budget_s)
    run.display.phase(n, "score", budget)
    res = run.child(n, it_dir, "score", {"state": str(best.state), "gold": str(run.gold)}, budget, interrupts,
                    paths=("state", "gold"))
    return res, (Scores.from_json(res.value) if res.status == "ok" else None), None


def _copy_state(src: Path, dest: Path) -> None:
    """A member's private copy of the incumbent's state (the run's state dir, .git left out)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git"), symlinks=True)


def _copy_state_at(run: Run, commit: str | None, dest: Path) -> None:
    """The state of a checkpoint, for a method that reads the incumbent beside a candidate."""
    shutil.rmtree(dest, ignore_errors=True)
    run.repo.export(commit, dest)


def _adopt(src: Path, state: Path) -> None:
    """Make the run's state dir hold the chosen member's state (its .git kept), so it can be committed."""
    for p in state.iterdir():
        if p.name != ".git":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for p in src.iterdir():
        dest = state / p.name
        shutil.copytree(p, dest, symlinks=True) if p.is_dir() and not p.is_symlink() else shutil.copy2(p, dest, follow_symlinks=False)


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
            res = run.child(0, it_dir, "references", {"gold": str(run.gold)}, budget, interrupts, paths=("gold",))
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


def _propose(run: Run, hist) -> tuple[list[Candidate], str]:
    """The iteration's batch: `propose_batch(history, n)` when the proposer has it; else `propose` asked up
    to n times, each time with the members so far in `history.pending` (a list returned at once is the
    batch). Members with equal params are asked once: a proposer that ignores `pending` gives a batch of one."""
    import json
    import traceback

    prop, size = run.proposer, run.batch_size
    try:
        limit = float(getattr(run.target, "propose_budget_s", PROPOSE_BUDGET_S))
        with deadline(limit, f"propose() ran past its {limit:g} s limit (the target's propose_budget_s)", ProposeTimeout):
            if callable(getattr(prop, "propose_batch", None)):
                got = list(prop.propose_batch(hist, size))
            else:
                got = []
                for _ in range(size):
                    hist.pending = list(got)
                    c = prop.propose(hist)
                    if isinstance(c, (list, tuple)):
                        got.extend(c)
                        break
                    got.append(c)
        hist.pending = []
        out, seen = [], set()
        for c in got:
            c = c if isinstance(c, Candidate) else Candidate(params=dict(c or {}), description="")
            key = json.dumps(c.params, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(c)
        if not out:
            raise ValueError("the proposer returned an empty batch")
        return out, ""
    except (Exception, SystemExit):  # a proposer bug (or its sys.exit) is an outcome of this iteration, not the end of the night
        hist.pending = []
        return [Candidate({}, "propose() raised")], traceback.format_exc(limit=20)


PROPOSE_BUDGET_S = 600.0  # propose() runs in this process; a target's `propose_budget_s` changes the limit


class ProposeTimeout(TimeLimit):
    """propose() ran past the target's propose_budget_s."""


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

