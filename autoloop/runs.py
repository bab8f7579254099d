"""A run on disk: create one, reopen one after a crash, and the small services the loop uses.

Layout under the runs directory (default ./runs, or $AUTOLOOP_RUNS_DIR):

    runs/history.duckdb            query store for every run (rebuilt from journals on demand)
    runs/blobs/ab/cdef...          large files by sha256, shared by all runs
    runs/<run_id>/journal.jsonl    the source of truth
    runs/<run_id>/state/           the git work tree the target mutates (tags autoloop/<run_id>/...)
    runs/<run_id>/state.git/       its repository, out of the target's reach (state/.git points to it)
    runs/<run_id>/iters/NNN/       per-iteration logs, child specs/results, LLM call records, feedback
    runs/<run_id>/live.json        what `autoloop status` shows
    runs/<run_id>/lock             pid of the engine driving the run
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from autoloop import sandbox
from autoloop.checkpoint import StateRepo, best_tag, ref_problem, tag_name
from autoloop.context import LLM_CALLS_FILE, ChildContext
from autoloop.decide import StopLimits
from autoloop.envfault import fault
from autoloop.executor import check_reachable, make_executor
from autoloop.journal import JOURNAL, read_events
from autoloop.logcap import DEFAULT_CAP_MB
from autoloop.progress import Display
from autoloop.proposers import make_proposer
from autoloop.recorder import RunJournal
from autoloop.target import TargetError, call_hook, check_gold, child_env, gold_path, load_target, refuse_sealed_gold, sha256_file

PACKAGES = ("autoloop-engine", "duckdb", "gitpython", "psutil", "click", "rich", "tenacity", "mlx", "mlx-lm",
            "anthropic", "optuna", "httpx", "numpy")
DEFAULT_PATIENCE = 5
FAILED = ("crash", "timeout", "oom", "nonfinite", "invalid")  # statuses of iterations that measured nothing
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


SHAPE_SETTINGS = ("proposer", "batch", "parallel", "executor", "ray_address")  # kept by later resumes once a resume sets them


def runs_dir_default() -> Path:
    return Path(os.environ.get("AUTOLOOP_RUNS_DIR") or "runs").resolve()


@dataclass
class Settings:
    """Engine settings (click options with AUTOLOOP_* fallbacks); recorded with the run."""

    runs_dir: Path = dataclasses.field(default_factory=runs_dir_default)
    max_iters: int | None = None
    patience: int | None = None  # None: the target's `patience`, else 5 (resolved when the run is created)
    max_hours: float | None = None
    until: str | None = None  # HH:MM local time
    max_cost: float | None = None
    target_score: float | None = None
    stop_file: str | None = None
    memory_cap_mb: float | None = None
    max_log_mb: float = DEFAULT_CAP_MB  # per child log: head and tail kept, the middle dropped
    progress: bool | None = None  # None: live panel only on a terminal
    progress_every: float | None = None  # seconds between progress lines when not on a terminal (None: 30; 0: off)
    parallel: int = 1  # batch members that may run at once (the executor's slots)
    batch: int | None = None  # candidates per iteration (None: the target's `batch`, else 1)
    proposer: str | None = None  # tpe | random | llm | module:Class (None: the target proposes; autoloop.proposers)
    executor: str = "local"  # 'local', 'ray' or 'package.module:Class' (see autoloop/executor.py)
    ray_address: str | None = None  # --executor ray: 'auto' (default) or HOST:PORT of the cluster's head

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["runs_dir"] = str(self.runs_dir)
        return d


def until_to_deadline(until: str, now: float | None = None) -> float:
    """'07:30' -> the next such local time as a unix timestamp."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", until.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"--until {until!r}: expected HH:MM (24-hour local time), e.g. --until 07:30")
    now_dt = dt.datetime.fromtimestamp(now or time.time())
    t = now_dt.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
    if t <= now_dt:
        t += dt.timedelta(days=1)
    return t.timestamp()


