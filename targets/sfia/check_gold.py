"""Check a realistic gold file against gold/GUIDELINES.md: schema, working scope, level ranges, verbatim
evidence, no skill codes or generator cue phrases in the text.

    python targets/sfia/check_gold.py gold/sfia_real.jsonl [more files]

Prints one line per problem (file:line: what, fix) and exits 1 if there is any; prints a summary otherwise.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfia.cues import LEVEL_CUES, SKILL_CUES  # noqa: E402
from sfia.framework import load_framework  # noqa: E402

SCOPE = tuple(SKILL_CUES)


def problems(path: Path) -> tuple[list[str], list[dict]]:
    fw = load_framework()
    all_codes = set(fw.skills)
    cue_phrases = [c for cues, _ in SKILL_CUES.values() for c in cues] + [c for cs in LEVEL_CUES.values() for c in cs]
    out, rows, ids = [], [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            out.append(f"{where}: not JSON ({e}); one object per line")
            continue
        for k in ("id", "kind", "input", "skills"):
            if k not in row:
                out.append(f"{where}: missing field {k!r}")
        if not all(k in row for k in ("id", "input", "skills")):
            continue
        if row["id"] in ids:
            out.append(f"{where}: duplicate id {row['id']}")
        ids.add(row["id"])
        if row.get("kind") not in ("advert", "cv"):
            out.append(f"{where}: kind must be 'advert' or 'cv'")
        text = row["input"]
        words = len(text.split())
        if not 40 <= words <= 400:
            out.append(f"{where}: {words} words; write 60-320")
        for code in all_codes:
            if re.search(rf"\b{code}\b", text):
                out.append(f"{where}: input contains the SFIA code {code} as a word; reword it")
        if "sfia" in text.lower():
            out.append(f"{where}: input mentions SFIA; remove it")
        low = text.lower()
        for cue in cue_phrases:
            if cue.lower() in low:
                out.append(f"{where}: input uses the generator's cue phrase {cue!r}; reword it")
        skills = row["skills"]
        if not isinstance(skills, list) or not 1 <= len(skills) <= 6:
            out.append(f"{where}: skills must be a list of 1-6 labels")
            continue
        seen = set()
        for s in skills:
            code, level, ev = s.get("code"), s.get("level"), s.get("evidence")
            if code not in SCOPE:
                out.append(f"{where}: code {code!r} is not in the working scope (gold/GUIDELINES.md)")
                continue
            if code in seen:
                out.append(f"{where}: code {code} labelled twice")
            seen.add(code)
            sk = fw.skills[code]
            if not isinstance(level, int) or not sk.min_level <= level <= sk.max_level:
                out.append(f"{where}: {code} level {level!r} outside its range {sk.min_level}-{sk.max_level}")
            if not isinstance(ev, str) or not ev.strip() or ev not in text:
                out.append(f"{where}: {code} evidence {ev!r} is not a verbatim span of input")
            elif not 2 <= len(ev.split()) <= 30:
                out.append(f"{where}: {code} evidence should be 3-25 words")
        rows.append(row)
    return out, rows


def main(argv: list[str]) -> int:
    bad, total = [], []
    for a in argv:
        p, rows = problems(Path(a))
        bad += p
        total += rows
    for line in bad:
        print(line)
    if bad:
        return 1
    codes = Counter(s["code"] for r in total for s in r["skills"])
    levels = Counter(s["level"] for r in total for s in r["skills"])
    kinds = Counter(r["kind"] for r in total)
    words = sorted(len(r["input"].split()) for r in total)
    print(f"ok: {len(total)} items, {sum(codes.values())} labels, kinds {dict(kinds)}, "
          f"median words {words[len(words)//2] if words else 0}")
    print("levels:", dict(sorted(levels.items())))
    print("codes:", dict(codes.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
