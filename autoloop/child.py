"""Entry point of the child process that runs one target method (`python -m autoloop.child SPEC`).

The engine never runs target code that may hang, leak or crash in its own process: it writes a spec file,
starts this module in a new process group, and reads the result file this module writes atomically.
Kept free of heavy imports: only the target's own imports cost time here.

This process is also the candidate's supervisor: it is a subreaper (Linux), so a daemon the target
double-forks stays in its process tree, and before it exits it ends every descendant still alive. If
the engine dies (kill -9), it takes the group and every descendant down with it.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def _write_result(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, path)


def _die_with_parent() -> None:
    """If the engine dies (kill -9), take this process group down too: an orphaned candidate must not
    keep mutating the state dir or hold a port while `resume` restores the checkpoint."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                _end_descendants(grace=2.0)
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(os.getpgid(0), sig)
                    except OSError:
                        pass
                    time.sleep(2.0)

    threading.Thread(target=watch, daemon=True, name="autoloop-parent-watch").start()


def _end_descendants(grace: float) -> None:
    """End whatever the target started and left running (servers, daemons): they must not outlive us."""
    from autoloop import reaper

    reaper.terminate(reaper.descendants(), grace=grace)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    from autoloop.reaper import become_subreaper

    become_subreaper()
    _die_with_parent()
    try:
        return _run(spec)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _end_descendants(grace=1.0)


def _run(spec: dict) -> int:
    result_path = Path(spec["result_path"])
    # SIGTERM becomes an exception so `finally` blocks in target code (stop a server, save a file) run.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    try:
        from autoloop.target import Candidate, Rejected, Scores, load_target

        target = load_target(spec["target_path"])
        method, args = spec["method"], spec["args"]
        t0 = time.perf_counter()
        if method == "run":
            target.run(Candidate.from_json(args["candidate"]), Path(args["state"]), float(args["deadline"]))
            value = None
        elif method == "score":
            value = _scores(target.score(Path(args["state"]), Path(args["gold"]), **(args.get("options") or {})), Scores)
        elif method == "compare":
            inc, cand = target.compare(Path(args["incumbent"]), Path(args["candidate"]), Path(args["gold"]))
            value = {"incumbent": _scores(inc, Scores), "candidate": _scores(cand, Scores)}
        elif method == "references":
            refs = target.reference_scores(Path(args["gold"]))
            if not isinstance(refs, dict):
                raise TypeError(f"reference_scores() must return a dict of name -> Scores (or a number), got {type(refs).__name__}")
            value = {str(k): (None if v is None else _scores(v, Scores)) for k, v in refs.items()}
        else:
            raise ValueError(f"unknown method {method!r}")
        _write_result(result_path, {"ok": True, "value": value, "method_s": time.perf_counter() - t0})
        return 0
    except Rejected as e:
        _write_result(result_path, {"ok": False, "kind": "rejected", "error": str(e)})
        return 0
    except BaseException as e:  # noqa: BLE001 - everything a candidate does wrong is an outcome
        kind = "crash"
        if isinstance(e, MemoryError):
            kind = "oom"
        traceback.print_exc(limit=30)  # the log ends with it too, where a reader looks first
        _write_result(result_path, {"ok": False, "kind": kind, "error": traceback.format_exc(limit=30)})
        return 1


def _scores(s, Scores) -> dict:
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        s = Scores(score=float(s))
    if not isinstance(s, Scores):
        raise TypeError(f"score() must return autoloop.target.Scores (or a number), got {type(s).__name__}")
    if s.score is not None and not isinstance(s.score, (int, float)):
        raise TypeError(f"Scores.score must be a number or None, got {type(s.score).__name__}")
    for k, v in s.components.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"Scores.components[{k!r}] must be a number")
    return s.to_json()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