class Run:
    def __init__(self, run_id: str, run_dir: Path, target: Any, target_path: Path, settings: Settings):
        self.run_id, self.dir, self.target, self.target_path = run_id, Path(run_dir), target, Path(target_path)
        self.settings = settings
        self.runs_dir = Path(settings.runs_dir)
        self.db_path = self.runs_dir / "history.duckdb"
        self.state_dir = self.dir / "state"
        self.gold = gold_path(target, self.target_path)
        self.repo = StateRepo(self.state_dir, self.runs_dir / "blobs", float(getattr(target, "large_file_mb", 1.0)))
        self.journal = RunJournal(self.dir, self.db_path)  # journal first, DuckDB behind it, History from it
        self.display = Display(run_id, self.dir, target.direction, settings.progress, settings.progress_every)
        self._redo: dict | None = None
        self.stop_detail = ""  # one line on why the run stopped, when the reason alone does not say
        self.context = ChildContext(run_id, self.target_path, child_env(target, self.target_path), settings.max_cost,
                                    settings.memory_cap_mb or getattr(target, "memory_cap_mb", None),
                                    int(float(settings.max_log_mb or DEFAULT_CAP_MB) * 1e6))
        self.executor = make_executor(settings.executor, int(settings.parallel or 1), settings.ray_address)
        self.proposer = make_proposer(settings.proposer, target)  # the target itself unless the run names one
        self.batch_size = int(settings.batch or getattr(target, "batch", None) or 1)
        self.clock_mark: float | None = None  # when the last iteration's clock stopped (see loop.iterate)
        started = time.time()
        deadline = started + settings.max_hours * 3600 if settings.max_hours else None
        if settings.until:
            u = until_to_deadline(settings.until, started)
            deadline = min(deadline, u) if deadline else u
        self.limits = StopLimits(max_iters=settings.max_iters, patience=settings.patience, deadline=deadline,
                                 max_cost=settings.max_cost, target_score=settings.target_score,
                                 stop_file=settings.stop_file)

    # -- the collaborators, as the loop uses them ------------------------------------------------------
    def record(self, kind: str, **fields: Any) -> dict:
        return self.journal.record(kind, **fields)

    def flush_db(self) -> None:
        self.journal.flush()

    def history(self) -> Any:
        return self.journal.history()

    def set_context(self, n: int, it_dir: Path, phase: str) -> None:
        self.context.enter(n, it_dir, phase, self.journal.spent())

    def call(self, n: int, it_dir: Path, method: str, args: dict, budget_s: float, label: str | None = None,
             paths: tuple[str, ...] = (), writes: tuple[str, ...] = ()) -> sandbox.ChildCall:
        return self.context.call(n, it_dir, method, args, budget_s, label, paths, writes)

    def child(self, n: int, it_dir: Path, method: str, args: dict, budget_s: float, interrupts,
              paths: tuple[str, ...] = (), writes: tuple[str, ...] = ()) -> sandbox.ChildResult:
        """One child, start to end, through the executor."""
        call = self.call(n, it_dir, method, args, budget_s, paths=paths, writes=writes)
        return self.executor.wait([self.executor.submit(call)], interrupts)[0]

    def collect_llm_calls(self, n: int, it_dir: Path) -> list[dict]:
        path = it_dir / LLM_CALLS_FILE
        if not path.exists():
            return []
        calls = []
        for i, line in enumerate(path.read_text().splitlines()):
            try:
                c = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed child
            c["n"] = i
            calls.append(c)
        if calls:
            self.record("llm_calls", iter=n, calls=calls)
        return calls

    def gold_problem(self) -> str | None:
        """The gold set is fixed for the whole run: a line saying how it changed since run_start, else None.
        Checked after every measurement, so a candidate (or anything else) that edits the gold file mid-run is
        never kept on a score against another gold set."""
        want = getattr(self, "_gold_sha", None)
        if want is None:
            start = next((e for e in self.journal.events() if e["kind"] == "run_start"), {})
            want = self._gold_sha = start.get("gold_sha256")
        return gold_change(self.gold, want, self.run_id)

    def note_target_changes(self) -> None:
        """Record (once per change) that the target file differs from the one the run started with."""
        try:
            digest = sha256_file(self.target_path)
        except OSError:
            return
        known = getattr(self, "_target_sha", None)
        if known is None:
            start = next((e for e in self.journal.events() if e["kind"] == "run_start"), {})
            notes = [e for e in self.journal.events() if e["kind"] == "note" and e.get("target_sha256")]
            known = notes[-1]["target_sha256"] if notes else start.get("target_sha256")
        if digest != known:
            self.record("note", text=f"target file {self.target_path} changed; later iterations use the new one",
                        target_sha256=digest)
            self.display.message(f"note: {self.target_path} changed during the run (recorded)")
        self._target_sha = digest

    def stop_file(self) -> Path | None:
        """The stop file that exists now (the run's own first), or None."""
        files = [self.dir / "STOP", self.runs_dir / "STOP"]
        if self.settings.stop_file:
            files.append(Path(self.settings.stop_file))
        return next((f for f in files if f.exists()), None)

    def stop_file_exists(self) -> bool:
        return self.stop_file() is not None

    def take_redo(self) -> dict | None:
        r, self._redo = self._redo, None
        return r

    def finish(self, reason: str, detail: str = "") -> None:
        """Record the end; the closing message says why it stopped and what every iteration came to."""
        extra: dict[str, Any] = {}
        if reason == "stop_file":
            sf = self.stop_file()
            extra["stop_file"] = str(sf) if sf else None
            if sf is not None and sf == self.dir / "STOP":
                sf.unlink(missing_ok=True)  # the run's own stop file has done its job: `resume` goes on
                detail = f"{sf} (removed: `autoloop resume {self.run_id}` continues)"
            elif sf is not None:
                detail = f"{sf} exists; every run in this folder stops while it does: rm {sf}"
        status = {"sigint": "interrupted", "baseline_failed": "failed", "environment": "failed",
                  "gold_changed": "failed"}.get(reason, "finished")
        self.record("run_end", stop_reason=reason, status=status, detail=detail or None, **extra)
        self.flush_db()
        why = f" ({detail})" if detail else ""
        self.display.message(f"[{self.run_id}] stopped: {reason}{why}. {summary(self.journal.events())} "
                             f"See `autoloop show {self.run_id}`.")
        release_lock(self.dir)


