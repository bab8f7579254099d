"""Children on a Ray cluster: `autoloop run T --executor ray --parallel N [--ray-address auto|HOST:PORT]`.

Behind the executor seam (autoloop/executor.py), each call (a batch member's run, a score) becomes one
Ray task that runs autoloop.remote_member on some worker: the same `sandbox.Child` as locally (own
process group, deadline counted on the worker, memory cap, SIGTERM, grace, SIGKILL of the tree). The task
asks Ray for `cpus_per_member` CPUs and, under a memory cap, for that much of Ray's `memory` resource, so
Ray never starts more members on a node than it has room for.

State moves by value through Ray's object store, never a shared file system (autoloop.shipment): the
target's folder, the state and the gold set as archives of their small files plus large files by
sha256, each put once per content (N members of an iteration, and the next iterations, share one copy);
the changed state comes back the same way before `wait` returns. The engine stays the only writer of the
journal, DuckDB and git: a worker only ever sees scratch copies.

Faults: a node that dies mid-member makes that member `crash` with the reason "node lost: ..." and the
others go on (tasks are never retried: a member runs at most once, so nothing is duplicated); a cluster
that cannot be reached is one line (RayUnavailable) before anything is written. Every result names the
node that ran it (`ChildResult.node`), and `in_flight()` says which members run where right now (written
to `<iter dir>/members.json` for `autoloop status` and the dashboard: autoloop.members).

Every node needs the same autoloop installed (`pip install "autoloop-engine[ray]"`); the target's own
imports must be installed there too.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from autoloop.members import MEMBERS_FILE
from autoloop.members import write as write_members
from autoloop.sandbox import ChildCall, ChildResult
from autoloop.shipment import DEFAULT_LARGE_BYTES, DigestCache, Parcel, apply_parcel, make_parcel

__all__ = ["MEMBERS_FILE", "RayExecutor", "RayUnavailable", "connect"]
CANCEL_GRACE_S = 15.0  # after a polite cancel, how long before the worker process is killed


class RayUnavailable(ValueError):
    """The cluster cannot be used (Ray missing, nothing answers at the address): one line, exit 2."""


def connect(address: str | None = None, probe_timeout_s: float = 5.0) -> str:
    """Join the cluster at `address` ("auto": the one running on this machine, or $RAY_ADDRESS) as a
    driver; never starts a cluster. Returns the address. RayUnavailable (one line, with the fix) if not."""
    address = address or os.environ.get("AUTOLOOP_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        import ray
    except ImportError:
        raise RayUnavailable('--executor ray: Ray is not installed; pip install "autoloop-engine[ray]"') from None
    remote = address != "auto" and not address.startswith("ray://")
    host, _, port = address.rpartition(":")
    if remote and (not host or not port.isdigit()):
        raise RayUnavailable(f"--ray-address {address!r}: give HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379) or 'auto'")
    if ray.is_initialized():
        return address
    if remote:
        # ray.init() retries an address where nothing answers for minutes: ask the port first.
        try:
            socket.create_connection((host, int(port)), timeout=probe_timeout_s).close()
        except OSError as e:
            raise RayUnavailable(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); "
                                 f"start one with `ray start --head` or give the head's HOST:PORT") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports leave this machine
    try:
        ray.init(address=address, namespace="autoloop", logging_level="ERROR", log_to_driver=False,
                 include_dashboard=False if address == "local" else None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RayUnavailable(f"--ray-address {address}: cannot join a Ray cluster ({first}); start one with "
                             f"`ray start --head`, or give the head's HOST:PORT") from None
    return address


@dataclass(eq=False)  # a handle is itself: compared by identity
class _Member:
    call: ChildCall  # as the engine made it (engine-side paths)
    gen: Any = None  # the task's ObjectRefGenerator once submitted
    node: str = ""
    node_id: str = ""
    started: float | None = None
    result: ChildResult | None = None
    cancelled_at: float | None = None
    blob_refs: dict = field(default_factory=dict)
    submitted: float | None = None


class RayExecutor:
    """The executor interface (parallel, submit, wait, close) on a Ray cluster."""

    def __init__(self, parallel: int = 1, address: str | None = None, cpus_per_member: float = 1.0,
                 large_bytes: int = DEFAULT_LARGE_BYTES):
        if not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel={parallel!r}: give a whole number >= 1")
        self.parallel = parallel
        self.address = connect(address)
        import ray

        self._ray = ray
        self._task = ray.remote(_task_body())
        self.cpus_per_member = float(cpus_per_member)
        self.large_bytes = int(large_bytes)
        self._digest = DigestCache()
        self._parcels: dict[tuple, tuple[Any, Parcel, dict[str, Path]]] = {}  # fingerprint -> (ref, parcel, sources)
        self._blobs: dict[str, Any] = {}  # sha256 -> ObjectRef: each large file put once
        self._queued: list[_Member] = []
        self._running: list[_Member] = []
        self.shipped_bytes = 0

    # -- the interface -----------------------------------------------------------------------------
    def submit(self, call: ChildCall) -> _Member:
        m = _Member(call)
        self._queued.append(m)
        return m

    def run(self, call: ChildCall, should_abort: Callable[[], bool] = lambda: False) -> ChildResult:
        return self.wait([self.submit(call)], should_abort)[0]

    def wait(self, handles: Sequence[_Member], should_abort: Callable[[], bool] = lambda: False) -> list[ChildResult]:
        ray = self._ray
        try:
            while any(h.result is None for h in handles):
                self._fill()
                if should_abort():
                    for m in self._running:
                        if m in handles:
                            self._cancel(m)
                for m in list(self._queued):
                    if m in handles and should_abort():
                        self._queued.remove(m)
                        m.result = ChildResult(status="interrupted", error=f"{m.call.method} interrupted by the user")
                gens = [m.gen for m in self._running]
                if not gens:
                    time.sleep(0.05)
                    continue
                ready, _ = ray.wait(gens, num_returns=1, timeout=0.2)
                for m in [m for m in self._running if any(m.gen is g for g in ready)]:
                    self._step(m)
                for m in self._running:
                    if m.cancelled_at and time.time() - m.cancelled_at > CANCEL_GRACE_S:
                        with contextlib.suppress(Exception):
                            ray.cancel(m.gen, force=True)
        finally:
            self._write_members([h for h in handles])
        return [h.result for h in handles]

    def close(self) -> None:
        """End what is still running (an aborted batch); the connection stays for the process's life."""
        for m in list(self._running):
            self._cancel(m, force=True)
        self._queued.clear()
        self._running.clear()

    def in_flight(self) -> dict[str, list[str]]:
        """Node -> labels of the members running there now ("(starting)" before a node has taken them)."""
        out: dict[str, list[str]] = {}
        for m in self._running:
            out.setdefault(m.node or "(starting)", []).append(m.call.label or m.call.method)
        return out

    # -- submitting --------------------------------------------------------------------------------
    def _fill(self) -> None:
        while self._queued and len(self._running) < self.parallel:
            m = self._queued.pop(0)
            self._start(m)
            if m.result is None:
                self._running.append(m)
            self._write_members([m])

    def _no_room(self, call: ChildCall) -> str:
        """Why no live node could ever take this call (Ray would queue it forever), or ""."""
        need_mem = float(call.memory_cap_mb or 0) * 1e6
        try:
            nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        except Exception:  # noqa: BLE001 - cannot tell: let Ray schedule it
            return ""
        if any(r.get("CPU", 0) >= self.cpus_per_member and r.get("memory", 0) >= need_mem for r in nodes):
            return ""
        biggest = max(nodes, key=lambda r: r.get("memory", 0), default={})
        return (f"{call.method}: no node of the Ray cluster has {self.cpus_per_member:g} CPU and "
                f"{need_mem / 1e6:.0f} MB of Ray memory (largest: {biggest.get('CPU', 0):g} CPU, "
                f"{biggest.get('memory', 0) / 1e6:.0f} MB); lower --memory-cap-mb or add a node")

    def _start(self, m: _Member) -> None:
        call = m.call
        room = self._no_room(call)
        if room:
            m.result = ChildResult(status="crash", error=room)
            return
        parcel_refs, blob_refs = {}, {}
        for key, path in [("__target__", Path(call.target_path).parent), *((k, Path(call.args[k])) for k in call.paths)]:
            parcel_refs[key], blobs = self._put_parcel(path, target=key == "__target__")
            blob_refs.update(blobs)
        m.blob_refs = blob_refs
        options: dict[str, Any] = {"num_cpus": self.cpus_per_member, "max_retries": 0, "retry_exceptions": False}
        if call.memory_cap_mb:
            options["memory"] = int(float(call.memory_cap_mb) * 1e6)  # Ray schedules no more than fits
        m.gen = self._task.options(**options).remote(self._spec(call), parcel_refs, blob_refs)
        m.submitted = time.time()

    def _spec(self, call: ChildCall) -> dict:
        budget = call.budget_s if call.budget_s is not None else max(0.0, call.deadline - time.time())
        return {"target_name": Path(call.target_path).name, "method": call.method, "args": call.args,
                "paths": list(call.paths), "writes": list(call.writes), "budget_s": float(budget),
                "memory_cap_mb": call.memory_cap_mb, "env": dict(call.env), "label": call.label or call.method,
                "marker": call.marker, "log_cap_bytes": call.log_cap_bytes, "large_bytes": self.large_bytes}

    def _put_parcel(self, path: Path, target: bool = False) -> tuple[Any, dict[str, Any]]:
        """The ObjectRef of a parcel of `path`, put once per content (N members share one copy), and the
        ObjectRefs of the large files it names ({sha256: ref})."""
        # By content, not path: the N members' copies of one incumbent state are one parcel.
        key = (target, path.is_file(), _fingerprint(path, target))
        hit = self._parcels.pop(key, None)
        if hit is not None:
            self._parcels[key] = hit  # most recently used last: eviction takes the oldest
        else:
            skip = {".git", "__pycache__", "runs", ".venv", "node_modules"} if target else {".git", "state.git", "__pycache__"}
            parcel, sources = make_parcel(path, self.large_bytes, self._digest, skip_dirs=skip)
            ref = self._ray.put(parcel)
            self.shipped_bytes += parcel.nbytes()
            for sha, src in sources.items():
                if sha not in self._blobs:
                    self._blobs[sha] = self._ray.put(src.read_bytes())
                    self.shipped_bytes += src.stat().st_size
            hit = self._parcels[key] = (ref, parcel, sources)
        blobs = {sha: self._blobs[sha] for sha in hit[1].large.values()}
        self._evict()
        return hit[0], blobs

    def _evict(self, keep: int = 8) -> None:
        """Keep the newest few parcels and the large files they name: an old state is not asked for again,
        and a long run must not fill the object store with every checkpoint's weights. (Members in flight
        hold their own references, so Ray keeps what they still need.)"""
        while len(self._parcels) > keep:
            self._parcels.pop(next(iter(self._parcels)))
        live = {sha for _, parcel, _ in self._parcels.values() for sha in parcel.large.values()}
        for sha in [s for s in self._blobs if s not in live]:
            del self._blobs[sha]

    # -- results -----------------------------------------------------------------------------------
    def _step(self, m: _Member) -> None:
        ray = self._ray
        try:
            msg = ray.get(next(m.gen))
        except StopIteration:
            if m.cancelled_at is not None:  # cancelled while paused at a yield: Ray closes the generator, no error
                self._finish(m, ChildResult(status="interrupted", error=f"{m.call.method} interrupted by the user",
                                            node=m.node))
            else:
                self._finish(m, ChildResult(status="crash", error=f"{m.call.method}: the Ray task ended without a result"))
            return
        except Exception as e:  # noqa: BLE001 - whatever Ray raises is this member's outcome
            self._finish(m, self._failure(m, e))
            return
        if "started" in msg:
            info = msg["started"]
            m.node, m.node_id, m.started = info.get("node", ""), info.get("node_id", ""), time.time()
            self._write_members([m])
        elif "progress" in msg:
            self._write_progress(m, msg["progress"])
        elif "result" in msg:
            self._finish(m, self._bring_back(m, msg["result"]))

    def _finish(self, m: _Member, res: ChildResult) -> None:
        res.node = res.node or m.node
        m.result = res
        if m in self._running:
            self._running.remove(m)
        self._write_members([m])

    def _failure(self, m: _Member, e: Exception) -> ChildResult:
        ray = self._ray
        method = m.call.method
        if m.cancelled_at is not None or isinstance(e, ray.exceptions.TaskCancelledError):
            return ChildResult(status="interrupted", error=f"{method} interrupted by the user", node=m.node)
        if isinstance(e, ray.exceptions.NodeDiedError):
            node = m.node or _node_from_message(str(e))
            # The last line is the iteration's reason.
            return ChildResult(status="crash", node=node,
                               error=f"{str(e).strip()}\nnode lost: {node or 'a node'} died while running {m.call.label or method}")
        if isinstance(e, getattr(ray.exceptions, "OutOfMemoryError", ())):
            return ChildResult(status="oom", node=m.node, error=f"{str(e).strip()}\n{method}: Ray's memory monitor killed the worker")
        if isinstance(e, ray.exceptions.WorkerCrashedError):
            if m.node_id and not self._node_alive(m.node_id):
                return ChildResult(status="crash", node=m.node,
                                   error=f"{str(e).strip()}\nnode lost: {m.node} died while running {m.call.label or method}")
            return ChildResult(status="crash", node=m.node, error=f"{str(e).strip()}\n{method}: the Ray worker process died")
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        return ChildResult(status="crash", node=m.node,
                           error=f"{e}\n{method}: Ray could not run it on {m.node or 'the cluster'} ({type(e).__name__}: {first}); "
                                 f"is the same autoloop installed on every node?")

    def _node_alive(self, node_id: str) -> bool:
        with contextlib.suppress(Exception):
            return any(n["NodeID"] == node_id and n["Alive"] for n in self._ray.nodes())
        return True

    def _bring_back(self, m: _Member, r: dict) -> ChildResult:
        call = m.call
        new_blobs: dict[str, bytes] = r.get("blobs") or {}

        def fetch(sha: str) -> bytes:
            if sha in new_blobs:
                return new_blobs[sha]
            ref = m.blob_refs.get(sha) or self._blobs.get(sha)
            if ref is not None:
                return self._ray.get(ref)
            raise KeyError(f"large file {sha} came back from {m.node} without its content")

        for key, parcel in (r.get("writes") or {}).items():
            apply_parcel(parcel, Path(call.args[key]), fetch, self._digest)
        call.work_dir.mkdir(parents=True, exist_ok=True)
        label = call.label or call.method
        log_path = call.work_dir / f"{label}.log"
        log_path.write_bytes(r.get("log") or b"")
        self._write_progress(m, r.get("progress") or {})
        iter_dir = call.env.get("AUTOLOOP_ITER_DIR")
        if r.get("llm_calls") and iter_dir:
            from autoloop.context import LLM_CALLS_FILE

            with open(Path(iter_dir) / LLM_CALLS_FILE, "ab") as out:
                out.write(r["llm_calls"])
        return ChildResult(status=r["status"], value=r.get("value"), error=r.get("error") or "",
                           peak_rss_mb=float(r.get("peak_rss_mb") or 0.0), duration_s=float(r.get("duration_s") or 0.0),
                           method_s=r.get("method_s"), log_path=log_path, node=r.get("node") or m.node)

    def _cancel(self, m: _Member, force: bool = False) -> None:
        if m.result is not None or m.gen is None:
            return
        if m.cancelled_at is None or force:
            m.cancelled_at = m.cancelled_at or time.time()
            with contextlib.suppress(Exception):
                self._ray.cancel(m.gen, force=force)
        if force:
            self._finish(m, ChildResult(status="interrupted", error=f"{m.call.method} interrupted", node=m.node))

    # -- what `status` reads -----------------------------------------------------------------------
    def _write_progress(self, m: _Member, files: dict[str, str]) -> None:
        iter_dir = m.call.env.get("AUTOLOOP_ITER_DIR")
        if not files or not iter_dir:
            return
        for name, text in files.items():
            p = Path(iter_dir) / Path(name).name
            tmp = p.with_name(p.name + ".tmp")
            with contextlib.suppress(OSError):
                tmp.write_text(text)
                os.replace(tmp, p)

    def _write_members(self, members: Sequence[_Member]) -> None:
        """`<iter dir>/members.json` (autoloop.members): every member of the iteration, where it runs and
        whether it ended."""
        for it_dir in {m.call.work_dir for m in members}:
            write_members(Path(it_dir), {
                m.call.label or m.call.method: {
                    "node": m.node, "started": m.started, "executor": "ray",
                    "status": m.result.status if m.result else ("running" if m.started else "queued")}
                for m in [*self._running, *members] if m.call.work_dir == it_dir})


def _task_body():
    from autoloop.remote_member import ray_task

    return ray_task


def _fingerprint(path: Path, target: bool) -> tuple:
    """Cheap content identity of a folder: (name, size, mtime) of every file; a change means a new parcel."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    skip = {".git", "__pycache__", "runs", ".venv", "node_modules"} if target else {".git", "state.git", "__pycache__"}
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(dirpath, name))
                out.append((os.path.relpath(os.path.join(dirpath, name), path), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _node_from_message(text: str) -> str:
    m = re.search(r"node ID: ([0-9a-f]+)", text)
    ip = re.search(r"Node IP: ([0-9.:a-f]+)", text)
    if not m:
        return ""
    return f"{ip.group(1) if ip else '?'}/{m.group(1)[:8]}"
