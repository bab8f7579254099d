"""`autoloop` command line: thin click wrappers over runs, loop, store and report.

Every engine option has an AUTOLOOP_* environment fallback (e.g. AUTOLOOP_MAX_ITERS). Bad input exits
with code 2 and one line naming the option or file and the fix; listings take --json.

Exit codes: 0 the run stopped by a stop rule; 2 bad input or a fault of the machine (disk full,
read-only, permissions: one line naming the path); 3 the run's baseline could not be scored (nothing
can be measured); 130 Ctrl-C.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from autoloop.target import TargetError


EXIT_BAD_INPUT, EXIT_CANNOT_MEASURE, EXIT_SIGINT = 2, 3, 130


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"autoloop: error: {msg}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns a fault of the machine anywhere below into one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from autoloop.envfault import describe

        try:
            return super().invoke(ctx)
        except Exception as e:
            line = describe(e)
            if line is None:
                raise
            _fail(line)


def _runs_dir(ctx: click.Context) -> Path:
    return ctx.obj["runs_dir"]


def _db(ctx: click.Context) -> Path:
    return _runs_dir(ctx) / "history.duckdb"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="AUTOLOOP_RUNS_DIR",
              help="Where runs, history.duckdb and blobs live [env AUTOLOOP_RUNS_DIR; default ./runs].")
@click.pass_context
def main(ctx: click.Context, runs_dir: Path | None) -> None:
    """autoloop: propose, run under a budget, score on a fixed gold set, keep or revert, stop at a plateau."""
    import faulthandler

    from autoloop.runs import runs_dir_default

    # A crash inside a C extension kills the engine with no Python traceback; this prints every thread's stack
    # to stderr first, so the report names where (it is how the setenv/duckdb.connect race in autoloop.envguard
    # was found). The journal is fsync'd first: `autoloop resume` loses nothing.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    ctx.ensure_object(dict)
    ctx.obj["runs_dir"] = (runs_dir.resolve() if runs_dir else runs_dir_default())


def _limit_options(f):
    opts = [
        click.option("--max-iters", envvar="AUTOLOOP_MAX_ITERS", type=click.IntRange(min=0), help="Stop after N candidate iterations (baseline not counted)."),
        click.option("--patience", envvar="AUTOLOOP_PATIENCE", type=click.IntRange(min=1), help="Plateau: stop after K iterations in a row without a keep [default: the target's `patience`, else 5]."),
        click.option("--max-hours", envvar="AUTOLOOP_MAX_HOURS", type=click.FloatRange(min=0, min_open=True), help="Stop once this much wall-clock time has passed."),
        click.option("--until", "until", envvar="AUTOLOOP_UNTIL", metavar="HH:MM", help="Stop at this local time, e.g. 07:30."),
        click.option("--max-cost", envvar="AUTOLOOP_MAX_COST", type=click.FloatRange(min=0), help="Dollar cap: stop before spending more (targets report cost)."),
        click.option("--target-score", envvar="AUTOLOOP_TARGET_SCORE", type=float, help="Stop once the best score reaches this value."),
        click.option("--stop-file", envvar="AUTOLOOP_STOP_FILE", type=click.Path(dir_okay=False), help="Stop when this file exists (runs/STOP and runs/<run>/STOP always work)."),
        click.option("--memory-cap-mb", envvar="AUTOLOOP_MEMORY_CAP_MB", type=click.FloatRange(min=1), help="Kill a candidate whose process tree exceeds this RSS (status oom)."),
        click.option("--max-log-mb", envvar="AUTOLOOP_MAX_LOG_MB", type=click.FloatRange(min=0.2), help="Cap each child log: head and tail kept, the middle dropped [default: 4]."),
        click.option("--progress/--no-progress", default=None, help="Live panel (default: only on a terminal)."),
        click.option("--batch", envvar="AUTOLOOP_BATCH", type=click.IntRange(min=1),
                     help="Candidates per iteration: all are run and screened, the best is measured in full [default: the target's `batch`, else 1]."),
        click.option("--proposer", envvar="AUTOLOOP_PROPOSER", metavar="tpe|random|llm|MODULE:CLASS",
                     help="What proposes, for this run (recorded; resume keeps it) [default: the target's own]."),
        click.option("--parallel", envvar="AUTOLOOP_PARALLEL", type=click.IntRange(min=1),
                     help="Batch members that may run at once (the executor's slots) [default 1]."),
        click.option("--executor", envvar="AUTOLOOP_EXECUTOR", metavar="local|ray|MODULE:CLASS",
                     help="Where children run: 'local' processes (default), 'ray' (a Ray cluster) or a class built as CLASS(parallel=N)."),
        click.option("--ray-address", envvar="AUTOLOOP_RAY_ADDRESS", metavar="auto|HOST:PORT",
                     help="--executor ray: the cluster to join ('auto': the one on this machine or $RAY_ADDRESS) [default: auto]."),
        click.option("--progress-every", envvar="AUTOLOOP_PROGRESS_EVERY", type=click.FloatRange(min=0), metavar="SECONDS",
                     help="Without the live panel: a progress line this often while a phase runs [default 30; 0: off]."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _overrides(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_iters", "patience", "max_hours", "until", "max_cost", "target_score", "stop_file",
            "memory_cap_mb", "max_log_mb", "progress", "progress_every", "parallel", "executor", "batch", "proposer",
            "ray_address")
    out = {k: kw.get(k) for k in keys}
    if out["executor"]:
        from autoloop.executor import executor_factory

        try:
            executor_factory(out["executor"])
        except ValueError as e:
            _fail(str(e))
    if out["until"]:
        from autoloop.runs import until_to_deadline

        try:
            until_to_deadline(out["until"])
        except ValueError as e:
            _fail(str(e))
    return out


@main.command()
@click.argument("target_file", type=click.Path(path_type=Path))
@_limit_options
@click.option("--run-id", help="Name the run (default: <target name>-<date>-<time>).")
@click.option("--resume/--new", "resume_choice", default=None,
              help="When this target has an unfinished run: resume it, or start a new one (default: ask on a terminal, else new).")
@click.pass_context
def run(ctx: click.Context, target_file: Path, run_id: str | None, resume_choice: bool | None, **kw: Any) -> None:
    """Start a loop on TARGET_FILE (a .py file defining `target`)."""
    from autoloop.loop import run_loop
    from autoloop.runs import Settings, create_run, open_run, unfinished_runs

    over = _overrides(kw)
    runs_dir = _runs_dir(ctx)
    try:
        if target_file.exists() and resume_choice is not False:
            pending = unfinished_runs(runs_dir, target_file)
            if pending:
                rid = pending[-1]
                if resume_choice is None and sys.stdin.isatty():
                    resume_choice = click.confirm(f"{target_file} has an unfinished run {rid}. Resume it?", default=True)
                elif resume_choice is None:
                    click.echo(f"note: {target_file} has an unfinished run {rid}; `autoloop resume {rid}` continues it",
                               err=True)
                if resume_choice:
                    r = open_run(rid, Settings(runs_dir=runs_dir), over)
                    click.echo(f"resuming {rid}")
                    _finish(ctx, r, run_loop(r))
                    return
        settings = Settings(runs_dir=runs_dir, **{k: v for k, v in over.items() if v is not None})
        r = create_run(target_file, settings, run_id)
    except TargetError as e:
        _fail(str(e))
    click.echo(f"run {r.run_id}: state {r.state_dir} (git), history {r.db_path}")
    _finish(ctx, r, run_loop(r))


def _finish(ctx: click.Context, r, reason: str) -> None:
    from autoloop import report

    try:
        _show_table(r.db_path, r.run_id, title=f"{r.run_id} ({reason})")
    except Exception as e:  # the run is complete and journaled; a busy DB only delays the table
        click.echo(f"(table unavailable: {e}; run `autoloop show {r.run_id}`)", err=True)
    if reason in ("baseline_failed", "gold_changed"):
        _fail(f"run {r.run_id}: {r.stop_detail}", EXIT_CANNOT_MEASURE)
    sys.exit(EXIT_SIGINT if reason == "sigint" else 0)


@main.command()
@click.argument("run_ref", metavar="RUN")
@_limit_options
@click.pass_context
def resume(ctx: click.Context, run_ref: str, **kw: Any) -> None:
    """Continue RUN after a crash, kill -9, reboot or Ctrl-C (limits may be given again)."""
    from autoloop.loop import run_loop
    from autoloop.report import resolve_run
    from autoloop.runs import Settings, open_run

    try:
        rid = resolve_run(_db(ctx), _runs_dir(ctx), run_ref)
        r = open_run(rid, Settings(runs_dir=_runs_dir(ctx)), _overrides(kw))
    except (TargetError, LookupError) as e:
        _fail(str(e).strip("'\""))
    click.echo(f"resuming {rid}")
    _finish(ctx, r, run_loop(r))


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--follow", "-f", is_flag=True, help="Refresh every second until the run stops.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, run_ref: str | None, follow: bool, as_json: bool) -> None:
    """Live view of a running loop (reads live.json and the journal: no database lock needed)."""
    from autoloop import fmt, members
    from autoloop.journal import JOURNAL, read_events
    from autoloop.progress import CHILD_PHASES, describe, eta_now, read_progress
    from autoloop.report import reference_points, references_line, resolve_run, run_state
    from autoloop.runs import lock_owner

    try:
        rid = resolve_run(_db(ctx), _runs_dir(ctx), run_ref)
    except LookupError as e:
        _fail(str(e).strip("'\""))
    run_dir = _runs_dir(ctx) / rid
    while True:
        live = {}
        try:
            live = json.loads((run_dir / "live.json").read_text())
        except (OSError, json.JSONDecodeError):
            pass
        events = read_events(run_dir / JOURNAL)
        # Counted as --max-iters counts: candidate iterations that finished (the baseline, #0, is not one).
        ends = [e for e in events if e["kind"] == "iter_end" and e["iter"] > 0 and e["status"] != "interrupted"]
        owner = lock_owner(run_dir)
        marks = [e for e in events if e["kind"] in ("run_start", "run_resume", "run_end")]
        end = marks[-1] if marks and marks[-1]["kind"] == "run_end" else None
        state = run_state(_runs_dir(ctx), rid, end.get("status", "finished") if end else "running")
        kept = [e for e in events if e["kind"] == "iter_end" and e["status"] == "keep"]  # the baseline too
        best = (kept[-1].get("scores") or {}).get("score") if kept else None  # keeps only ever improve
        st = {"run_id": rid, "status": state, "running": owner is not None, "pid": owner, "iterations": len(ends),
              "kept": sum(e["status"] == "keep" for e in ends), "iter": live.get("iter"), "phase": live.get("phase"),
              "phase_elapsed_s": round(time.time() - live["phase_started"], 1) if live.get("phase_started") else None,
              "phase_budget_s": live.get("phase_budget_s"), "best": best,
              "last": live.get("last"), "stop_reason": end.get("stop_reason") if end and owner is None else None,
              "stop_detail": end.get("detail") if end and owner is None else None,
              "references": reference_points(events), "progress": None}
        if st["best"] is None and ends:  # a resumed engine knows its best only after an iteration: the journal does
            kept = [e for e in ends if e["status"] == "keep"]
            st["best"] = ((kept[-1].get("scores") or {}).get("score")) if kept else None
        prog = None
        if owner and st["phase"] in CHILD_PHASES and st["iter"] is not None:
            prog = read_progress(run_dir / "iters" / f"{int(st['iter']):03d}", st["phase"], since=live.get("phase_started"))
        if prog:
            st["progress"] = {k: prog.get(k) for k in ("task", "done", "total", "unit", "metrics")}
            st["progress"]["eta_s"] = eta_now(prog)
            st["progress"]["age_s"] = round(time.time() - float(prog.get("ts") or 0), 1)
        # Node -> members running there (autoloop.members: what the executor wrote; the dashboard reads it too).
        st["members"] = members.by_node(members.in_flight(run_dir, st["iter"])) if owner else {}
        if as_json:
            click.echo(json.dumps(st, default=str))
        else:
            said = state + (f" ({st['stop_reason']}: {st['stop_detail']})" if st["stop_detail"]
                            else f" ({st['stop_reason']})" if st["stop_reason"] else "")
            if state == "interrupted" and not st["stop_reason"]:
                said += f" (resumable: autoloop resume {rid})"
            budget = f" / {fmt.hms(st['phase_budget_s'])}" if st["phase_budget_s"] else ""
            click.echo(f"{rid}: {said}; {st['iterations']} iterations, {st['kept']} kept (baseline not counted), "
                       f"best {fmt.score(st['best'])}"
                       + (f"; now iter {st['iter']} {st['phase']} {fmt.hms(st['phase_elapsed_s'])}{budget}" if owner else ""))
            if prog:
                click.echo(f"  progress: {describe(prog)}")
            if st["members"]:
                click.echo("  members in flight: " + "; ".join(f"{node}: {', '.join(labels)}"
                                                            for node, labels in st["members"].items()))
            if st["references"]:
                click.echo(f"  reference points: {references_line(st['references'])}")
            if st["last"]:
                last = st["last"]
                click.echo(f"  last: #{last['iter']} {last['status']} score {fmt.score(last.get('score'))} {last.get('reason', '')[:100]}")
        if not follow or owner is None:
            return
        time.sleep(1)


RUNS_SQL = """
    SELECT r.run_id, r.target_name, r.started_at,
           count(i.iter) FILTER (WHERE i.iter > 0 AND i.status NOT IN ('running', 'interrupted')) AS iterations,
           count(*) FILTER (WHERE i.iter > 0 AND i.status = 'keep') AS kept, b.score AS best, r.status,
           r.stop_reason, coalesce(sum(i.cost_usd), 0) AS cost_usd
    FROM runs r LEFT JOIN iterations i USING (run_id) LEFT JOIN best b USING (run_id)
    GROUP BY ALL ORDER BY r.started_at"""


@main.command("runs")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_cmd(ctx: click.Context, as_json: bool) -> None:
    """List runs: id, target, start, iterations and kept (the baseline not counted, as --max-iters counts),
    best score, status (running | finished | interrupted, as `status` says), stop reason, dollars spent."""
    from autoloop import store
    from autoloop.report import run_state

    try:
        cols, rows = store.query(_db(ctx), RUNS_SQL)
    except FileNotFoundError as e:
        _fail(str(e))
    out = [dict(zip(cols, r)) for r in rows]
    for d in out:
        d["status"] = run_state(_runs_dir(ctx), d["run_id"], d["status"])
    _emit(cols, out, as_json)


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--kept", is_flag=True, help="Only kept checkpoints.")
@click.option("--wide", is_flag=True, help="Every column: durations, peak RSS, delta, the decision's reason and the params (params.<key>); default: what fits 120 columns.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, run_ref: str | None, kept: bool, wide: bool, as_json: bool) -> None:
    """Every iteration of RUN (default: the newest), kept or not: checkpoint (kept ones), time since the start,
    status, score, components, decision, and the run's reference points (e.g. a constant reply, the untrained
    baseline) scored on the same gold set. Columns are described in the README ("Columns")."""
    from autoloop import report

    try:
        rid = report.resolve_run(_db(ctx), _runs_dir(ctx), run_ref)
        if as_json:
            cols, rows = report.iteration_rows(_db(ctx), rid, kept_only=kept)
            click.echo(json.dumps(rows, default=str))
        else:
            _show_table(_db(ctx), rid, title=rid, kept=kept, wide=wide)
    except (LookupError, FileNotFoundError) as e:
        _fail(str(e).strip("'\""))


def _show_table(db: Path, rid: str, title: str, kept: bool = False, wide: bool = False) -> None:
    """Iterations, then the reference points under a rule, in one table (so their columns line up)."""
    from autoloop import report

    cols, rows = report.iteration_rows(db, rid, kept_only=kept)
    refs, ref_error = report.reference_rows(db, rid)
    width = _show_width()
    if wide:
        pcols, rows = report.with_param_columns(rows)
        rows = [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in rows]
        shown, split = cols + pcols, False
    else:
        shown, split = report.compact_layout(cols, rows + refs, width)
    _print_table(shown, rows, title=title, extra_rows=refs, compact=not wide, split_headers=split,
                 width=None if wide else width)
    if ref_error:
        click.echo(f"reference points: the target's reference_scores() failed: {ref_error}")


def _show_width() -> int:
    """COLUMNS when set, else the terminal's width, else 120 (a pipe, a log file)."""
    import os
    import shutil

    try:
        if int(os.environ.get("COLUMNS") or 0) > 0:
            return int(os.environ["COLUMNS"])
    except ValueError:
        pass
    if sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    from autoloop.report import SHOW_WIDTH

    return SHOW_WIDTH


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run a read-only SQL QUERY on the history (tables runs, iterations, metrics, item_scores, events,
    llm_calls; views curve, best, last_run; macro last_run() -- the newest run's id, as in
    `select * from curve where run_id = last_run()`). Retries while a running loop holds the write lock.
    With --format json, JSON columns (params, config, info...) are objects."""
    import duckdb

    from autoloop import store

    try:
        cols, rows = store.query(_db(ctx), query)
    except FileNotFoundError as e:
        _fail(str(e))
    except duckdb.Error as e:
        _fail(f"sql: {str(e).splitlines()[0]}; check the query (tables: runs, iterations, metrics, item_scores, events, llm_calls, curve, best, last_run; macro last_run())")
    dicts = [dict(zip(cols, r)) for r in rows]
    if fmt == "json":
        from autoloop.report import decode_json_columns

        click.echo(json.dumps([decode_json_columns(d) for d in dicts], default=str))
    elif fmt == "csv":
        from autoloop.report import to_csv

        click.echo(to_csv(cols, dicts), nl=False)
    else:
        _print_table(cols, dicts)


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the evidence table as CSV to this file ('-' for stdout).")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), default=None, help="Write the curve as a PNG.")
@click.pass_context
def export(ctx: click.Context, run_ref: str | None, csv_path: str | None, png_path: str | None) -> None:
    """Export RUN's evidence trail: every iteration with its scores and decision (CSV: run_id, elapsed_s in
    seconds, params.<key> columns), and the curve (PNG)."""
    from autoloop import report

    if not csv_path and not png_path:
        csv_path = "-"
    try:
        rid = report.resolve_run(_db(ctx), _runs_dir(ctx), run_ref)
        cols, rows = report.iteration_rows(_db(ctx), rid)
    except (LookupError, FileNotFoundError) as e:
        _fail(str(e).strip("'\""))
    if csv_path:
        text = report.to_csv(*report.csv_rows(rid, cols, rows))
        if csv_path == "-":
            click.echo(text, nl=False)
        else:
            Path(csv_path).write_text(text)
            click.echo(f"wrote {csv_path}", err=True)
    if png_path:
        report.plot_curve(_db(ctx), rid, Path(png_path))
        click.echo(f"wrote {png_path}", err=True)


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def best(ctx: click.Context, run_ref: str | None, as_json: bool) -> None:
    """The best checkpoint of RUN: score, tag, commit, and how to materialise it."""
    from autoloop import fmt, report, store

    try:
        rid = report.resolve_run(_db(ctx), _runs_dir(ctx), run_ref)
        cols, rows = store.query(_db(ctx), "SELECT * FROM best WHERE run_id = ?", [rid])
        refs, _ = report.reference_rows(_db(ctx), rid)
    except (LookupError, FileNotFoundError) as e:
        _fail(str(e).strip("'\""))
    if not rows:
        _fail(f"run {rid} has no kept checkpoint yet")
    d = dict(zip(cols, rows[0]))
    d["state_repo"] = str(_runs_dir(ctx) / rid / "state")
    d["references"] = {r["reference"]: r["score"] for r in refs}
    if as_json:
        click.echo(json.dumps(d, default=str))
    else:
        click.echo(f"{rid}: best score {fmt.score(d['score'])} at iteration {d['iter']} ({d['tag']}, commit {d['commit'][:12]})")
        click.echo(f"  {d['description']}")
        if d["references"]:
            click.echo(f"  reference points: {report.references_line(d['references'])}")
        click.echo(f"  materialise it: autoloop checkout {d['tag']} DIR")


@main.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def compare(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> None:
    """RUN_A and RUN_B side by side: best score and when it came, iterations, keeps, cost, components at
    the best; and, when both used the same gold set, their best checkpoints paired item by item."""
    from autoloop import report

    try:
        a = report.resolve_run(_db(ctx), _runs_dir(ctx), run_a)
        b = report.resolve_run(_db(ctx), _runs_dir(ctx), run_b)
        res = report.compare_runs(_db(ctx), _runs_dir(ctx), a, b)
    except (LookupError, FileNotFoundError) as e:
        _fail(str(e).strip("'\""))
    if as_json:
        click.echo(json.dumps(res, default=str))
        return
    sa, sb = res["a"], res["b"]
    fields = ["target_name", "direction", "status", "stop_reason", "started_at", "iterations", "kept", "best",
              "best_iter", "best_tag", "best_elapsed_s", "elapsed_s", "cost_usd"]
    comps = sorted(set(sa["best_components"]) | set(sb["best_components"]))
    rows = [{"": f, "A": sa.get(f), "B": sb.get(f)} for f in fields]
    rows += [{"": f"best {c}", "A": sa["best_components"].get(c), "B": sb["best_components"].get(c)} for c in comps]
    _print_table(["", "A", "B"], rows, title=f"A = {a}   B = {b}")
    if not res["same_gold"]:
        click.echo("gold sets differ (sha256): the scores are not measured on the same items")
    elif not res["same_direction"]:
        click.echo("directions differ: the scores are not comparable")
    if "best_delta_b_minus_a" in res:
        better = sa["direction"] == "min" and res["best_delta_b_minus_a"] < 0 or (
            sa["direction"] == "max" and res["best_delta_b_minus_a"] > 0)
        click.echo(f"best: delta B - A {res['best_delta_b_minus_a']:+.4g} "
                   f"({'lower' if sa['direction'] == 'min' else 'higher'} is better: "
                   f"{'B' if better else 'A' if res['best_delta_b_minus_a'] else 'neither'} is better)")
    it = res["items"]
    if it:
        click.echo(f"best vs best on {it['n']} shared gold items: B better on {it['b_better']}, "
                   f"A better on {it['a_better']}, equal on {it['equal']}")


@main.command()
@click.argument("tag")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def checkout(ctx: click.Context, tag: str, dest: Path) -> None:
    """Materialise checkpoint TAG (e.g. autoloop/<run>/ckpt-003 or autoloop/<run>/best) into DEST, large files included."""
    from autoloop.checkpoint import StateRepo

    parts = tag.split("/")
    if len(parts) != 3 or parts[0] != "autoloop":
        _fail(f"checkout {tag!r}: expected autoloop/<run>/ckpt-NNN or autoloop/<run>/best (see `git tag -l` in the run's state dir)")
    run_dir = _runs_dir(ctx) / parts[1]
    repo = StateRepo(run_dir / "state", _runs_dir(ctx) / "blobs")
    if not repo.exists():
        _fail(f"checkout {tag!r}: run {parts[1]} not found under {_runs_dir(ctx)}")
    if dest.exists() and any(dest.iterdir()):
        _fail(f"checkout: {dest} is not empty; pass a new or empty directory")
    if repo.resolve(tag) is None:
        _fail(f"checkout: no tag {tag} in {run_dir / 'state'}; list them with `git -C {run_dir / 'state'} tag -n`")
    repo.export(tag, dest)
    click.echo(f"materialised {tag} into {dest}")


@main.command("eval")
@click.argument("checkpoint")
@click.option("--target", "target_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Target file whose score() is used (default: the run's own target; required for a folder).")
@click.option("--gold", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Any gold JSONL file.")
@click.option("--split", default=None, help="A gold split the target names in `gold_splits` (e.g. sealed, synthetic).")
@click.option("--constrained", is_flag=True, help="Ask score() for structured decoding (targets that support it).")
@click.option("--worst", type=int, default=10, show_default=True, help="How many of the worst items to print.")
@click.option("--budget-s", type=float, default=None, help="Deadline of the scoring child (default: the target's score budget).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def eval_cmd(ctx: click.Context, checkpoint: str, target_file: Path | None, gold: Path | None, split: str | None,
             constrained: bool, worst: int, budget_s: float | None, as_json: bool) -> None:
    """Score CHECKPOINT (a tag, a run's best, or a folder) on a gold file; recorded as an evaluation.

    \b
    autoloop eval autoloop/RUN/best --split sealed
    autoloop eval RUN --gold my_ads.jsonl --constrained
    autoloop eval ./ship --target targets/sfia_grpo.py --split synthetic
    """
    from autoloop.evaluate import evaluate

    options = {"constrained": True} if constrained else {}
    try:
        ev = evaluate(_runs_dir(ctx), checkpoint, target_file=target_file, gold=gold, split=split, options=options,
                      budget_s=budget_s, on_phase=None if as_json else (lambda m: click.echo(m, err=True)))
    except TargetError as e:
        _fail(str(e))
    s = ev.scores
    out = {"eval_id": ev.eval_id, "checkpoint": ev.checkpoint.label, "run_id": ev.checkpoint.run_id,
           "commit": ev.checkpoint.commit, "gold": str(ev.gold), "split": ev.split, "options": ev.options,
           "status": ev.status, "error": ev.error or None, "score": s.score if s else None,
           "components": s.components if s else {}, "items": len(s.items) if s else 0,
           "duration_s": round(ev.duration_s, 1)}
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        click.echo(f"{ev.eval_id}: {ev.checkpoint.label} on {ev.gold}" + (f" (split {ev.split})" if ev.split else "")
                   + (f" options {ev.options}" if ev.options else ""))
        if ev.status != "ok":
            click.echo(f"  status {ev.status}: {(ev.error.strip().splitlines() or [''])[-1][:300]}")
        else:
            click.echo(f"  score {_cell(s.score)} over {len(s.items)} items in {ev.duration_s:.0f} s")
            for k, v in s.components.items():
                click.echo(f"    {k:<22} {_cell(v)}")
            shown = ev.feedback[:worst] if ev.feedback else [
                {"id": k, "score": v} for k, v in ev.worst_items(worst)]
            if shown and worst > 0:
                click.echo(f"  worst {len(shown)} items:")
                for f in shown:
                    val = f.get("score", (f.get("components") or {}).get("forge_score", s.items.get(f.get("id"))))
                    line = f"    {f.get('id')}: {_cell(val)}"
                    if f.get("actual") is not None:
                        line += f"  expected {json.dumps(f.get('expected'), default=str)[:120]}"
                        line += f"  got {str(f.get('actual'))[:120]!r}"
                    click.echo(line)
        click.echo(f"  recorded: autoloop sql \"select * from evaluations where eval_id = '{ev.eval_id}'\"")
    if ev.status != "ok":
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check this machine: Python, git, DuckDB, the BLAS MLX gets (measured), the model, free disk.
    Exit code 1 if a run would fail; warnings (e.g. a slow BLAS) name their fix."""
    from autoloop.doctor import checks

    results = checks(_runs_dir(ctx))
    if as_json:
        click.echo(json.dumps([c._asdict() for c in results], indent=1))
    else:
        for c in results:
            click.echo(f"{c.status.upper() if c.status != 'ok' else 'ok':<5} {c.name:<7} {c.detail}")
        bad = [c for c in results if c.status != "ok"]
        click.echo("all checks passed" if not bad else
                   f"{sum(c.status == 'warn' for c in bad)} warning(s), {sum(c.status == 'fail' for c in bad)} failure(s)")
    sys.exit(1 if any(c.status == "fail" for c in results) else 0)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, envvar="AUTOLOOP_UI_PORT")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="AUTOLOOP_UI_HOST",
              help="Address to bind; anything but loopback prints a warning (the page has no login).")
