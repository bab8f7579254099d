"""Progress inside a phase, and what the person at the terminal sees while the loop runs.

**Child side** (target and library code, e.g. `autoloop.mlx`): one call, cheap enough for every step

    from autoloop import progress
    progress.report(done=37, total=200, unit="items", task="generate", tokens_per_s=41.5)
    progress.report(done=12, unit="steps", task="GRPO", step=512, reward=0.41, loss=0.02, eta_s=180)

writes a small JSON file, `<iteration dir>/<phase>.progress.json`, by atomic rename, at most once every
`AUTOLOOP_PROGRESS_MIN_S` seconds (default 1; the first report of a task and its last one, done == total,
are always written). Outside an autoloop child (no AUTOLOOP_ITER_DIR) it does nothing, so library code may
call it always. Children never touch the database: the engine and `autoloop status` read the file.

**Engine side**: a rich live panel on a terminal (iteration, phase, elapsed vs budget, the phase's progress,
best score, last decision); plain lines otherwise (CI logs, pipes): one per event, and one every
`--progress-every` seconds (default 30) while a phase runs, so a long phase is never silent. The same facts
go to `live.json` (atomic rename) so a second terminal can follow the run without the database lock.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autoloop import fmt

PROGRESS_SUFFIX = ".progress.json"
CHILD_PHASES = ("run", "score", "compare", "references")
DEFAULT_EVERY_S = 30.0
# Metrics with a known meaning are shown first and labelled; others follow as name=value.
_KNOWN = ("step", "loss", "reward", "tokens_per_s")


def fmt_score(v: Any) -> str:
    return fmt.score(v)


# -- child side --------------------------------------------------------------------------------------
_state: dict[str, Any] = {"key": None, "t0": 0.0, "done0": None, "last": 0.0}
_lock = threading.Lock()


def progress_path(iter_dir: Path, phase: str) -> Path:
    return Path(iter_dir) / f"{phase}{PROGRESS_SUFFIX}"


def enabled() -> bool:
    """True inside an autoloop child: callers may skip computing what they would report."""
    return bool(os.environ.get("AUTOLOOP_ITER_DIR") and os.environ.get("AUTOLOOP_PHASE"))


def report(done: float | None = None, total: float | None = None, unit: str = "items", task: str | None = None,
           eta_s: float | None = None, **metrics: Any) -> None:
    """Tell the engine how far the current phase has got.

    done/total/unit: work finished out of a known amount ("37 of 200 items"); total may be None (steps until a
    deadline). task: what is running now ("SFT", "GRPO", "generate"); a new task (or a new total) restarts the
    rate that the ETA is computed from. eta_s: seconds left, when the caller knows better than the rate (a
    trainer that stops at a deadline). metrics: numbers to show, e.g. step, loss, reward (mean reward),
    tokens_per_s; any other name is shown as name=value.
    """
    d, phase = os.environ.get("AUTOLOOP_ITER_DIR"), os.environ.get("AUTOLOOP_PHASE")
    if not d or not phase:
        return
    now = time.time()
    with _lock:
        st = _state
        key = (phase, task, unit, total)
        new_task = key != st["key"] or (done is not None and st["done0"] is not None and done < st["done0"])
        if new_task:
            st.update(key=key, t0=now, done0=done, last=0.0)
        final = total is not None and done is not None and done >= total
        try:
            min_s = float(os.environ.get("AUTOLOOP_PROGRESS_MIN_S") or 1.0)
        except ValueError:
            min_s = 1.0
        if not (new_task or final) and now - st["last"] < min_s:
            return
        st["last"] = now
        t0, done0 = st["t0"], st["done0"]
    if eta_s is None and total is not None and done is not None and done0 is not None and done > done0 and now > t0:
        eta_s = (total - done) * (now - t0) / (done - done0)
    payload = {"phase": phase, "pid": os.getpid(), "ts": now, "task": task, "done": done, "total": total,
               "unit": unit, "eta_s": None if eta_s is None else max(0.0, float(eta_s)), "task_started": t0,
               "metrics": {k: v for k, v in metrics.items() if v is None or isinstance(v, (int, float, str))}}
    path = progress_path(Path(d), phase)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, default=str))
        os.replace(tmp, path)
    except OSError:
        pass  # progress is a courtesy: never fail a candidate over it


# -- reading it ----------------------------------------------------------------------------------------
def read_progress(iter_dir: Path, phase: str, since: float | None = None) -> dict[str, Any] | None:
    """The last report of `phase` in this iteration dir (None if there is none, or it predates `since`)."""
    try:
        p = json.loads(progress_path(iter_dir, phase).read_text())
    except (OSError, ValueError):
        return None
    if since is not None and float(p.get("ts") or 0) < since - 1.0:
        return None
    return p


def eta_now(p: dict[str, Any], now: float | None = None) -> float | None:
    """The report's ETA, less the time since it was written."""
    if p.get("eta_s") is None:
        return None
    return max(0.0, float(p["eta_s"]) - ((now or time.time()) - float(p.get("ts") or 0)))


