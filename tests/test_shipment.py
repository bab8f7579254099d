"""State by value without a shared file system (autoloop.shipment) and the worker's side of a remote
member (autoloop.remote_member), without a cluster: real files, real child processes."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from autoloop.remote_member import run_member
from autoloop.shipment import DigestCache, apply_parcel, make_parcel, sha256_of
from conftest import TEST_TARGETS

SLEEPER = TEST_TARGETS / "sleeper.py"
MB = 1_000_000


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_large_files_travel_by_digest_small_ones_in_the_archive(tmp_path: Path) -> None:
    weights = os.urandom(2 * MB)
    src = _tree(tmp_path / "src", {"a.txt": b"A", "sub/b.txt": b"B", "w/model.bin": weights, ".git/HEAD": b"x"})
    parcel, sources = make_parcel(src, large_bytes=MB)
    sha = sha256_of(src / "w" / "model.bin")
    assert parcel.large == {"w/model.bin": sha} and set(sources) == {sha}
    assert parcel.nbytes() < 10_000  # the 2 MB file is not in the archive
    fetched = []

    def fetch(s: str) -> bytes:
        fetched.append(s)
        return sources[s].read_bytes()

    dest = _tree(tmp_path / "dest", {"stale.txt": b"gone", ".git/keep": b"mine", "emptied/x": b"1"})
    assert apply_parcel(parcel, dest, fetch) == dest
    assert (dest / "a.txt").read_bytes() == b"A" and (dest / "sub" / "b.txt").read_bytes() == b"B"
    assert (dest / "w" / "model.bin").read_bytes() == weights and fetched == [sha]
    assert not (dest / "stale.txt").exists() and not (dest / "emptied").exists()
    assert (dest / ".git" / "keep").read_bytes() == b"mine" and not (dest / ".git" / "HEAD").exists()
    # Applied again over itself: the large file is already there with the right digest, nothing fetched.
    apply_parcel(parcel, dest, fetch)
    assert fetched == [sha]


def test_a_single_file_parcel_and_the_digest_cache(tmp_path: Path) -> None:
    gold = _tree(tmp_path, {"gold.jsonl": b'{"id": 1}\n'}) / "gold.jsonl"
    parcel, _ = make_parcel(gold)
    assert apply_parcel(parcel, tmp_path / "out", lambda s: b"") == tmp_path / "out" / "gold.jsonl"
    assert (tmp_path / "out" / "gold.jsonl").read_bytes() == b'{"id": 1}\n'
    cache = DigestCache()
    assert cache(gold) == sha256_of(gold) == cache(gold)


def _spec(tmp: Path, sleep: float, budget: float) -> tuple[dict, dict]:
    state = _tree(tmp / "state", {"value.txt": b"0.1\n", "gone.txt": b"x\n", "w.bin": os.urandom(MB + 1)})
    spec = {"target_name": SLEEPER.name, "method": "run",
            "args": {"candidate": {"params": {"sleep": sleep, "value": 0.7}}, "state": str(state), "deadline": 0},
            "paths": ["state"], "writes": ["state"], "budget_s": budget, "memory_cap_mb": None,
            "env": {"AUTOLOOP_ITER_DIR": "/nonexistent/engine/path", "AUTOLOOP_PHASE": "run"}, "label": "run.m0",
            "marker": f"test-{os.getpid()}/001/run.m0", "log_cap_bytes": 4 * MB, "large_bytes": MB}
    target, tsrc = make_parcel(SLEEPER.parent, MB)
    st, ssrc = make_parcel(state, MB)
    blobs = {**tsrc, **ssrc}
    return spec, {"__target__": target, "state": st, "_fetch": lambda s: blobs[s].read_bytes()}


def test_a_member_runs_in_scratch_and_sends_its_state_back(tmp_path: Path) -> None:
    os.environ["AUTOLOOP_SCRATCH"] = str(tmp_path)
    try:
        spec, parcels = _spec(tmp_path, 0.0, 20)
        fetch = parcels.pop("_fetch")
        msgs = list(run_member(spec, parcels, fetch, {"node": "here/0"}))
    finally:
        os.environ.pop("AUTOLOOP_SCRATCH")
    assert msgs[0] == {"started": {"node": "here/0"}}
    r = msgs[-1]["result"]
    assert r["status"] == "ok", r["error"]
    assert r["node"] == "here/0" and r["blobs"] == {}  # the unchanged large file is not sent back
    out = tmp_path / "back"
    apply_parcel(r["writes"]["state"], out, fetch)
    assert (out / "value.txt").read_text().strip() == "0.7" and not (out / "gone.txt").exists()
    assert (out / "w.bin").stat().st_size == MB + 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("autoloop-member-")] == []  # scratch removed


def test_the_deadline_is_enforced_where_the_member_runs(tmp_path: Path) -> None:
    spec, parcels = _spec(tmp_path, 30.0, 1.5)
    fetch = parcels.pop("_fetch")
    t0 = time.time()
    r = list(run_member(spec, parcels, fetch, {"node": "here/0"}))[-1]["result"]
    assert r["status"] == "timeout" and time.time() - t0 < 15
    left = [p for p in psutil.process_iter(["environ"]) if (p.info["environ"] or {}).get("AUTOLOOP_CANDIDATE") == spec["marker"]]
    assert left == []


def test_a_remote_members_progress_is_streamed_while_it_runs(tmp_path: Path) -> None:
    """The engine learns how far a member on another machine has got before it ends (`status -f`)."""
    import json

    state = _tree(tmp_path / "state", {"steps.txt": b"0\n"})
    spec = {"target_name": "reporter.py", "method": "run", "args": {"candidate": {"params": {}}, "state": str(state),
            "deadline": 0}, "paths": ["state"], "writes": ["state"], "budget_s": 30, "memory_cap_mb": None,
            "env": {"AUTOLOOP_PHASE": "run", "AUTOLOOP_PROGRESS_MIN_S": "0"}, "label": "run", "marker": "",
            "log_cap_bytes": MB, "large_bytes": MB}
    parcels = {"__target__": make_parcel(TEST_TARGETS, MB)[0], "state": make_parcel(state, MB)[0]}
    msgs = list(run_member(spec, parcels, lambda s: b"", {"node": "here/0"}))
    live = [m["progress"] for m in msgs if "progress" in m]
    assert live and "run.progress.json" in live[0]  # at least one report arrived before the result
    assert json.loads(live[0]["run.progress.json"])["unit"] == "steps"
    r = msgs[-1]["result"]
    assert r["status"] == "ok", r["error"]
    out = tmp_path / "back"
    apply_parcel(r["writes"]["state"], out, lambda s: b"")
    assert (out / "steps.txt").read_text().strip() == "3"
