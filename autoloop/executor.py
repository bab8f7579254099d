"""The executor seam: every child the engine starts (run, score, compare, references, each batch member)
goes through an `Executor`, so where children run (this machine, a Ray cluster) is not the loop's concern.

    handles = [executor.submit(call) for call in calls]      # returns at once; starts what may start
    results = executor.wait(handles, should_abort)           # one ChildResult per handle, in order

`submit` never blocks on the child: N members of one iteration are submitted together and run
concurrently up to `executor.parallel` (`autoloop run --parallel N`; the local default is 1, since a
2-core box running one training job has no room for two). `wait` returns when every given handle has
ended; each call's own deadline (from `ChildCall.budget_s`, counted from when the child really starts, not
from when it was queued), memory cap and `should_abort` are enforced by the executor.

State moves by value, never through an assumed shared file system. A call names which of its `args`
are engine-side paths (`ChildCall.paths`: e.g. "state", "gold", "incumbent") and which of those the method
changes (`ChildCall.writes`: "state" for `run`). The local executor hands the paths over as they are; a
remote one ships each path as an archive (`pack`/`unpack` below: a tar of the directory, `.git` left
out), rewrites `args` to where it unpacked them, and, before `wait` returns, unpacks the `writes` paths
back over the engine-side ones. The target file travels with its directory (targets import helpers
beside them). The result file, the log and `ChildResult` come back the same way; `ChildResult.log_path`
is an engine-side path.

Choosing one: `autoloop run T --executor local` (default) or `--executor package.module:Class`; the class
is built as `Class(parallel=N)` and must provide `parallel`, `submit`, `wait` and `close`.
"""
from __future__ import annotations

import importlib
import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from autoloop.sandbox import Child, ChildCall, ChildResult, close_warm, kill_tree

__all__ = ["Executor", "LocalExecutor", "ChildCall", "ChildResult", "executor_factory", "make_executor", "pack", "unpack"]


@runtime_checkable
class Executor(Protocol):
    parallel: int  # children that may run at once

    def submit(self, call: ChildCall) -> Any:
        """Queue one call and start it when a slot is free; returns an opaque handle at once."""

    def wait(self, handles: Sequence[Any], should_abort: Callable[[], bool] = lambda: False) -> list[ChildResult]:
        """Block until every handle has ended; results in the order of `handles`."""

    def close(self) -> None:
        """End whatever is still running (an aborted batch) and free the executor's resources."""


class LocalExecutor:
    """Child processes on this machine (autoloop.sandbox.Child), at most `parallel` at once."""

    def __init__(self, parallel: int = 1, warm: bool | None = None):
        if not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel={parallel!r}: give a whole number >= 1")
        self.parallel = parallel
        # Fork children from a warm worker (autoloop.zygote) instead of starting a fresh interpreter each
        # time; AUTOLOOP_WARM=0 turns it off. Either way the child runs the same code (autoloop.child).
        self.warm = os.environ.get("AUTOLOOP_WARM", "1") != "0" if warm is None else warm
        self._queued: list[Child] = []
        self._running: list[Child] = []

    def submit(self, call: ChildCall) -> Child:
        child = Child(call, warm=self.warm)
        self._queued.append(child)
        return child

    def run(self, call: ChildCall, should_abort: Callable[[], bool] = lambda: False) -> ChildResult:
        """One call, start to end."""
        return self.wait([self.submit(call)], should_abort)[0]

    def wait(self, handles: Sequence[Child], should_abort: Callable[[], bool] = lambda: False) -> list[ChildResult]:
        results: dict[int, ChildResult] = {}
        pending = {id(h): h for h in handles}
        for h in handles:
            h.should_abort = should_abort
        batch = len(handles) > 1  # a batch's members are shown per node (members.json); a lone child by live.json
        if batch:
            self._write_members(handles, results)
        poll = 0.002
        while pending:
            if self._fill() and batch:
                self._write_members(handles, results)
            # One child: block in its wait() (wakes the moment it exits); several: poll each, then sleep.
            block = poll if len(self._running) == 1 else 0.0
            for c in list(self._running):
                if c.poll(timeout=block):
                    self._running.remove(c)
                    res = c.finish()
                    if id(c) in pending:
                        results[id(c)] = res
                        del pending[id(c)]
                        if batch:
                            self._write_members([c], results)
                    poll = 0.002
            if pending and len(self._running) > 1:
                time.sleep(poll)
            poll = min(poll * 2, 0.05 if len(self._running) > 1 else 0.2)
        return [results[id(h)] for h in handles]

    def _fill(self) -> int:
        started = 0
        while self._queued and len(self._running) < self.parallel:
            c = self._queued.pop(0)
            call = c.call
            if call.budget_s is not None:  # the budget starts when the child does, not when it was queued
                call.deadline = time.time() + call.budget_s
                if "deadline" in call.args:
                    call.args["deadline"] = call.deadline
            self._running.append(c.start())
            started += 1
        return started

    def _write_members(self, handles: Sequence[Child], results: dict[int, ChildResult]) -> None:
        """`<iter dir>/members.json` (autoloop.members) for `autoloop status` and the dashboard: which
        members of the batch run on this machine now, since when, and which ended how."""
        from autoloop.members import write

        for it_dir in {h.call.work_dir for h in handles}:
            write(it_dir, {h.call.label or h.call.method: {
                "node": "", "executor": "local", "started": getattr(h, "start_t", None),
                "status": results[id(h)].status if id(h) in results
                else "running" if h in self._running else "queued"} for h in handles if h.call.work_dir == it_dir})

    def close(self) -> None:
        self._queued.clear()
        for c in self._running:
            c.status = c.status or "interrupted"
            kill_tree(c.proc.pid, c.known)
            c.proc.wait()
            c.finish()
        self._running.clear()
        close_warm()


