"""Which members of an iteration run where right now: `<iter dir>/members.json`.

The executor writes it (the Ray executor for every call, the local one for a batch of several members);
`autoloop status` and the dashboard read it, so both show the same members on the same nodes. It is a
scratch file of the iteration in flight, not history: where each member ran ends up in `trials.node`.

    {"run.m0": {"node": "host/1a2b3c4d", "started": 1764712345.6, "executor": "ray", "status": "running"}, ...}

`status` is "queued" (submitted, no slot or node yet), "running", or the member's outcome once it ended.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

MEMBERS_FILE = "members.json"
IN_FLIGHT = ("running", "queued")
THIS_MACHINE = "this machine"  # the node the local executor's members run on


def write(it_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Merge `entries` (label -> {node, started, executor, status}) into `<it_dir>/members.json`, atomically
    (a reader sees the old file or the new one, never half of one). Best effort: a full disk costs the live
    view, never the iteration."""
    path = Path(it_dir) / MEMBERS_FILE
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        doc = {}
    doc.update(entries)
    with contextlib.suppress(OSError):
        Path(it_dir).mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)


def in_flight(run_dir: Path, it: int | None, now: float | None = None) -> list[dict[str, Any]]:
    """The members of iteration `it` running or queued now, one row each, running ones first, by node then member:
    {"node", "label", "member", "phase", "status", "started", "elapsed_s"}. `member` is the batch member
    ("m1"; "" for a lone call), `phase` the method it runs (run, score), `elapsed_s` since it started there."""
    if it is None:
        return []
    try:
        doc = json.loads((Path(run_dir) / "iters" / f"{int(it):03d}" / MEMBERS_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return []
    now = time.time() if now is None else now
    rows = []
    for label, m in doc.items():
        if not isinstance(m, dict) or m.get("status") not in IN_FLIGHT:
            continue
        phase, _, member = str(label).partition(".")
        started = m.get("started") if m.get("status") == "running" else None
        rows.append({"node": node_name(m), "label": label, "member": member, "phase": phase,
                     "status": m["status"], "started": started,
                     "elapsed_s": round(max(0.0, now - float(started)), 1) if started else None})
    return sorted(rows, key=lambda r: (r["status"] == "queued", r["node"], r["member"], r["label"]))


def node_name(m: dict[str, Any]) -> str:
    """What to call the node of one entry: the Ray node's host/id, this machine, or where it waits."""
    if m.get("node"):
        return str(m["node"])
    if m.get("executor") == "local":
        return THIS_MACHINE if m.get("status") != "queued" else "(waiting for a slot)"
    return "(waiting for a node)"


def by_node(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Node -> labels of its members in flight (what `autoloop status` prints)."""
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["node"], []).append(r["label"])
    return out
