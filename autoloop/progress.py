"""What the person at the terminal sees while the loop runs, and what `autoloop status` reads.

A rich live panel on a terminal (iteration, phase, elapsed vs budget, best score, last decision); one
plain line per event otherwise (CI logs, pipes). The same facts go to `live.json` (atomic rename) so a
second terminal can follow the run without touching the database lock.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def fmt_score(v: Any) -> str:
    if v is None:
        return "-"
    try:
        return f"{float(v):.4f}"
    except (TypeError, ValueError):
        return str(v)


class Display:
    def __init__(self, run_id: str, run_dir: Path, direction: str, enabled: bool | None = None):
        self.run_id, self.run_dir, self.direction = run_id, Path(run_dir), direction
        self.console = Console(stderr=False)
        self.live_mode = self.console.is_terminal if enabled is None else enabled
        self.state: dict[str, Any] = {"run_id": run_id, "pid": os.getpid(), "started": time.time(),
                                      "iter": None, "phase": "starting", "phase_started": time.time(),
                                      "phase_budget_s": None, "best": None, "last": None}
        self._live: Live | None = None

    def __enter__(self) -> "Display":
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2,
                              get_renderable=self._render, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        self.state["phase"] = "stopped"
        self._write_live()

    def _render(self) -> Table:
        s = self.state
        t = Table.grid(padding=(0, 2))
        now = time.time()
        budget = s.get("phase_budget_s")
        el = now - (s.get("phase_started") or now)
        t.add_row("run", f"{self.run_id}  ({_hms(now - s['started'])} elapsed)")
        t.add_row("iteration", f"{s.get('iter')}  {s.get('phase')}  {_hms(el)}"
                  + (f" / {_hms(budget)} budget" if budget else ""))
        t.add_row("best", fmt_score(s.get("best")) + f"  ({self.direction})")
        last = s.get("last")
        if last:
            t.add_row("last", f"#{last['iter']} {last['status']} score {fmt_score(last.get('score'))}  {last.get('reason', '')[:90]}")
        return t

    def _write_live(self) -> None:
        tmp = self.run_dir / "live.json.tmp"
        try:
            tmp.write_text(json.dumps(self.state, default=str))
            os.replace(tmp, self.run_dir / "live.json")
        except OSError:
            pass

    def phase(self, iteration: int, phase: str, budget_s: float | None = None) -> None:
        self.state.update(iter=iteration, phase=phase, phase_started=time.time(), phase_budget_s=budget_s)
        self._write_live()
        if not self.live_mode:
            extra = f" (budget {budget_s:.0f}s)" if budget_s else ""
            print(f"[{self.run_id}] iter {iteration}: {phase}{extra}", flush=True)

    def finished(self, rec: dict[str, Any], best: float | None) -> None:
        self.state.update(last=rec, best=best, phase="between iterations")
        self._write_live()
        line = (f"[{self.run_id}] iter {rec['iter']}: {rec['status'].upper()} score {fmt_score(rec.get('score'))}"
                f"  best {fmt_score(best)}  {rec.get('reason', '')[:120]}")
        if self._live is not None:
            self._live.console.print(line)
        else:
            print(line, flush=True)

    def message(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=sys.stdout, flush=True)


def _hms(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