def describe(p: dict[str, Any] | None, now: float | None = None) -> str:
    """One line: 'generate 37/200 items (18%) · 41.5 tok/s · ETA 0:03:12'."""
    if not p:
        return ""
    parts = []
    head = str(p.get("task") or "")
    done, total, unit = p.get("done"), p.get("total"), p.get("unit") or ""
    if done is not None:
        d = fmt.num(done) if not float(done).is_integer() else str(int(done))
        if total:
            t = fmt.num(total) if not float(total).is_integer() else str(int(total))
            head += f" {d}/{t} {unit} ({100 * float(done) / float(total):.0f}%)"
        else:
            head += f" {d} {unit}"
    if head.strip():
        parts.append(head.strip())
    m = dict(p.get("metrics") or {})
    if m.get("step") is not None:
        parts.append(f"step {fmt.num(m['step'])}")
    if m.get("loss") is not None:
        parts.append(f"loss {fmt.num(m['loss'])}")
    if m.get("reward") is not None:
        parts.append(f"mean reward {fmt.num(m['reward'])}")
    if m.get("tokens_per_s") is not None:
        parts.append(f"{fmt.num(m['tokens_per_s'], 'tokens_per_s')} tok/s")
    parts += [f"{k} {fmt.num(v, k)}" for k, v in m.items() if k not in _KNOWN and v is not None]
    eta = eta_now(p, now)
    if eta is not None:
        parts.append(f"ETA {fmt.hms(eta)}")
    return " · ".join(parts)


