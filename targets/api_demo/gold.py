"""Build the fixed benchmark: representative calls with expected response hashes.

    python -m api_demo.gold --rows 200000 --seed 0 --out gold/api_calls.jsonl   (from targets/)

Line 1 is {"_meta": {...}} (database size and seed the hashes belong to); then one call per line:
{"id", "method", "path", "body", "barrier", "expect"}. Reads are skewed (popular searches repeat, so
a response cache can help); one write flips a profile that popular reads return, and a last write
restores it, so every replay starts from the same data and a cache that ignores writes is caught.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from api_demo import data
from api_demo.reference import Reference, response_hash


def build_calls(ref: Reference, n_calls: int, seed: int) -> list[dict]:
    rng = random.Random(f"calls:{seed}")
    skills_w = [1.0 / (i + 1) for i in range(len(data.SKILLS))]
    ids = sorted(ref.profiles)
    popular_ids = rng.sample(ids, 15)
    hot_skill, hot_level = data.SKILLS[0], 5
    _, hot = ref.answer("GET", f"/search?skill={hot_skill}&min_level={hot_level}")
    hot_id = hot["results"][0]["id"]
    hot_loc = ref.profiles[hot_id][3]
    was = bool(ref.profiles[hot_id][5])

    def read() -> tuple[str, str, None]:
        r = rng.random()
        if r < 0.45:
            skill = rng.choices(data.SKILLS, skills_w)[0]
            return "GET", f"/search?skill={skill}&min_level={rng.randint(2, 6)}", None
        if r < 0.8:
            pid = rng.choice(popular_ids) if rng.random() < 0.5 else rng.choice(ids)
            return "GET", f"/profiles/{pid}", None
        return "GET", f"/stats/skills?location={rng.choice(data.LOCATIONS)}", None

    hot_reads = [("GET", f"/search?skill={hot_skill}&min_level={hot_level}", None),
                 ("GET", f"/profiles/{hot_id}", None), ("GET", f"/stats/skills?location={hot_loc}", None)]
    half = (n_calls - 2 - 2 * len(hot_reads)) // 2
    plan = hot_reads + [read() for _ in range(half)]
    plan.append(("POST", f"/profiles/{hot_id}/availability", {"available": not was}))
    rest = [read() for _ in range(n_calls - len(plan) - 1 - len(hot_reads))] + hot_reads
    rng.shuffle(rest)
    plan += rest
    plan.append(("POST", f"/profiles/{hot_id}/availability", {"available": was}))
    calls = []
    for i, (method, path, body) in enumerate(plan):
        status, obj = ref.answer(method, path, body)
        calls.append({"id": f"c{i:03d}", "method": method, "path": path, "body": body,
                      "barrier": method != "GET", "expect": response_hash(status, obj)})
    return calls


def write_gold(out: Path, rows: int, seed: int, n_calls: int = 120, cache_dir: Path | None = None) -> Path:
    db = data.ensure_db(rows, seed, cache_dir)
    calls = build_calls(Reference(db), n_calls, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"_meta": {"rows": rows, "seed": seed, "n_calls": len(calls), "service": "api_demo"}}
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in [meta, *calls]))
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="write the api_demo benchmark calls with expected hashes")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calls", type=int, default=120)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(write_gold(a.out, a.rows, a.seed, a.calls))


if __name__ == "__main__":
    main()