def executor_factory(spec: str | None) -> Callable[..., Any]:
    """'local' (default), 'ray' or 'package.module:Class' -> the class; ValueError (one line, with the fix) if unusable."""
    if not spec or spec == "local":
        return LocalExecutor
    if spec == "ray":  # autoloop/ray_executor.py; Ray itself is the optional extra autoloop-engine[ray]
        from autoloop.ray_executor import RayExecutor

        return RayExecutor
    mod, _, cls = spec.partition(":")
    if not mod or not cls:
        raise ValueError(f"--executor {spec!r}: use 'local', 'ray' or 'package.module:Class'")
    try:
        factory = getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--executor {spec!r}: cannot import it ({e}); check the module is installed") from None
    for attr in ("submit", "wait", "close"):
        if not callable(getattr(factory, attr, None)):
            raise ValueError(f"--executor {spec!r}: {cls} has no {attr}(); see autoloop/executor.py for the interface")
    return factory


def make_executor(spec: str | None, parallel: int = 1, ray_address: str | None = None) -> Executor:
    """Build the executor a run asked for (`Settings.executor`, `--parallel`, `--ray-address`)."""
    if spec == "ray":
        return executor_factory(spec)(parallel=parallel, address=ray_address)
    return executor_factory(spec)(parallel=parallel)


def check_reachable(spec: str | None, ray_address: str | None = None) -> None:
    """Before a run writes anything: can its executor be used? ValueError (one line) if not (e.g. no Ray
    cluster answers at --ray-address)."""
    if spec == "ray":
        from autoloop.ray_executor import connect

        connect(ray_address)


# -- moving state by value (for executors whose children do not share this file system) ----------------
def pack(path: Path) -> bytes:
    """A directory (or one file) as gzip'd tar bytes, `.git` left out: the state, the gold set, an incumbent."""
    path = Path(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path)
                if rel.parts[0] in (".git", "state.git"):  # state.git: a run's repository (checkpoint.py)
                    continue
                tar.add(p, arcname=str(rel), recursive=False)
        else:
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, replace: bool = True) -> Path:
    """Unpack `pack` bytes into `dest`. With `replace`, files of `dest` the archive lacks are removed first
    (so a method that deleted a file has it deleted here too); `dest/.git` is always kept."""
    import shutil

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if replace:
        for p in dest.iterdir():
            if p.name != ".git":
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            tar.extractall(dest, filter="tar")  # nothing outside dest; absolute links kept (a state may link a dataset)
        except TypeError:  # Python without extraction filters (< 3.10.12)
            tar.extractall(dest)
    return dest