def summary(events: list[dict]) -> str:
    """'7 iterations: 2 kept, 3 reverted, 2 failed (1 crash: ValueError: x; 1 timeout: ...).'"""
    ends = [e for e in events if e["kind"] == "iter_end"]
    count = lambda st: sum(e["status"] == st for e in ends)  # noqa: E731
    parts = [f"{count('keep')} kept", f"{count('revert')} reverted"]
    failed = [e for e in ends if e["status"] in FAILED]
    if failed:
        why = []
        for st in FAILED:
            these = [e for e in failed if e["status"] == st]
            if these:
                why.append(f"{len(these)} {st}: {(these[-1].get('reason') or '')[:120]}")
        parts.append(f"{len(failed)} failed ({'; '.join(why)})")
    else:
        parts.append("0 failed")
    if count("interrupted"):
        parts.append(f"{count('interrupted')} interrupted")
    return f"{len(ends)} iterations: " + ", ".join(parts) + "."


# -- creating and reopening runs --------------------------------------------------------------------
def _project_commit(path: Path) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path.parent, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=path.parent, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


def _packages() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _target_config(target: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        raw = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
    else:
        raw = {k: v for k, v in vars(target).items() if not k.startswith("_")} if hasattr(target, "__dict__") else {}
    return json.loads(json.dumps(raw, default=str))


def create_run(target_path: str | Path, settings: Settings, run_id: str | None = None) -> Run:
    """Validate the target, then lay out a new run; nothing is written if validation fails."""
    target = load_target(target_path)
    if settings.patience is None:
        settings.patience = int(getattr(target, "patience", None) or DEFAULT_PATIENCE)
    tpath = Path(target_path).resolve()
    gold = gold_path(target, tpath)
    refuse_sealed_gold(target, tpath)
    check_gold(gold)
    make_proposer(settings.proposer, target)  # an unusable --proposer is refused before anything is written
    if run_id is not None:
        problem = None if RUN_ID_RE.match(run_id) else "may use only letters, digits, '.', '_' or '-'"
        problem = problem or ref_problem(run_id)
        if problem:
            raise TargetError(f"--run-id {run_id!r} {problem}; choose another name")
    _check_executor(settings)
    try:
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        run_id, final = _reserve(settings.runs_dir, target.name, run_id)
    except OSError as e:
        raise fault(e, settings.runs_dir) or e from None
    tmp = settings.runs_dir / f".creating-{run_id}"  # unique: the run id is ours alone now

    def undo() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)

    try:
        repo = StateRepo(tmp / "state", settings.runs_dir / "blobs")
        repo.init()
    except Exception as e:
        undo()
        raise fault(e, tmp) or TargetError(f"{tmp}: cannot create the state repository ({e}); check git works") from None
    try:
        run_setup(target, tmp / "state", tpath)
    except BaseException:
        undo()  # a failed, hanging or exiting setup() leaves no run behind
        raise
    try:
        os.replace(tmp, final)  # onto the empty directory that reserved the name
        acquire_lock(final)
        run = Run(run_id, final, target, tpath, settings)
        info = _describe(run)
        run.record("run_start", run_id=run_id, target_name=target.name, target_path=str(tpath),
                   target_sha256=sha256_file(tpath), gold_path=str(gold), gold_sha256=sha256_file(gold),
                   direction=target.direction, config={"engine": settings.to_json(), "target": _target_config(target)},
                   host=socket.gethostname(), platform=platform.platform(), python=sys.version.split()[0],
                   packages=_packages(), project_commit=_project_commit(tpath),
                   target_info=info, state_dir=str(run.state_dir),
                   show_columns=list(getattr(target, "show_columns", None) or []),
                   user=getpass.getuser())
    except BaseException as e:
        undo()  # a run without its first journal line is no run: leave nothing half-written
        f = fault(e, final) if isinstance(e, Exception) else None
        if f is None:
            raise
        raise f from None
    return run


