"""`autoloop eval`: any checkpoint (tag, run, folder) on any gold file, recorded as an evaluation, not an
iteration; sealed splits are never scored by the loop. Real runs, real git, real DuckDB, real children."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import ROOT, autoloop, only_run, sql


def _run_example(runs_dir: Path) -> str:
    autoloop(runs_dir, "run", "targets/example_fit.py", "--max-iters", "4", "--no-progress")
    return only_run(runs_dir)


def test_eval_tag_run_and_folder(runs_dir: Path, tmp_path: Path) -> None:
    rid = _run_example(runs_dir)
    best = sql(runs_dir, f"select iter, score from best where run_id = '{rid}'")[0]
    # a run id means its best checkpoint; the score equals the loop's own measurement (deterministic target)
    out = json.loads(autoloop(runs_dir, "eval", rid, "--json").stdout)
    assert out["status"] == "ok" and out["checkpoint"] == f"autoloop/{rid}/best"
    assert abs(out["score"] - best["score"]) < 1e-12 and out["items"] == 40
    base = json.loads(autoloop(runs_dir, "eval", f"autoloop/{rid}/ckpt-000", "--json").stdout)
    assert base["score"] > out["score"]  # min target: the baseline is worse
    # a folder needs --target; then it is scored the same way
    autoloop(runs_dir, "checkout", f"autoloop/{rid}/best", str(tmp_path / "ship"))
    p = autoloop(runs_dir, "eval", str(tmp_path / "ship"), check=False)
    assert p.returncode == 2 and "--target" in p.stderr and "Traceback" not in p.stderr
    folder = json.loads(autoloop(runs_dir, "eval", str(tmp_path / "ship"), "--target",
                                 str(ROOT / "targets" / "example_fit.py"), "--json").stdout)
    assert abs(folder["score"] - best["score"]) < 1e-12
    # any gold file: the user's own data
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps({"id": f"m{i}", "x": i / 10, "y": 0.0}) + "\n" for i in range(5)))
    own = json.loads(autoloop(runs_dir, "eval", rid, "--gold", str(mine), "--json").stdout)
    assert own["items"] == 5
    # recorded as evaluations, with per-item rows; never as iterations
    evs = sql(runs_dir, "select eval_id, checkpoint, gold_path, score from evaluations order by ts")
    assert len(evs) == 4 and evs[-1]["gold_path"] == str(mine)
    assert sql(runs_dir, f"select count(*) as n from eval_items where eval_id = '{own['eval_id']}'")[0]["n"] == 5
    assert sql(runs_dir, f"select count(*) as n from iterations where run_id = '{rid}'")[0]["n"] == 5
    # the journal file is the source of truth: a rebuilt database still has them
    autoloop(runs_dir, "db", "rebuild")
    assert sql(runs_dir, "select count(*) as n from evaluations")[0]["n"] == 4
    # the human form names the worst items and how to query the record
    text = autoloop(runs_dir, "eval", rid, "--worst", "2").stdout
    assert "worst 2 items" in text and "select * from evaluations" in text


def test_eval_bad_input_is_one_line(runs_dir: Path) -> None:
    rid = _run_example(runs_dir)
    for args, words in [(["nope"], "not found"), ([f"autoloop/{rid}/ckpt-999"], "no tag"),
                        ([rid, "--split", "x"], "splits"), ([rid, "--constrained"], "constrained"),
                        ([rid, "--gold", "/no/such.jsonl"], "no such file")]:
        p = autoloop(runs_dir, "eval", *args, check=False)
        assert p.returncode == 2, (args, p.stderr)
        assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_sealed_split_is_refused_by_the_loop_and_read_by_eval(runs_dir: Path, tmp_path: Path) -> None:
    gold = ROOT / "gold" / "example_curve.jsonl"
    test_split = tmp_path / "sealed.jsonl"
    test_split.write_text("".join(gold.read_text().splitlines(keepends=True)[:10]))
    src = (ROOT / "targets" / "example_fit.py").read_text().replace("target = PolyFit()", "")
    body = src + textwrap.dedent(f"""
        target = PolyFit(name="sealed_fit", gold=Path({str(gold)!r}))
        target.gold_splits = {{"dev": {str(gold)!r}, "sealed": {str(test_split)!r}}}
        target.sealed_splits = ("sealed",)
    """)
    tfile = tmp_path / "sealed_fit.py"
    tfile.write_text(body)
    bad = tmp_path / "bad_fit.py"
    bad.write_text(body + f"target.gold = {str(test_split)!r}\n")
    p = autoloop(runs_dir, "run", str(bad), "--max-iters", "1", "--no-progress", check=False)
    assert p.returncode == 2 and "sealed" in p.stderr and not list(runs_dir.glob("sealed_fit-*"))
    autoloop(runs_dir, "run", str(tfile), "--max-iters", "2", "--no-progress")
    rid = only_run(runs_dir)
    out = json.loads(autoloop(runs_dir, "eval", rid, "--split", "sealed", "--json").stdout)
    assert out["split"] == "sealed" and out["items"] == 10
    dev = json.loads(autoloop(runs_dir, "eval", rid, "--json").stdout)
    assert dev["split"] == "dev" and dev["items"] == 40
