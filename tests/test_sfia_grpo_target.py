"""The flagship target's engine-side contract, without loading a model: contamination refusal, proposals."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, autoloop

from autoloop.history import History, IterationRecord


def _target_file(tmp_path: Path, train: Path) -> Path:
    f = tmp_path / "contaminated_target.py"
    f.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'targets')!r})\n"
        "from pathlib import Path\n"
        "from sfia_grpo import SfiaGRPO\n"
        f"target = SfiaGRPO(train_file=Path({str(train)!r}))\n")
    return f


def test_training_data_that_overlaps_gold_is_refused(runs_dir: Path, tmp_path: Path) -> None:
    train_rows = (ROOT / "targets/sfia/data/train.jsonl").read_text().splitlines()[:50]
    gold_row = json.loads((ROOT / "gold/sfia_gold.jsonl").read_text().splitlines()[17])
    words = gold_row["input"].split()
    words[3] = "zebra"  # a near-duplicate, not an exact copy
    leaked = dict(json.loads(train_rows[0]), input=" ".join(words))
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(train_rows + [json.dumps(leaked)]) + "\n")
    p = autoloop(runs_dir, "run", str(_target_file(tmp_path, train)), check=False)
    assert p.returncode == 2
    line = p.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "train.jsonl:51" in line and "sfia_gold.jsonl:18" in line
    assert not (runs_dir / "history.duckdb").exists()


def test_clean_training_data_passes_check() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import SfiaGRPO

    SfiaGRPO().check()


def _rec(i, status, stage=None, dev=None, lr=2e-4):
    comps = {"dev_json_validity": dev} if dev is not None else {}
    return IterationRecord(iter=i, status=status, params={"stage": stage, "lr": lr} if stage else {},
                           components=comps, score=0.1)


def test_proposals_warm_start_then_grpo_and_adjust_after_reverts() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import SfiaGRPO

    t = SfiaGRPO()
    h = History(run_id="r", direction="max", iterations=[_rec(0, "keep", dev=0.0)])
    c = t.propose(h)
    assert c.params["stage"] == "sft" and c.params["lr"] == t.sft_lr
    h.iterations.append(_rec(1, "revert", "sft", dev=0.2))
    c2 = t.propose(h)
    assert c2.params["lr"] == t.sft_lr / 2 and c2.params["seed"] != c.params["seed"]
    assert "lr halved and new seed" in c2.description
    h.iterations.append(_rec(2, "keep", "sft", dev=0.75))  # one busy-CPU SFT cycle: enough for GRPO's groups
    c3 = t.propose(h)
    assert c3.params["stage"] == "grpo" and c3.params["lr"] == t.grpo_lr and c3.params["reset_optimizer"]
    assert "GRPO" in c3.description


def test_after_warmup_grpo_and_sft_alternate_so_history_compares_them() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import SfiaGRPO

    t = SfiaGRPO()
    h = History(run_id="r", direction="max", iterations=[_rec(0, "keep", dev=0.0), _rec(1, "keep", "sft", dev=0.95)])
    stages = []
    for i in range(2, 6):
        c = t.propose(h)
        stages.append(c.params["stage"])
        assert c.params["phase"] == "compare" and "A/B cycle" in c.description
        rec = _rec(i, "revert" if i % 3 else "keep", c.params["stage"], dev=0.95)
        rec.params["phase"] = "compare"
        h.iterations.append(rec)
    assert stages == ["grpo", "sft", "grpo", "sft"]
    only = SfiaGRPO(after_warmup="grpo")
    assert only.propose(h).params["stage"] == "grpo"
    # the realistic gold is the loop's exam; the sealed split is named but never the loop's gold
    assert t.gold.name == "sfia_real.jsonl" and t.gold_splits["sealed"] != t.gold and "sealed" in t.sealed_splits
    assert t.bootstrap["stat"] == "diff"


def test_reference_point_is_the_constant_valid_reply_on_the_same_gold() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import SfiaGRPO

    t = SfiaGRPO()
    refs = t.reference_scores(t.gold)
    const = refs["constant valid reply"]
    assert 0.4 < const.score < 0.5  # JSON validity and non-hallucination alone carry 0.45 of the weight
    assert const.components["json_validity"] == 1.0 and const.components["hallucination"] == 0.0
    assert len(const.items) == sum(1 for line in t.gold.read_text().splitlines() if line.strip()) and t.baseline_label == "untrained model"
    assert SfiaGRPO(gold_limit=10).reference_scores(t.gold)["constant valid reply"].items.keys() <= const.items.keys()


def test_a_batch_spreads_seeds_and_learning_rates() -> None:
    """`--batch 3` (locally or on Ray): the engine asks once per member with the members so far in
    history.pending; each gets its own seed and learning rate, member 0 the proposal a batch of one gets."""
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import LR_SPREAD, SfiaGRPO

    t = SfiaGRPO()
    h = History(run_id="r", direction="max", iterations=[_rec(0, "keep", dev=0.0), _rec(1, "keep", "sft", dev=0.95)])
    alone = t.propose(h)
    members = []
    for _ in range(3):
        h.pending = list(members)
        members.append(t.propose(h))
    h.pending = []
    assert members[0].params == alone.params and members[0].description == alone.description
    assert len({m.params["seed"] for m in members}) == 3
    assert [m.params["lr"] for m in members] == [alone.params["lr"] * f for f in LR_SPREAD[:3]]
    assert all(m.params["stage"] == alone.params["stage"] == "grpo" for m in members)
    assert "batch member 2" in members[1].description and "batch member 3" in members[2].description


def test_curves_leave_out_steps_without_a_loss() -> None:
    """A GRPO step whose groups all had equal rewards has no loss (None); the cycle's saved curves skip it
    instead of crashing the run phase after the training was done (seen with a sampling temperature of 0.7)."""
    import sys

    sys.path.insert(0, str(ROOT / "targets"))
    from sfia_grpo import _downsample

    assert _downsample([None, 1.0, None, 3.0], 40) == [1.0, 3.0]
    assert _downsample([None] * 5, 40) == []
    assert _downsample([float(i) for i in range(80)], 40)[:2] == [0.5, 2.5]


def test_bad_grpo_settings_are_one_line_errors_before_anything_runs(runs_dir: Path) -> None:
    import os

    for var, value in (("SFIA_OVERLONG_BUFFER", "112"), ("SFIA_GRPO_TEMPERATURE", "0"), ("SFIA_GRPO_TEMPERATURE", "hot"),
                       ("SFIA_GRPO_PROMPTS", "0"), ("SFIA_GRPO_BETA", "-1")):
        p = autoloop(runs_dir, "run", str(ROOT / "targets/sfia_grpo.py"), check=False, env=dict(os.environ, **{var: value}))
        assert p.returncode == 2, (var, value, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and var in p.stderr, p.stderr
        assert not (runs_dir / "history.duckdb").exists()