# -- engine side ----------------------------------------------------------------------------------------
class Display:
    def __init__(self, run_id: str, run_dir: Path, direction: str, enabled: bool | None = None,
                 every_s: float | None = None):
        from rich.console import Console

        self.run_id, self.run_dir, self.direction = run_id, Path(run_dir), direction
        self.console = Console(stderr=False)
        self.live_mode = self.console.is_terminal if enabled is None else enabled
        self.every_s = DEFAULT_EVERY_S if every_s is None else float(every_s)
        self.state: dict[str, Any] = {"run_id": run_id, "pid": os.getpid(), "started": time.time(),
                                      "iter": None, "phase": "starting", "phase_started": time.time(),
                                      "phase_budget_s": None, "best": None, "last": None, "references": {}}
        self._live: Any = None
        self._print_lock = threading.Lock()
        self._last_line = time.time()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> "Display":
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=2,
                              get_renderable=self._render, transient=False)
            self._live.__enter__()
        elif self.every_s > 0:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="autoloop-progress-log")
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        self.state["phase"] = "stopped"
        self._write_live()

    # -- what is shown -------------------------------------------------------------------------------
    def current_progress(self) -> dict[str, Any] | None:
        s = self.state
        if s.get("phase") not in CHILD_PHASES or s.get("iter") is None:
            return None
        return read_progress(self.run_dir / "iters" / f"{s['iter']:03d}", s["phase"], since=s.get("phase_started"))

    def _references_text(self) -> str:
        return " · ".join(f"{k} {fmt.score(v)}" for k, v in (self.state.get("references") or {}).items())

    def _render(self) -> Any:
        from rich.table import Table

        s = self.state
        t = Table.grid(padding=(0, 2))
        now = time.time()
        budget = s.get("phase_budget_s")
        el = now - (s.get("phase_started") or now)
        t.add_row("run", f"{self.run_id}  ({fmt.hms(now - s['started'])} elapsed)")
        t.add_row("iteration", f"{s.get('iter')}  {s.get('phase')}  {fmt.hms(el)}"
                  + (f" / {fmt.hms(budget)} budget" if budget else ""))
        prog = describe(self.current_progress(), now)
        if prog:
            t.add_row("progress", prog)
        t.add_row("best", fmt.score(s.get("best")) + f"  ({self.direction})")
        refs = self._references_text()
        if refs:
            t.add_row("reference", refs)
        last = s.get("last")
        if last:
            t.add_row("last", f"#{last['iter']} {last['status']} score {fmt.score(last.get('score'))}  {last.get('reason', '')[:90]}")
        return t

    def progress_line(self, now: float | None = None) -> str:
        """The periodic log line: '[run] iter 3: score 0:01:30 / 0:20:00 · generate 37/200 items (18%) · ...'."""
        s = self.state
        now = now or time.time()
        budget = s.get("phase_budget_s")
        line = f"[{self.run_id}] iter {s.get('iter')}: {s.get('phase')} {fmt.hms(now - (s.get('phase_started') or now))}"
        line += f" / {fmt.hms(budget)}" if budget else ""
        prog = describe(self.current_progress(), now)
        return line + (f" · {prog}" if prog else "")

    def _tick(self) -> None:
        poll = min(1.0, max(0.05, self.every_s / 5))
        while not self._stop.wait(poll):
            if self.state.get("phase") in ("starting", "between iterations", "stopped"):
                continue
            if time.time() - self._last_line >= self.every_s:
                self._emit(self.progress_line())

    def _emit(self, text: str) -> None:
        with self._print_lock:
            if self._live is not None:
                self._live.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=sys.stdout, flush=True)
            self._last_line = time.time()

    def _write_live(self) -> None:
        tmp = self.run_dir / "live.json.tmp"
        try:
            tmp.write_text(json.dumps(self.state, default=str))
            os.replace(tmp, self.run_dir / "live.json")
        except OSError:
            pass

    # -- events ----------------------------------------------------------------------------------------
    def phase(self, iteration: int, phase: str, budget_s: float | None = None) -> None:
        self.state.update(iter=iteration, phase=phase, phase_started=time.time(), phase_budget_s=budget_s)
        self._write_live()
        if not self.live_mode:
            extra = f" (budget {budget_s:.0f}s)" if budget_s else ""
            self._emit(f"[{self.run_id}] iter {iteration}: {phase}{extra}")

    def references(self, scores: dict[str, float | None]) -> None:
        """Reference points (name -> score) shown beside the best score."""
        self.state["references"] = dict(scores)
        self._write_live()
        if scores:
            self._emit(f"[{self.run_id}] reference points on the gold set: {self._references_text()}")

    def finished(self, rec: dict[str, Any], best: float | None) -> None:
        self.state.update(last=rec, best=best, phase="between iterations")
        self._write_live()
        self._emit(f"[{self.run_id}] iter {rec['iter']}: {rec['status'].upper()} score {fmt.score(rec.get('score'))}"
                   f"  best {fmt.score(best)}  {rec.get('reason', '')[:120]}")

    def message(self, text: str) -> None:
        self._emit(text)
