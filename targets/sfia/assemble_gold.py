"""Assemble the realistic gold set from the writers' drafts: ids, skill names, and the sealed test split.

    python targets/sfia/assemble_gold.py gold/drafts/part*.jsonl

Writes gold/sfia_real.jsonl (the loop's exam) and gold/sealed/sfia_real_test.jsonl (the sealed test split:
only `autoloop eval --split sealed` reads it). The split is seeded and stratified by draft file and by kind
(advert / cv), so both splits have the same mix of writers, voices and skill areas. Run once; re-running on
the same drafts rewrites both files byte for byte.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfia.check_gold import problems  # noqa: E402
from sfia.framework import load_framework  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEALED_SHARE = 0.25
SEED = 20261202


def main(paths: list[str]) -> int:
    fw = load_framework()
    rows, bad = [], []
    for p in sorted(paths):
        errs, part = problems(Path(p))
        bad += errs
        rows += [(Path(p).stem, r) for r in part]
    if bad:
        print("\n".join(bad))
        return 1
    rng = random.Random(SEED)
    sealed_ids: set[str] = set()
    strata: dict[tuple[str, str], list[str]] = {}
    for part, r in rows:
        strata.setdefault((part, r["kind"]), []).append(r["id"])
    for key in sorted(strata):
        ids = sorted(strata[key])
        rng.shuffle(ids)
        sealed_ids.update(ids[: round(len(ids) * SEALED_SHARE)])
    real, sealed = [], []
    for n, (_, r) in enumerate(rows, 1):
        out = {"id": f"r{n:03d}", "source_id": r["id"], "kind": r["kind"], "input": r["input"],
               "skills": [{"code": s["code"], "name": fw.skills[s["code"]].name, "level": s["level"],
                           "evidence": s["evidence"]} for s in r["skills"]],
               "notes": r.get("notes", "")}
        (sealed if r["id"] in sealed_ids else real).append(out)
    (ROOT / "gold" / "sealed").mkdir(exist_ok=True)
    for path, part in [(ROOT / "gold" / "sfia_real.jsonl", real),
                       (ROOT / "gold" / "sealed" / "sfia_real_test.jsonl", sealed)]:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        print(f"wrote {path} ({len(part)} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