def gold_change(gold: Path, want: str | None, run_id: str) -> str | None:
    """One line when `gold` no longer has the sha256 the run started with (None when it has, or none is known)."""
    if not want:
        return None
    try:
        got = sha256_file(gold)
    except OSError as e:
        got = None
        how = f"cannot be read ({e.strerror or e})"
    else:
        how = f"changed (sha256 {want[:12]} -> {got[:12]})"
    if got == want:
        return None
    return (f"the gold file {gold} {how} since run {run_id} started; scores against another gold set are not "
            f"comparable: restore it (e.g. `git checkout -- {gold}`) to resume this run, or start a new run with --new")


def _reserve(runs_dir: Path, name: str, run_id: str | None) -> tuple[str, Path]:
    """Claim a run id by creating its directory (atomic: two runs started in the same second cannot
    both get it). A named run must be new; a default one takes the next free -2, -3, ... suffix."""
    if run_id is not None:
        try:
            os.mkdir(runs_dir / run_id)
        except FileExistsError:
            raise TargetError(f"--run-id {run_id!r}: {runs_dir / run_id} already exists; choose a new name") from None
        return run_id, runs_dir / run_id
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for k in range(1, 10_000):
        rid = base if k == 1 else f"{base}-{k}"
        try:
            os.mkdir(runs_dir / rid)
            return rid, runs_dir / rid
        except FileExistsError:
            continue
    raise TargetError(f"{runs_dir}: no free run id for {base}; remove old runs")


def _describe(run: Run) -> dict | None:
    """The target's describe() (run metadata), showing each of its `warnings` as one line (e.g. a slow BLAS)."""
    try:
        info = call_hook(run.target, run.target_path, "describe") if callable(getattr(run.target, "describe", None)) else None
    except TargetError as e:  # metadata only: never worth refusing a run
        run.display.message(f"note: {str(e).split(': ', 1)[-1].split('; ')[0]}; run metadata incomplete")
        return None
    if info is not None and not isinstance(info, dict):
        run.display.message(f"note: target.describe() returned {type(info).__name__}, not a dict; run metadata incomplete")
        return None
    for w in (info or {}).get("warnings") or []:
        run.display.message(str(w))
    return info


def _check_executor(settings: Settings) -> None:
    """A cluster that cannot be reached is bad input: one line, exit 2, nothing written."""
    try:
        check_reachable(settings.executor, settings.ray_address)
    except ValueError as e:
        raise TargetError(str(e)) from None


def open_run(run_id: str, settings: Settings, overrides: dict[str, Any] | None = None) -> Run:
    """Reopen a run after a crash, kill -9, reboot or Ctrl-C, reconciling journal, git and DuckDB."""
    run_dir = settings.runs_dir / run_id
    events = read_events(run_dir / JOURNAL)
    start = next((e for e in events if e["kind"] == "run_start"), None)
    if start is None:
        raise TargetError(f"{run_dir}: no such run (no journal); list runs with `autoloop runs`")
    # The run's recorded engine settings apply, except what the user passes again now.
    saved = dict((start.get("config") or {}).get("engine") or {})
    # What proposes and how an iteration is shaped, once changed on a resume, stays changed (recorded in that
    # run_resume event): a later resume proposes as the last process did.
    for e in events:
        if e["kind"] == "run_resume":
            saved.update(e.get("engine") or {})
    shape = {k: v for k, v in (overrides or {}).items() if k in SHAPE_SETTINGS and v is not None}
    saved.update({k: v for k, v in (overrides or {}).items() if v is not None})
    saved["runs_dir"] = settings.runs_dir
    settings = Settings(**{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(Settings)}})
    target = load_target(start["target_path"])
    gold = gold_path(target, Path(start["target_path"]))
    check_gold(gold)
    changed = gold_change(gold, start.get("gold_sha256"), run_id)
    if changed:
        raise TargetError(changed)
    _check_executor(settings)
    acquire_lock(run_dir)
    run = Run(run_id, run_dir, target, Path(start["target_path"]), settings)
    tp = Path(start["target_path"])
    if sha256_file(tp) != start.get("target_sha256"):
        run.display.message(f"note: {tp} changed since the run started; the change is recorded")
    info = _describe(run)
    run.record("run_resume", pid=os.getpid(), target_sha256=sha256_file(tp), **({"engine": shape} if shape else {}),
               **({"warnings": info["warnings"]} if info and info.get("warnings") else {}))
    _reconcile(run)
    return run


