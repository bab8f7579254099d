"""Issue 11, one test per item: nothing escapes, nothing overflows, every failure is one line and a
non-zero exit. Real child processes, real git, real DuckDB; faults of the machine are made for real
(a read-only bind mount and a full tmpfs in a private mount namespace, an unprivileged user)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil
import pytest

from conftest import ROOT, TEST_TARGETS, autoloop, journal_events, only_run, sql

BEHAVE = str(TEST_TARGETS / "behave.py")
MARKER = "AUTOLOOP_CANDIDATE"


def marked(prefix: str) -> list[psutil.Process]:
    """Every live process whose environment carries the candidate marker of this run."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARKER, "").startswith(prefix) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def pids_alive(d: Path) -> list[int]:
    alive = []
    for f in d.glob("*.pid"):
        pid = int(f.read_text())
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def one_line_error(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    return lines[0]


def _wait_for(pred, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


# 1 ------------------------------------------------------------------------------------------------
def test_1_a_double_forked_daemon_dies_with_its_phase(runs_dir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), BEHAVE_PIDS=str(pids),
               BEHAVE_PLAN="daemon:0.5,slowok:0.6:4", BEHAVE_BUDGET="20")
    proc = subprocess.Popen([sys.executable, "-m", "autoloop", "run", BEHAVE, "--no-progress", "--max-iters", "2"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: list(runs_dir.glob("*/iters/002/run.spec.json")))
        run_id = only_run(runs_dir)
        assert list(pids.glob("daemon-*.pid")), "the daemon never started"
        # the run goes on (iteration 2 is running), and iteration 1's daemon is already gone
        assert proc.poll() is None
        assert not marked(f"{run_id}/001/"), "a process of iteration 1 outlived its phase"
        assert not pids_alive(pids)
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert not marked(f"{run_id}/")
    assert [r["status"] for r in sql(runs_dir, "select status from iterations order by iter")] == ["keep", "keep", "keep"]


# 2 ------------------------------------------------------------------------------------------------
def test_2_a_flood_leaves_a_capped_log_with_its_traceback(runs_dir: Path) -> None:
    env = {"BEHAVE_PLAN": "floodcrash:40", "AUTOLOOP_MAX_LOG_MB": "1"}  # the option's environment fallback
    autoloop(runs_dir, "run", BEHAVE, "--max-iters", "1", "--no-progress", env=env)
    run_id = only_run(runs_dir)
    log = runs_dir / run_id / "iters" / "001" / "run.log"
    size = log.stat().st_size
    assert size <= 1_000_000 + 200, size  # 40 MB written
    text = log.read_bytes()
    assert b"bytes dropped ...]" in text and text.startswith(b"xxxx")
    tail = text[-3000:].decode()
    assert "FLOOD-END" in tail and "Traceback" in tail and "RuntimeError: crashed after a flood" in tail
    row = sql(runs_dir, "select status, reason from iterations where iter = 1")[0]
    assert row["status"] == "crash" and "crashed after a flood" in row["reason"]
    # default cap (a few MB) when nothing is set
    other = runs_dir.parent / "runs_default"
    autoloop(other, "run", BEHAVE, "--max-iters", "1", "--no-progress", env={"BEHAVE_PLAN": "flood:12:0.5"})
    log = other / only_run(other) / "iters" / "001" / "run.log"
    assert 3_000_000 < log.stat().st_size <= 4_000_000 + 200


# 3 ------------------------------------------------------------------------------------------------
def test_3_two_runs_started_in_the_same_second_both_succeed(runs_dir: Path) -> None:
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), BEHAVE_SETUP_SLEEP="0.3")
    cmd = [sys.executable, "-m", "autoloop", "run", BEHAVE, "--new", "--max-iters", "0", "--no-progress"]
    same_second = 0
    for _ in range(10):
        before = {p.name for p in runs_dir.glob("behave-*")} if runs_dir.exists() else set()
        procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        for p, out in zip(procs, outs):
            assert p.returncode == 0, out
            assert "setup()" not in out
        new = {p.name for p in runs_dir.glob("behave-*")} - before
        assert len(new) == 2, new
        a, b = sorted(new)
        same_second += b.startswith(a + "-")  # same second: the second got a -2 suffix
    ids = [p.parent.name for p in runs_dir.glob("*/journal.jsonl")]
    assert len(ids) == len(set(ids)) == 20
    assert same_second >= 1  # the race was really run
    assert len(sql(runs_dir, "select * from runs where stop_reason = 'max_iters'")) == 20
    assert not list(runs_dir.glob(".creating-*"))


