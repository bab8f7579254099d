"""What a cluster worker does with one call (a batch member's run, a score): unpack, run, pack back.

The call arrives by value (autoloop.shipment parcels: the target's folder and every path the call reads),
is unpacked into a private scratch folder, and runs through the same `sandbox.Child` as on the engine's
machine: its own process group, the deadline counted from here (so clocks need not agree), the memory
cap, SIGTERM, a grace, SIGKILL of the tree, the reaper's sweep. If this worker process dies (its node is
lost, the engine cancelled it), the child sees its parent go and ends its tree (autoloop.child).

It reports as a generator of small dicts, so the engine learns where a member runs before it ends:

    {"started": {"node": "host/1a2b3c4d", "node_id": ..., "host": ..., "pid": ..., "autoloop": version}}
    {"progress": {"run.progress.json": "<text>"}}          # whenever the child's progress file changes
    {"result": {...ChildResult fields..., "writes": {key: Parcel}, "blobs": {sha256: bytes},
                "log": bytes, "llm_calls": bytes}}

Nothing here imports Ray at module level: `run_member` is plain Python (tested without a cluster);
`ray_task` is the body Ray runs (autoloop.ray_executor wraps it with `ray.remote`).
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from autoloop import reaper, sandbox
from autoloop.context import LLM_CALLS_FILE
from autoloop.shipment import DigestCache, Parcel, apply_parcel, make_parcel, remove_tree

PROGRESS_EVERY_S = 1.0


def run_member(spec: dict, parcels: dict[str, Parcel], fetch: Callable[[str], bytes], node: dict,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Run one call described by `spec` (see RayExecutor._spec) with its inputs from `parcels`."""
    yield {"started": node}
    scratch = Path(tempfile.mkdtemp(prefix="autoloop-member-", dir=os.environ.get("AUTOLOOP_SCRATCH") or None))
    try:
        yield from _run(spec, parcels, fetch, scratch, node, should_stop)
    finally:
        remove_tree(scratch)


def _run(spec: dict, parcels: dict[str, Parcel], fetch, scratch: Path, node: dict, should_stop) -> Iterator[dict]:
    digest = DigestCache()
    target_dir = apply_parcel(parcels["__target__"], scratch / "target", fetch, digest)
    args = dict(spec["args"])
    inputs: dict[str, str] = {}  # large files this member was given: it need not send them back
    for key in spec["paths"]:
        args[key] = str(apply_parcel(parcels[key], scratch / "in" / key, fetch, digest))
        inputs.update({sha: rel for rel, sha in parcels[key].large.items()})
    iter_dir = scratch / "iter"
    iter_dir.mkdir()
    env = dict(spec["env"])
    env["AUTOLOOP_ITER_DIR"] = str(iter_dir)
    budget = float(spec["budget_s"])
    deadline = time.time() + budget  # counted on this machine, from now: clocks need not agree
    if "deadline" in args:
        args["deadline"] = deadline
    call = sandbox.ChildCall(target_path=target_dir / spec["target_name"], method=spec["method"], args=args,
                             deadline=deadline, work_dir=scratch / "work", env=env,
                             memory_cap_mb=spec.get("memory_cap_mb"), label=spec["label"], marker=spec["marker"],
                             log_cap_bytes=int(spec["log_cap_bytes"]), budget_s=budget)
    reaper.become_subreaper()  # orphans of the child re-parent here, where the sweep finds them
    child = sandbox.Child(call).start()
    seen: dict[str, float] = {}
    last = 0.0
    poll = 0.002
    try:
        while not child.poll(timeout=poll):
            poll = min(poll * 2, 0.2)
            if should_stop():
                child.status = "interrupted"
                sandbox.kill_tree(child.proc.pid, child.known)
                child.proc.wait()
                break
            if time.time() - last >= PROGRESS_EVERY_S:
                last = time.time()
                if changed := _progress(iter_dir, seen):
                    yield {"progress": changed}
    except BaseException:  # cancelled (KeyboardInterrupt from ray.cancel): the child goes with us
        child.status = child.status or "interrupted"
        sandbox.kill_tree(child.proc.pid, child.known)
        child.proc.wait()
        child.finish()
        raise
    res = child.finish()
    writes: dict[str, Parcel] = {}
    blobs: dict[str, bytes] = {}
    for key in spec["writes"]:  # as locally, a failed member's state comes back too (the engine commits it aside)
        parcel, sources = make_parcel(Path(args[key]), int(spec["large_bytes"]), digest)
        writes[key] = parcel
        blobs.update({sha: p.read_bytes() for sha, p in sources.items() if sha not in inputs})
    calls = iter_dir / LLM_CALLS_FILE
    yield {"result": {
        "status": res.status, "value": res.value, "error": res.error, "peak_rss_mb": res.peak_rss_mb,
        "duration_s": res.duration_s, "method_s": res.method_s, "node": node.get("node", ""),
        "writes": writes, "blobs": blobs, "progress": _progress(iter_dir, seen),
        "log": res.log_path.read_bytes() if res.log_path and res.log_path.exists() else b"",
        "llm_calls": calls.read_bytes() if calls.exists() else b"",
    }}


def _progress(iter_dir: Path, seen: dict[str, float]) -> dict[str, str]:
    out = {}
    for p in iter_dir.glob("*.progress.json"):
        try:
            m = p.stat().st_mtime_ns
            if seen.get(p.name) != m:
                seen[p.name] = m
                out[p.name] = p.read_text()
        except OSError:
            pass
    return out


def node_info() -> dict[str, Any]:
    """Who runs this member: the name history records ("host/node-id prefix"), for `status` and the table."""
    import autoloop

    node_id = ""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id() or ""
    except Exception:  # noqa: BLE001 - outside Ray (tests of run_member): no node id
        pass
    host = socket.gethostname()
    return {"node": f"{host}/{node_id[:8]}" if node_id else host, "node_id": node_id, "host": host,
            "pid": os.getpid(), "autoloop": getattr(autoloop, "__version__", "")}


def ray_task(spec: dict, parcel_refs: dict, blob_refs: dict) -> Iterator[dict]:
    """The body of the Ray task (a streaming generator): fetch the inputs from the object store, run."""
    import ray

    parcels = {k: ray.get(ref) for k, ref in parcel_refs.items()}

    def fetch(sha: str) -> bytes:
        if sha not in blob_refs:
            raise KeyError(f"large file {sha} was not shipped with this member")
        return ray.get(blob_refs[sha])

    ctx = ray.get_runtime_context()
    canceled = getattr(ctx, "is_canceled", None)

    def should_stop() -> bool:
        # ray.cancel raises KeyboardInterrupt in the worker's main thread, which need not be the one running
        # this generator; the flag is what every case sets (seen: a cancelled member ran its child to the end).
        try:
            return bool(canceled and canceled())
        except Exception:  # noqa: BLE001 - a Ray without the flag: KeyboardInterrupt is all we have
            return False

    yield from run_member(spec, parcels, fetch, node_info(), should_stop=should_stop)
