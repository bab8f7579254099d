"""The generic API target on a user's own service (a tiny stdlib app written here, started by command)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "targets"))

from api_demo.service import ServiceError  # noqa: E402

from autoloop.decide import decide  # noqa: E402
from autoloop.target import Candidate, TargetError, load_target  # noqa: E402

APP = r'''
import argparse, json, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs
ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int); ap.add_argument("--delay-ms", type=float); ap.add_argument("--mode")
a = ap.parse_args()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        u = urlsplit(self.path)
        if u.path == "/ready":
            body = b"{}"
        else:
            time.sleep(a.delay_ms / 1000)
            q = parse_qs(u.query).get("q", [""])[0]
            n = len(q) + (1 if a.mode == "wrong" and q.startswith("b") else 0)
            body = json.dumps({"q": q, "n": n}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *x): pass
ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()
'''


@pytest.fixture
def user(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    raw = tmp_path / "calls_raw.jsonl"
    raw.write_text("".join(json.dumps({"id": f"c{i}", "path": f"/items?q={w}"}) + "\n"
                           for i, w in enumerate(["apple", "banana", "cherry", "blue", "avocado"] * 6)))
    cls = type(load_target(ROOT / "targets" / "api_generic.py"))
    t = cls(name="my_api", command="{python} app.py --port {port} --delay-ms {delay_ms} --mode {mode}",
            health="http://127.0.0.1:{port}/ready", calls=raw, cwd=tmp_path, repeats=6,
            space={"delay_ms": ("float", 0.0, 50.0), "mode": ("cat", ["right", "wrong"])},
            baseline={"delay_ms": 20.0, "mode": "right"})
    from api_generic import record_expectations

    calls = record_expectations(t, t.baseline, raw, tmp_path / "calls.jsonl")
    t.gold = calls
    return t, tmp_path


def state(t, root: Path, name: str, params: dict) -> Path:
    d = root / name
    t.setup(d)
    t.run(Candidate(params=params), d, time.time() + 10)
    return d


def verdict(t, inc, cand):
    return decide(cand.score, inc.score, "min", cand_components=cand.components, inc_components=inc.components,
                  guards=t.guards, cand_items=cand.items, inc_items=inc.items, bootstrap=t.bootstrap)


def leftovers() -> list:
    """This test's app processes (and their guardians): their command lines hold app.py and --mode."""
    return [p for p in psutil.process_iter(["cmdline"])
            if "app.py" in (p.info["cmdline"] or []) and "--mode" in (p.info["cmdline"] or [])]


def test_faster_config_is_kept_wrong_one_rejected_nothing_left(user):
    t, root = user
    lines = [json.loads(x) for x in t.gold.read_text().splitlines()]
    assert all(len(c["expect"]) == 64 for c in lines)
    base = state(t, root, "a", {})
    fast = state(t, root, "b", {"delay_ms": 1.0})
    inc, cand = t.compare(base, fast, t.gold)
    assert inc.components["correctness"] == cand.components["correctness"] == 1.0
    d = verdict(t, inc, cand)
    assert d.keep, d.reason
    assert cand.info["config"] == "delay_ms=1.0" and cand.info["p95_ratio_ci"][1] < 0.90
    wrong = state(t, root, "c", {"delay_ms": 1.0, "mode": "wrong"})
    inc, cand = t.compare(base, wrong, t.gold)
    assert cand.components["correctness"] == pytest.approx(18 / 30)  # banana and blue answer wrong
    assert cand.info["screen"].startswith("screen: 12 wrong answers")  # no full comparison for it
    assert not verdict(t, inc, cand).keep
    assert not leftovers()


def test_template_and_health_errors(user, tmp_path):
    t, root = user
    cls = type(t)
    with pytest.raises(TargetError, match=r"command uses \{wrokers\}"):
        cls(name="x", command="srv --port {port} --w {wrokers}", calls=t.gold, space={"workers": ("int", 1, 4)},
            baseline={"workers": 1})
    with pytest.raises(TargetError, match="baseline"):
        cls(name="x", command="srv", calls=t.gold, space={"workers": ("int", 1, 4)}, baseline={"workers": 9})
    broken = cls(name="x", command="{python} -c 'import sys; sys.exit(3)' {port}", calls=t.gold,
                 space={"w": ("int", 1, 2)}, baseline={"w": 1}, start_timeout_s=10)
    s = state(broken, tmp_path, "s", {})
    with pytest.raises(ServiceError, match="exited with code 3"):
        broken.score(s, t.gold)


def test_the_documented_example_loads():
    t = load_target(ROOT / "targets" / "api_generic.py")
    assert t.name == "api_generic_demo" and t.direction == "min" and t.guards == {"correctness": 0.0}
    cmd = t.command_for(t.baseline, Path("."))
    assert "--set" in cmd and "workers=1" in cmd and "index_skill_level=false" in cmd