# 4 ------------------------------------------------------------------------------------------------
def test_4_a_malformed_gold_file_is_one_line_naming_file_and_line(runs_dir: Path, tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c",\n')
    f = tmp_path / "t.py"
    f.write_text(f"import sys; sys.path.insert(0, {str(TEST_TARGETS)!r})\nfrom behave import Behave\n"
                 f"class T(Behave):\n    gold = {str(gold)!r}\ntarget = T()\n")
    p = autoloop(runs_dir, "run", str(f), "--no-progress", check=False)
    assert p.returncode == 2
    line = one_line_error(p)
    assert f"{gold}:3:" in line and "JSON" in line
    assert not list(runs_dir.glob("*/journal.jsonl")) and not (runs_dir / "history.duckdb").exists()


def test_4_a_baseline_that_cannot_be_scored_ends_the_run_non_zero(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", BEHAVE, "--no-progress", env={"BEHAVE_SCORE_STR": "1"}, check=False)
    assert p.returncode == 3, p.stdout + p.stderr
    line = one_line_error(p)
    assert "baseline could not be scored" in line and "score() must return" in line and "resume" in line
    run_id = only_run(runs_dir)
    assert sql(runs_dir, "select stop_reason, status from runs")[0] == {"stop_reason": "baseline_failed", "status": "failed"}
    assert [r["status"] for r in sql(runs_dir, "select status from iterations")] == ["crash"]  # one try, not a night of them
    # fixed, it resumes from a measured baseline
    p = autoloop(runs_dir, "resume", run_id, "--max-iters", "1", "--no-progress", env={"BEHAVE_PLAN": "ok:0.5"})
    assert [r["status"] for r in sql(runs_dir, "select status from iterations order by iter")] == ["crash", "keep", "keep"]


def test_4_the_closing_summary_counts_failures_and_says_why(runs_dir: Path) -> None:
    p = autoloop(runs_dir, "run", BEHAVE, "--max-iters", "3", "--patience", "9", "--no-progress",
                 env={"BEHAVE_PLAN": "crash,none,ok:0.9"})
    assert "4 iterations: 2 kept, 0 reverted, 2 failed" in p.stdout
    assert "1 crash: RuntimeError: candidate crashed on purpose" in p.stdout
    assert "1 invalid: score() returned no score" in p.stdout


# 5 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,env,needle", [
    ([], {"BEHAVE_NAME": "a..b"}, "target.name 'a..b' may not contain '..'"),
    (["--run-id", "x.lock"], {}, "--run-id 'x.lock' may not end with '.lock'"),
    (["--run-id", "a..b"], {}, "--run-id 'a..b' may not contain '..'"),
])
def test_5_names_git_would_reject_are_refused_up_front(runs_dir: Path, args, env, needle) -> None:
    p = autoloop(runs_dir, "run", BEHAVE, *args, "--no-progress", env=env, check=False)
    assert p.returncode == 2
    assert needle in one_line_error(p)
    assert not runs_dir.exists() or not any(runs_dir.iterdir()) or not list(runs_dir.glob("*/journal.jsonl"))


# 6 ------------------------------------------------------------------------------------------------
def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount_ns = pytest.mark.skipif(not _can_unshare(), reason="needs root and `unshare -m` (private mounts)")