def _reconcile(run: Run) -> None:
    events = run.journal.events()
    started = {e["iter"]: e for e in events if e["kind"] == "iter_start"}
    ended = {e["iter"] for e in events if e["kind"] == "iter_end"}
    for n in sorted(set(started) - ended):
        it_dir = run.dir / "iters" / f"{n:03d}"
        calls = run.collect_llm_calls(n, it_dir) if not any(
            e["kind"] == "llm_calls" and e["iter"] == n for e in events) else []
        run.record("iter_end", iter=n, status="interrupted", scores=None, commit=None, tag=None,
                   reason="the engine stopped during this iteration (kill -9, crash or reboot); it is run again",
                   cost_usd=sum(float(c.get("cost_usd") or 0) for c in calls), llm_calls=len(calls))
        # A baseline is measured again anyway (the loop does so while nothing is kept); a candidate is redone.
        if not started[n].get("baseline") and (
                n > 0 or any(e["kind"] == "iter_end" and e["status"] != "interrupted" for e in events)):
            run._redo = {"iter": n, "candidates": started[n].get("candidates") or [started[n]["candidate"]]}
    events = run.journal.events()
    kept = [e for e in events if e["kind"] == "iter_end" and e["status"] == "keep"]
    prefix = f"autoloop/{run.run_id}/"
    want = {tag_name(run.run_id, e["iter"]): e["commit"] for e in kept}
    if run.repo.exists():
        have = run.repo.tags(prefix) if run.repo.resolve("HEAD") else {}
        for name in have:
            if name not in want and name != best_tag(run.run_id):
                run.repo.delete_tag(name)  # tagged, but the keep never reached the journal
                run.record("note", text=f"removed tag {name}: its iteration was not recorded as kept")
        for name, commit in want.items():
            if name not in have and commit:
                run.repo.tag(name, commit, f"restored on resume: {name}")
        if kept:
            last = kept[-1]
            run.repo.tag(best_tag(run.run_id), last["commit"], f"best: ckpt-{last['iter']:03d}", force=True)
            run.repo.restore(last["commit"])
    if not kept:
        # No measured state yet: start again from the target's own baseline.
        for p in run.state_dir.iterdir() if run.state_dir.exists() else []:
            if p.name != ".git":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        run_setup(run.target, run.state_dir, run.target_path)


def run_setup(target: Any, state: Path, tpath: Path) -> None:
    """The target's setup() (if it has one) under the engine's limit (`setup_budget_s`): a failure, a hang or a
    sys.exit in it is one line naming the target and the fix (TargetError: exit 2), never a traceback."""
    if callable(getattr(target, "setup", None)):
        call_hook(target, tpath, "setup", state)


def unfinished_runs(runs_dir: Path, target_path: Path) -> list[str]:
    """Runs of this target whose journal has no run_end after its last start/resume and no live engine."""
    out = []
    for journal in sorted(Path(runs_dir).glob(f"*/{JOURNAL}")):
        events = read_events(journal)
        start = next((e for e in events if e["kind"] == "run_start"), None)
        if not start or Path(start.get("target_path", "")) != Path(target_path).resolve():
            continue
        last = [e for e in events if e["kind"] in ("run_start", "run_resume", "run_end")]
        if last and last[-1]["kind"] != "run_end" and lock_owner(journal.parent) is None:
            out.append(journal.parent.name)
    return out


# -- one engine per run -----------------------------------------------------------------------------
def lock_owner(run_dir: Path) -> int | None:
    lock = Path(run_dir) / "lock"
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid == os.getpid():
        return None
    try:
        p = psutil.Process(pid)
        if p.status() != psutil.STATUS_ZOMBIE and "autoloop" in " ".join(p.cmdline()):
            return pid
    except psutil.Error:
        pass
    return None


def acquire_lock(run_dir: Path) -> None:
    owner = lock_owner(run_dir)
    if owner is not None:
        raise TargetError(f"{run_dir}: run is being driven by pid {owner}; stop it first (or touch {run_dir}/STOP)")
    (Path(run_dir) / "lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")


def release_lock(run_dir: Path) -> None:
    lock = Path(run_dir) / "lock"
    try:
        if int(lock.read_text().split()[0]) == os.getpid():
            lock.unlink()
    except (OSError, ValueError, IndexError):
        pass
