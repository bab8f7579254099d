"""`autoloop eval`: score any checkpoint on any gold file with the target's own scorer, outside the loop.

Users check a checkpoint on their own data (or on a sealed test split the loop never scores) before they
ship it. An evaluation runs `target.score(state, gold, **options)` in a child process exactly as the loop
does (same sandbox, budget and environment), and is recorded as an *evaluation*, never as an iteration:
appended (fsync'd) to `runs/evaluations.jsonl`, the source of truth, then to the DuckDB tables
`evaluations` and `eval_items` (`autoloop db rebuild` replays the file too).

A checkpoint is named by a tag (`autoloop/<run>/ckpt-003`, `autoloop/<run>/best`), a run id (its best
checkpoint) or a folder (a materialised state, e.g. from `autoloop checkout`; needs `--target`).
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoloop import sandbox
from autoloop.checkpoint import StateRepo, best_tag
from autoloop.executor import LocalExecutor
from autoloop.target import Scores, TargetError, child_env, gold_path, load_target, sha256_file

EVAL_JOURNAL = "evaluations.jsonl"


@dataclass
class Checkpoint:
    label: str  # what the user named, resolved: a tag or a folder
    run_id: str | None
    commit: str | None
    target_path: Path
    folder: Path | None = None  # set when the checkpoint is a folder on disk
    repo: StateRepo | None = None


@dataclass
class Evaluation:
    eval_id: str
    checkpoint: Checkpoint
    gold: Path
    split: str | None
    options: dict[str, Any]
    status: str = "ok"
    scores: Scores | None = None
    error: str = ""
    duration_s: float = 0.0
    feedback: list = field(default_factory=list)
    direction: str = "max"

    def worst_items(self, n: int) -> list[tuple[str, float]]:
        """The n items scored worst, in the target's direction."""
        items = self.scores.items if self.scores else {}
        return sorted(items.items(), key=lambda kv: kv[1], reverse=self.direction == "min")[:n]


def _run_target_path(runs_dir: Path, run_id: str) -> Path:
    from autoloop.journal import JOURNAL, read_events

    for e in read_events(runs_dir / run_id / JOURNAL):
        if e["kind"] == "run_start":
            return Path(e["target_path"])
    raise TargetError(f"run {run_id}: its journal has no run_start event; pass --target FILE")


def resolve_checkpoint(runs_dir: Path, ref: str, target_file: Path | None) -> Checkpoint:
    """A tag, a run id (its best checkpoint) or a folder; raises TargetError with a one-line fix."""
    runs_dir = Path(runs_dir)
    p = Path(ref).expanduser()
    if p.is_dir() and not ref.startswith("autoloop/"):
        if target_file is None:
            raise TargetError(f"eval {ref}: a folder checkpoint needs --target FILE (the target that trained it)")
        return Checkpoint(label=str(p.resolve()), run_id=None, commit=None, target_path=Path(target_file).resolve(),
                          folder=p.resolve())
    if ref.startswith("autoloop/"):
        parts = ref.split("/")
        if len(parts) != 3:
            raise TargetError(f"eval {ref!r}: expected autoloop/<run>/ckpt-NNN or autoloop/<run>/best")
        run_id, tag = parts[1], ref
    else:
        from autoloop.report import resolve_run

        try:
            run_id = resolve_run(runs_dir / "history.duckdb", runs_dir, ref)
        except LookupError as e:
            raise TargetError(f"eval {ref!r}: {str(e).strip(chr(39))}; or pass a tag or a folder") from None
        tag = best_tag(run_id)
    state = runs_dir / run_id / "state"
    repo = StateRepo(state, runs_dir / "blobs")
    if not repo.exists():
        raise TargetError(f"eval {ref!r}: run {run_id} not found under {runs_dir}; list runs with `autoloop runs`")
    commit = repo.resolve(tag)
    if commit is None:
        raise TargetError(f"eval {ref!r}: no tag {tag} yet; list checkpoints with `git -C {state} tag -n`")
    tpath = Path(target_file).resolve() if target_file else _run_target_path(runs_dir, run_id)
    return Checkpoint(label=tag, run_id=run_id, commit=commit, target_path=tpath, repo=repo)


def resolve_gold(target: Any, target_path: Path, gold: Path | None, split: str | None) -> tuple[Path, str | None]:
    """--gold FILE, or --split NAME from the target's `gold_splits` ({name: path}), else the target's gold."""
    if gold is not None and split is not None:
        raise TargetError("eval: pass --gold or --split, not both")
    if gold is not None:
        g = Path(gold).expanduser().resolve()
        if not g.is_file():
            raise TargetError(f"eval --gold {gold}: no such file; pass a gold JSONL file")
        return g, None
    splits = dict(getattr(target, "gold_splits", None) or {})
    if split is not None:
        if split not in splits:
            names = ", ".join(sorted(splits)) or "none (use --gold FILE)"
            raise TargetError(f"eval --split {split!r}: {target_path} names these splits: {names}")
        g = Path(splits[split])
        if not g.is_absolute():
            g = target_path.parent / g
        if not g.is_file():
            raise TargetError(f"eval --split {split}: {g} does not exist")
        return g.resolve(), split
    g = gold_path(target, target_path)
    name = next((k for k, v in splits.items() if Path(v).resolve() == g), None)
    return g, name