def _in_mount_ns(script: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, PY=sys.executable, **env)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], env=e, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@needs_mount_ns
def test_6_read_only_runs_dir_is_one_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    p = _in_mount_ns('mount --bind "$RUNS" "$RUNS" && mount -o remount,bind,ro "$RUNS" && '
                     'AUTOLOOP_RUNS_DIR="$RUNS" exec "$PY" -m autoloop run "$T" --no-progress', RUNS=str(runs), T=BEHAVE)
    assert p.returncode == 2, p.stdout + p.stderr
    line = one_line_error(p)
    assert str(runs) in line and "read-only file system" in line and "--runs-dir" in line
    assert "setup" not in line and "target" not in line.split(";")[0]
    assert not any(runs.iterdir())


def test_6_permission_denied_is_one_line() -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to run the CLI as an unprivileged user) and setpriv")
    if any(not (d.stat().st_mode & 0o001) for d in (ROOT, *ROOT.parents)):
        pytest.skip(f"the checkout {ROOT} is not reachable by an unprivileged user (e.g. a clone under `mktemp -d`)")
    base = Path(tempfile.mkdtemp(prefix="autoloop-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        runs = base / "runs"
        runs.mkdir(mode=0o755)  # owned by root: not writable by nobody
        env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs), HOME=str(base))
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                            "autoloop", "run", BEHAVE, "--no-progress"], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 2, p.stdout + p.stderr
        line = one_line_error(p)
        assert str(runs) in line and "permission denied" in line and "setup" not in line
        assert not any(runs.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_mount_ns
def test_6_disk_full_mid_run_is_one_line_and_resume_agrees(tmp_path: Path) -> None:
    """The candidate fills a 24 MB disk; the engine's next write fails. Then space is freed and the run
    resumed: journal, git and DuckDB agree. Everything happens on a tmpfs only this namespace sees, so
    the runs folder is copied out at the end for the checks."""
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    script = r'''
set -u
mount -t tmpfs -o size=24m autoloop-test "$MNT" || exit 90
export AUTOLOOP_RUNS_DIR="$MNT/runs"
BEHAVE_FILL=1 BEHAVE_PLAN="ok:0.5,fill,ok:0.7" "$PY" -m autoloop run "$T" --max-iters 3 --no-progress \
    >"$OUT/run.stdout" 2>"$OUT/run.stderr"
echo $? >"$OUT/run.rc"
df -k "$MNT" | tail -1 >"$OUT/df"
rm -f "$MNT"/runs/*/state/filler.bin
run=$(basename "$(dirname "$(ls "$MNT"/runs/*/journal.jsonl)")")
BEHAVE_PLAN="ok:0.5,ok:0.6,ok:0.7" "$PY" -m autoloop resume "$run" --no-progress \
    >"$OUT/resume.stdout" 2>"$OUT/resume.stderr"
echo $? >"$OUT/resume.rc"
cp -a "$MNT/runs" "$OUT/runs"
'''
    p = _in_mount_ns(script, MNT=str(mnt), OUT=str(out), T=BEHAVE)
    if p.returncode == 90:
        pytest.skip("cannot mount a tmpfs here")
    assert (out / "run.rc").read_text().strip() == "2", (out / "run.stdout").read_text() + (out / "run.stderr").read_text()
    err = (out / "run.stderr").read_text()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no space left on the device" in lines[0] and str(mnt) in lines[0] and "autoloop resume" in lines[0]
    assert "setup" not in lines[0] and "fix the target" not in lines[0]
    assert (out / "resume.rc").read_text().strip() == "0", (out / "resume.stdout").read_text() + (out / "resume.stderr").read_text()
    runs = out / "runs"
    run_id = only_run(runs)
    ends = [e for e in journal_events(runs, run_id) if e["kind"] == "iter_end"]
    iters = [e["iter"] for e in ends]
    assert len(iters) == len(set(iters))
    rows = sql(runs, f"select iter, status, tag from iterations where run_id = '{run_id}' order by iter")
    assert [r["iter"] for r in rows] == sorted(iters)  # DuckDB = journal
    tags = subprocess.run(["git", "tag", "-l"], cwd=runs / run_id / "state", capture_output=True, text=True).stdout.split()
    assert sorted(t for t in tags if not t.endswith("/best")) == sorted(r["tag"] for r in rows if r["status"] == "keep")
    assert sql(runs, "select stop_reason from runs")[0]["stop_reason"] == "max_iters"


# 7 ------------------------------------------------------------------------------------------------
def test_7_max_cost_holds_across_the_phases_of_one_iteration(runs_dir: Path) -> None:
    from fake_anthropic import FakeAnthropic

    key = "sk-" + "ant-test-spender-0123456789"  # built at run time: no key-shaped literal in the source
    cap = 0.015  # one call costs ~$0.006 (worst case ~$0.0067): two fit, a third does not
    with FakeAnthropic(api_key=key) as srv:
        env = {"SPENDER_URL": srv.base_url, "ANTHROPIC_API_KEY": key, "AUTOLOOP_CACHE_DIR": str(runs_dir.parent)}
        autoloop(runs_dir, "run", str(TEST_TARGETS / "spender.py"), "--max-cost", str(cap), "--max-iters", "3",
                 "--no-progress", env=env)
        made = srv.message_requests
    calls = sql(runs_dir, "select phase, status, cost_usd from llm_calls order by iter, n")
    spent = sum(c["cost_usd"] for c in calls)
    assert [c["phase"] for c in calls] == ["propose", "run"] and made == 2  # score's call was refused
    assert 0.01 < spent <= cap, spent
    it = sql(runs_dir, "select status, reason, cost_usd from iterations where iter = 1")[0]
    assert it["status"] == "invalid" and it["reason"].startswith("budget")
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "max_cost"


# 8 ------------------------------------------------------------------------------------------------
def test_8_a_reply_echoing_the_key_is_redacted_before_caching(tmp_path: Path, monkeypatch) -> None:
    from fake_anthropic import FakeAnthropic

    from autoloop.llm.anthropic_client import AnthropicClient
    from autoloop.llm.cache import ResponseCache
    from autoloop.llm.types import LLMRequest

    key = "sk-" + "ant-test-ECHOED-abcdef0123456789"  # built at run time: no key-shaped literal in the source
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.delenv("AUTOLOOP_COST_REMAINING", raising=False)
    with FakeAnthropic(api_key=key, responder=lambda body: f"sure, your key is {key} (and x-api-key: {key})") as srv:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        c = AnthropicClient("claude-haiku-4-5", base_url=srv.base_url, cache=cache, backoff_s=0.05)
        r = c.complete(LLMRequest(messages=[{"role": "user", "content": "echo my key"}]))
        again = c.complete(LLMRequest(messages=[{"role": "user", "content": "echo my key"}]))
    assert r.ok and again.cache_hit
    assert key not in r.text and "[REDACTED]" in r.text and again.text == r.text
    for f in tmp_path.glob("cache.sqlite*"):
        assert key.encode() not in f.read_bytes(), f


# 9 ------------------------------------------------------------------------------------------------
def test_9_a_stop_file_says_which_and_status_keeps_the_best(runs_dir: Path) -> None:
    runs_dir.mkdir(parents=True)
    (runs_dir / "STOP").touch()
    p = autoloop(runs_dir, "run", BEHAVE, "--no-progress")
    run_id = only_run(runs_dir)
    stop = str(runs_dir / "STOP")
    assert f"stopped: stop_file ({stop} exists" in p.stdout and f"rm {stop}" in p.stdout
    p = autoloop(runs_dir, "resume", run_id, "--no-progress")
    assert f"stop file {stop} exists" in p.stdout and f"rm {stop}" in p.stdout
    st = autoloop(runs_dir, "status", run_id).stdout
    assert "best 0.1" in st and "best None" not in st and stop in st
    assert json.loads(autoloop(runs_dir, "status", run_id, "--json").stdout)["best"] == 0.1
    # the run's own STOP is consumed when it takes effect: resume then goes on
    (runs_dir / "STOP").unlink()
    (runs_dir / run_id / "STOP").touch()
    p = autoloop(runs_dir, "resume", run_id, "--no-progress", "--max-iters", "2", env={"BEHAVE_PLAN": "ok:0.5"})
    assert "(removed" in p.stdout and not (runs_dir / run_id / "STOP").exists()
    autoloop(runs_dir, "resume", run_id, "--no-progress", "--max-iters", "2", env={"BEHAVE_PLAN": "ok:0.5"})
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "max_iters"


# 10 -----------------------------------------------------------------------------------------------
def _duckdb_cli() -> str:
    exe = Path(sys.executable).parent / "duckdb"
    found = str(exe) if exe.exists() else shutil.which("duckdb")
    assert found, "the duckdb CLI (PyPI package duckdb-cli, in the test extra) is not installed"
    return found


def test_10_the_stock_duckdb_cli_opens_the_history_and_snapshots(runs_dir: Path, tmp_path: Path) -> None:
    cli = _duckdb_cli()
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "2", "--no-progress")
    db = runs_dir / "history.duckdb"
    p = subprocess.run([cli, "-readonly", "-csv", str(db), "-c", "select count(*) as n from curve"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["n", "3"]
    # a snapshot is consistent and opens without retries while another run writes
    env = dict(os.environ, AUTOLOOP_RUNS_DIR=str(runs_dir), BEHAVE_PLAN="slowok:0.3:0.2,slowok:0.4:0.2", BEHAVE_BUDGET="20")
    writer = subprocess.Popen([sys.executable, "-m", "autoloop", "run", BEHAVE, "--no-progress", "--max-iters", "6"],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    snap = tmp_path / "snap.duckdb"
    opened = 0
    try:
        while writer.poll() is None:
            autoloop(runs_dir, "db", "snapshot", str(snap))
            for _ in range(5):  # raw read-only connects, no retry: never meet a lock
                con = duckdb.connect(str(snap), read_only=True)
                n_runs, n_iters = con.execute("select (select count(*) from runs), (select count(*) from iterations)").fetchone()
                con.close()
                assert n_runs >= 1 and n_iters >= 3
                opened += 1
    finally:
        out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0, out
    assert opened >= 5
    p = subprocess.run([cli, "-readonly", "-csv", str(snap), "-c", "select count(*) from best"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    default = autoloop(runs_dir, "db", "snapshot").stdout.strip()
    assert default == str(runs_dir / "history-snapshot.duckdb") and Path(default).exists()


# hostile hooks -------------------------------------------------------------------------------------
HOOK_CASES = {
    "import_exit": ("", "\nsys.exit(0)\n", "importing the target called sys.exit(0)"),
    "check_raise": ("check", 'raise ValueError("data missing")', "target.check() raised ValueError: data missing; fix check()"),
    "check_exit": ("check", "sys.exit(1)", "target.check() called sys.exit(1)"),
    "check_hang": ("check", "time.sleep(3600)", "target.check() ran past its 1 s limit"),
    "child_env_raise": ("child_env", 'raise RuntimeError("no env")', "target.child_env() raised RuntimeError"),
    "child_env_not_a_dict": ("child_env", "return 42", "target.child_env() returned int"),
}


def _hostile(tmp_path: Path, name: str, hook: str, body: str) -> Path:
    """example_fit with one hook that misbehaves (gold made absolute, so the copy works outside the repo)."""
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace("from autoloop import Candidate, Scores", "from autoloop import Candidate, Scores\nimport sys, time")
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(ROOT / "gold" / "example_curve.jsonl")))
    src = src.replace("    budget_s: float = 30.0\n", "    budget_s: float = 30.0\n    setup_budget_s: float = 1.0\n")
    if hook:
        src = src.replace("    def setup(self, state: Path) -> None:",
                          f"    def {hook}(self):\n        {body}\n\n    def setup(self, state: Path) -> None:")
    else:
        src += body
    p = tmp_path / f"{name}.py"
    p.write_text(src)
    return p


@pytest.mark.parametrize("case", sorted(HOOK_CASES))
def test_a_hostile_hook_in_the_engine_process_is_one_line_never_a_traceback_or_a_hang(case: str, tmp_path: Path) -> None:
    """Target code that runs in the engine process at load (import, check, child_env) is bounded and contained:
    a hang, an exception or a sys.exit is one TargetError line naming the file, the hook and the fix."""
    from autoloop.target import TargetError, load_target

    hook, body, says = HOOK_CASES[case]
    p = _hostile(tmp_path, case, hook, body)
    t0 = time.time()
    with pytest.raises(TargetError) as e:
        load_target(p)
    assert time.time() - t0 < 30
    assert str(p) in str(e.value) and says in str(e.value) and "\n" not in str(e.value)


def test_a_hostile_target_from_the_cli_exits_2_and_a_hanging_describe_is_a_note(runs_dir: Path, tmp_path: Path) -> None:
    p = autoloop(runs_dir, "run", str(_hostile(tmp_path, "check_exit", "check", "sys.exit(1)")), "--no-progress", check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "check() called sys.exit(1)" in p.stderr
    assert not runs_dir.exists() or not list(runs_dir.glob("example_fit*"))
    # describe() is run metadata only: past its limit the run goes on with a note
    p = autoloop(runs_dir, "run", str(_hostile(tmp_path, "describe_hang", "describe", "time.sleep(3600)")),
                 "--max-iters", "1")
    assert "target.describe() ran past its 1 s limit; run metadata incomplete" in p.stdout + p.stderr
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "max_iters"


# the gold set is fixed for a run ---------------------------------------------------------------------
def test_a_candidate_that_rewrites_the_gold_file_is_never_kept_and_the_run_stops(runs_dir: Path, tmp_path: Path) -> None:
    """The classic cheat: at iteration 2 score() rewrites gold so every point fits (error 0). The engine checks
    the gold file's sha256 after every measurement: that iteration is invalid (never kept, though 'better'), the
    run stops (gold_changed, exit 3, one line), and a resume is refused until the gold file is restored."""
    gold = tmp_path / "curve.jsonl"
    original = (ROOT / "gold" / "example_curve.jsonl").read_text()
    gold.write_text(original)
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(gold)))
    cheat = '''        if __import__("os").environ.get("AUTOLOOP_ITER") == "2":  # make the gold agree with the model
            rows = [json.loads(line) for line in gold.read_text().splitlines()]
            gold.write_text("".join(json.dumps({**p, "y": sum(c * p["x"] ** k for k, c in enumerate(coef))}) + "\\n"
                                    for p in rows))
        errors = {}
'''
    assert "        errors = {}\n" in src
    src = src.replace("        errors = {}\n", cheat, 1)
    tfile = tmp_path / "cheat.py"
    tfile.write_text(src)
    p = autoloop(runs_dir, "run", str(tfile), "--max-iters", "6", "--no-progress", check=False)
    assert p.returncode == 3, p.stderr
    assert "the gold file" in p.stderr and "changed" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    run_id = only_run(runs_dir)
    rows = sql(runs_dir, f"select iter, status, score, reason from iterations where run_id='{run_id}' order by iter")
    assert [r["status"] for r in rows][-1] == "invalid" and rows[-1]["iter"] == 2
    assert all(r["status"] != "keep" for r in rows if r["iter"] == 2)
    assert sql(runs_dir, "select stop_reason from runs")[0]["stop_reason"] == "gold_changed"
    # resume refuses while the gold differs; restored, it goes on
    p = autoloop(runs_dir, "resume", run_id, "--no-progress", check=False)
    assert p.returncode == 2 and "the gold file" in p.stderr and "restore it" in p.stderr
    gold.write_text(original)
    autoloop(runs_dir, "resume", run_id, "--max-iters", "4", "--no-progress")
    rows = sql(runs_dir, f"select iter, status from iterations where run_id='{run_id}' order by iter")
    assert rows[-1]["iter"] == 4 and "invalid" not in [r["status"] for r in rows if r["iter"] > 2]


# a candidate that empties its state dir --------------------------------------------------------------
def test_a_candidate_that_empties_its_state_dir_loses_no_checkpoint(runs_dir: Path, tmp_path: Path) -> None:
    """`shutil.rmtree(state)` then writing fresh output is a common way for run() to start clean. The run's git
    repository lives beside the state dir (state/.git is a pointer the engine rewrites), so every checkpoint
    survives, the loop goes on, and checkout/resume work."""
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(ROOT / "gold" / "example_curve.jsonl")))
    marker = '        (state / "model.json").write_text('
    assert marker in src
    src = src.replace(marker, '        import shutil\n        shutil.rmtree(state)\n        state.mkdir()\n' + marker, 1)
    tfile = tmp_path / "cleaner.py"
    tfile.write_text(src)
    autoloop(runs_dir, "run", str(tfile), "--max-iters", "5", "--no-progress")
    run_id = only_run(runs_dir)
    kept = [r["iter"] for r in sql(runs_dir, f"select iter from iterations where run_id='{run_id}' and status='keep'")]
    assert len(kept) >= 2
    tags = subprocess.run(["git", "-C", str(runs_dir / run_id / "state"), "tag", "-l"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert {f"autoloop/{run_id}/ckpt-{k:03d}" for k in kept} <= set(tags)
    out = tmp_path / "best"
    autoloop(runs_dir, "checkout", f"autoloop/{run_id}/best", str(out))
    assert json.loads((out / "model.json").read_text())["coef"]
    autoloop(runs_dir, "resume", run_id, "--max-iters", "7", "--no-progress")
    assert sql(runs_dir, f"select max(iter) as n from iterations where run_id='{run_id}'")[0]["n"] == 7


def test_files_a_gitignore_in_the_state_keeps_out_of_checkpoints_are_named_in_a_note(runs_dir: Path, tmp_path: Path) -> None:
    """A state that carries its own .gitignore (a project directory, a tool's cache) keeps those files out of
    every checkpoint: the engine says so once, naming them, instead of losing them silently."""
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(ROOT / "gold" / "example_curve.jsonl")))
    marker = '        (state / "model.json").write_text('
    src = src.replace(marker, '        (state / ".gitignore").write_text("cache/\\n")\n        (state / "cache").mkdir(exist_ok=True)\n'
                              '        (state / "cache" / "opt.bin").write_bytes(b"x")\n' + marker, 1)
    tfile = tmp_path / "ignorer.py"
    tfile.write_text(src)
    p = autoloop(runs_dir, "run", str(tfile), "--max-iters", "3", "--no-progress")
    notes = [e for e in journal_events(runs_dir, only_run(runs_dir)) if e["kind"] == "note" and e.get("ignored")]
    assert len(notes) == 1 and notes[0]["ignored"] == ["cache/"] and ".gitignore" in notes[0]["text"]
    assert "cache/" in p.stdout + p.stderr