@click.option("--runs-dir", "ui_runs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory to show (same as the global --runs-dir).")
@click.pass_context
def ui(ctx: click.Context, port: int, host: str, ui_runs_dir: Path | None) -> None:
    """Serve a live, read-only web dashboard over the history: runs (overlaid), curves, iterations,
    each candidate's diff and per-item changes, LLM spend. Never takes the database lock."""
    from autoloop.ui.app import serve

    runs_dir = ui_runs_dir.resolve() if ui_runs_dir else _runs_dir(ctx)
    serve(runs_dir, host=host, port=port, echo=lambda m: click.echo(m, err=m.startswith("warning")))


@main.group()
def db() -> None:
    """The DuckDB history file."""


@db.command("path")
@click.pass_context
def db_path(ctx: click.Context) -> None:
    """Print the history database path."""
    click.echo(str(_db(ctx.find_root())))


@db.command("rebuild")
@click.pass_context
def db_rebuild(ctx: click.Context) -> None:
    """Recreate the database from every run's journal (the source of truth)."""
    from autoloop import store

    n = store.rebuild(_db(ctx.find_root()), _runs_dir(ctx.find_root()))
    click.echo(f"rebuilt {_db(ctx.find_root())} from {n} journal(s)")


@db.command("snapshot")
@click.argument("dest", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_snapshot(ctx: click.Context, dest: Path | None) -> None:
    """Write a consistent read-only copy of the history (default: runs/history-snapshot.duckdb) that any
    reader, the stock `duckdb` CLI included, can open while a run is writing."""
    from autoloop import store

    root = ctx.find_root()
    dest = dest or _runs_dir(root) / "history-snapshot.duckdb"
    try:
        store.snapshot(_db(root), dest)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    click.echo(str(dest))


def _emit(cols: list[str], rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=str))
    else:
        _print_table(cols, rows)