def check_options(target: Any, target_path: Path, options: dict[str, Any]) -> None:
    if not options:
        return
    params = inspect.signature(target.score).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for k in options:
        if k not in params and not takes_kwargs:
            raise TargetError(f"eval --{k.replace('_', '-')}: {target_path} score() takes no `{k}` option; "
                              f"drop the flag or add `{k}` to its score() signature")


def evaluate(runs_dir: Path, ref: str, *, target_file: Path | None = None, gold: Path | None = None,
             split: str | None = None, options: dict[str, Any] | None = None, budget_s: float | None = None,
             on_phase=None) -> Evaluation:
    """Score one checkpoint in a child process and record the evaluation. Bad input: TargetError."""
    runs_dir = Path(runs_dir).resolve()
    options = dict(options or {})
    ck = resolve_checkpoint(runs_dir, ref, target_file)
    target = load_target(ck.target_path)
    gpath, split_name = resolve_gold(target, ck.target_path, gold, split)
    check_options(target, ck.target_path, options)
    eval_id = f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work = runs_dir / "evals" / eval_id
    work.mkdir(parents=True, exist_ok=True)
    ev = Evaluation(eval_id, ck, gpath, split_name, options, direction=target.direction)
    state = ck.folder
    exported = None
    gold_sha = sha256_file(gpath)  # the set being scored: a score() that edits it measures nothing
    try:
        if state is None:
            exported = work / "state"
            ck.repo.export(ck.commit, exported)
            state = exported
        env = child_env(target, ck.target_path)
        env.update({"AUTOLOOP_PHASE": "eval", "AUTOLOOP_ITER_DIR": str(work), "AUTOLOOP_EVAL_ID": eval_id})
        budget = float(budget_s or getattr(target, "score_budget_s", None) or target.budget_s)
        if on_phase:
            on_phase(f"scoring {ck.label} on {gpath.name} (budget {budget:.0f} s)")
        call = sandbox.ChildCall(target_path=ck.target_path, method="score",
                                 args={"state": str(state), "gold": str(gpath), "options": options},
                                 deadline=time.time() + budget, work_dir=work, env=env, label="score",
                                 memory_cap_mb=getattr(target, "memory_cap_mb", None), budget_s=budget,
                                 paths=("state", "gold"))
        res = LocalExecutor().run(call)
        ev.duration_s = res.method_s or res.duration_s
        ev.status, ev.error = res.status, res.error
        if res.status == "ok":
            ev.scores = Scores.from_json(res.value)
            if ev.scores.score is None:
                ev.status, ev.error = "invalid", "score() returned no score (None)"
            elif not ev.scores.is_finite():
                ev.status, ev.error = "nonfinite", f"score() returned {ev.scores.score!r}"
            ev.feedback = list(ev.scores.feedback or [])
        if sha256_file(gpath) != gold_sha:
            ev.status, ev.error = "invalid", (f"the gold file {gpath} changed while it was scored (sha256 "
                                              f"{gold_sha[:12]} -> {sha256_file(gpath)[:12]}); restore it and evaluate again")
    finally:
        if exported is not None:
            shutil.rmtree(exported, ignore_errors=True)
    if ev.feedback:
        (work / "feedback.json").write_text(json.dumps(ev.feedback, default=str, indent=1))
    record(runs_dir, ev, target_sha=sha256_file(ck.target_path))
    return ev


def record(runs_dir: Path, ev: Evaluation, target_sha: str | None = None) -> dict[str, Any]:
    """Journal first (fsync'd), then DuckDB; a busy database only delays the row (rebuild replays the file)."""
    s = ev.scores
    event = {
        "kind": "evaluation", "eval_id": ev.eval_id, "ts": time.time(), "run_id": ev.checkpoint.run_id,
        "checkpoint": ev.checkpoint.label, "commit": ev.checkpoint.commit,
        "target_path": str(ev.checkpoint.target_path), "target_sha256": target_sha,
        "gold_path": str(ev.gold), "gold_sha256": sha256_file(ev.gold), "split": ev.split,
        "options": ev.options, "status": ev.status, "error": ev.error or None, "duration_s": ev.duration_s,
        "score": s.score if s else None, "components": s.components if s else {},
        "items": s.items if s else {}, "info": s.info if s else None,
    }
    line = (json.dumps(event, default=str) + "\n").encode()
    fd = os.open(Path(runs_dir) / EVAL_JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    from autoloop import store

    store.sync_evaluations(Path(runs_dir) / "history.duckdb", Path(runs_dir))
    return event