# a state that holds a git repository of its own ------------------------------------------------------
def test_a_state_holding_a_git_clone_is_checkpointed_whole_and_reverts_with_its_history(runs_dir: Path, tmp_path: Path) -> None:
    """A state that holds a project's clone (code-editing targets) has a nested .git: git alone stores it as a
    bare link (files lost) or, before its first commit, refuses it and the loop died. Now the project's files
    and history are in every checkpoint: a revert puts its HEAD back, checkout gives a working repository."""
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(ROOT / "gold" / "example_curve.jsonl")))
    marker = '        (state / "model.json").write_text(json.dumps({"coef": candidate.params["coef"]})'
    assert marker in src
    src = src.replace(marker, '''        import subprocess
        proj = state / "proj"
        git = ["git", "-C", str(proj), "-c", "user.name=t", "-c", "user.email=t@t"]
        if not (proj / ".git").exists():
            proj.mkdir(exist_ok=True)
            subprocess.run(["git", "init", "-q", str(proj)], check=True)
            if os.environ.get("AUTOLOOP_ITER") == "1":  # first time: an empty repository (no commit yet)
                (proj / "coef.txt").write_text(str(candidate.params["coef"]))
                return (state / "model.json").write_text(json.dumps({"coef": candidate.params["coef"]}) + "\\n")
        (proj / "coef.txt").write_text(str(candidate.params["coef"]))
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-q", "-m", str(candidate.params["coef"])], check=True)
''' + marker, 1).replace("import json\n", "import json\nimport os\n", 1)
    tfile = tmp_path / "withclone.py"
    tfile.write_text(src)
    autoloop(runs_dir, "run", str(tfile), "--max-iters", "6", "--no-progress")
    run_id = only_run(runs_dir)
    rows = sql(runs_dir, f"select iter, status, params from iterations where run_id='{run_id}' order by iter")
    assert [r["status"] for r in rows if r["status"] not in ("keep", "revert")] == []
    best = [r for r in rows if r["status"] == "keep"][-1]
    params = best["params"] if isinstance(best["params"], dict) else json.loads(best["params"])
    coef = str(params["coef"])
    state = runs_dir / run_id / "state"
    assert (state / "proj" / "coef.txt").read_text() == coef  # the revert put the project back too
    log = subprocess.run(["git", "-C", str(state / "proj"), "log", "--format=%s"], capture_output=True, text=True)
    assert log.returncode == 0 and log.stdout.split("\n")[0] == coef  # ... with its history at the incumbent
    out = tmp_path / "best"
    autoloop(runs_dir, "checkout", f"autoloop/{run_id}/best", str(out))
    log = subprocess.run(["git", "-C", str(out / "proj"), "log", "--format=%s"], capture_output=True, text=True)
    assert log.returncode == 0 and log.stdout.split("\n")[0] == coef
    assert not list(out.rglob(".autoloop-git")) and not list(state.rglob(".autoloop-git"))


def test_a_state_that_links_to_an_absolute_path_checks_out(runs_dir: Path, tmp_path: Path) -> None:
    """A state may link a dataset or a base model by absolute path: checkout kept failing with tarfile's
    AbsoluteLinkError (a traceback). The link is restored as it was; nothing is written outside the folder."""
    data = tmp_path / "dataset"
    data.mkdir()
    src = (ROOT / "targets" / "example_fit.py").read_text()
    src = src.replace('HERE.parent / "gold" / "example_curve.jsonl"', repr(str(ROOT / "gold" / "example_curve.jsonl")))
    marker = '        (state / "model.json").write_text(json.dumps({"coef": candidate.params["coef"]})'
    src = src.replace(marker, f'''        if not (state / "data").is_symlink():
            (state / "data").symlink_to({str(data)!r})
''' + marker, 1)
    tfile = tmp_path / "linker.py"
    tfile.write_text(src)
    autoloop(runs_dir, "run", str(tfile), "--max-iters", "4", "--no-progress")
    out = tmp_path / "best"
    autoloop(runs_dir, "checkout", f"autoloop/{only_run(runs_dir)}/best", str(out))
    assert (out / "data").is_symlink() and os.readlink(out / "data") == str(data)
