"""A run's record: every event to the journal first (fsync'd, the truth), then to DuckDB on a background
thread; the History proposers see and the dollars spent, both folded in incrementally.

Why a collaborator of its own: the loop needs exactly these four things from the record (write an event,
read the history, know the spend, wait for the database before a reader comes), and each must cost the
same at iteration 1,000 as at iteration 1 (no replay of the whole journal, no rewrite of the database).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from autoloop.history import History
from autoloop.journal import Journal, Replayer
from autoloop.store import BackgroundSync


class RunJournal:
    def __init__(self, run_dir: Path, db_path: Path):
        self.log = Journal(run_dir)
        self._db = BackgroundSync(db_path, run_dir, self.log)
        self._replayer = Replayer(self.log, run_dir)
        self._spent, self._spent_seen = 0.0, 0

    def record(self, kind: str, **fields: Any) -> dict:
        """Journal first (fsync'd), then DuckDB: a crash between the two loses nothing.

        iter_start and llm_calls reach DuckDB with the iteration's end (one database write per iteration);
        `autoloop status` follows the in-flight iteration lock-free. A fault of the last background write
        (disk full) is raised here, in the loop's thread."""
        self._db.check()
        event = self.log.append(kind, **fields)
        if kind not in ("iter_start", "llm_calls"):
            self._db.kick()
        return event

    def flush(self) -> None:
        """Wait until DuckDB holds every event written so far (a reader such as `show` comes next)."""
        self._db.flush()

    def events(self) -> list[dict[str, Any]]:
        return self.log.events()

    def history(self) -> History:
        """The History a proposer sees, with only the events appended since the last call folded in."""
        return self._replayer.history()

    def spent(self) -> float:
        """Dollars recorded by finished iterations."""
        new = self.log.events_since(self._spent_seen)
        self._spent += sum(float(e.get("cost_usd") or 0) for e in new if e["kind"] == "iter_end")
        self._spent_seen += len(new)
        return self._spent