def _print_table(cols: list[str], rows: list[dict], title: str | None = None, extra_rows: list[dict] | None = None,
                 compact: bool = False, split_headers: bool = False, width: int | None = None) -> None:
    """A rich table. compact: numbers never wrapped, text columns folded to fit `width`; split_headers: long
    names on two lines. Without a width, on a terminal rich fits the table to it; into a pipe, lines are not
    wrapped."""
    from rich.console import Console
    from rich.table import Table

    from autoloop.report import TEXT_COLS, header

    t = Table(title=title, show_lines=False)
    everything = rows + (extra_rows or [])
    for c in cols:
        text = c in TEXT_COLS or any(isinstance(r.get(c), str) and len(r[c]) > 16 for r in everything)
        t.add_column(header(c) if split_headers else c, overflow="fold", no_wrap=compact and not text,
                     max_width=60 if c in TEXT_COLS else None)
    for i, r in enumerate(rows):
        t.add_row(*[_cell(r.get(c), c) for c in cols], end_section=bool(extra_rows) and i == len(rows) - 1)
    for r in extra_rows or []:
        t.add_row(*[_cell(r.get(c), c) for c in cols], style="dim")
    if width is not None:
        console = Console(width=width)
    else:
        console = Console()
        console = console if console.is_terminal else Console(width=1000)
    console.print(t)


def _cell(v: Any, col: str | None = None) -> str:
    from autoloop.fmt import num

    return num(v, col)


def _register_plugins() -> None:
    """Subcommand groups that live with optional parts (e.g. `autoloop models` with MLX)."""
    try:
        from autoloop.mlx.cli import models

        main.add_command(models)
    except Exception:  # MLX missing or still being built: the engine works without it
        pass


_register_plugins()

if __name__ == "__main__":
    main()
