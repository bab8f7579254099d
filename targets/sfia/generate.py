"""Seeded generator of the synthetic SFIA gold set and the training/dev data.

    python targets/sfia/generate.py [--root DIR]

rewrites, byte for byte, gold/sfia_gold.jsonl (200 rows, seed GOLD_SEED, GOLD shapes) and
targets/sfia/data/train.jsonl + dev.jsonl (2000 + 100 rows, seeds TRAIN_SEED / DEV_SEED, TRAIN shapes).

Each input is a job advert ("ad" voice) or an experience statement ("me" voice) of 1-4 sentences: one
sentence per expected skill (or one sentence naming two skills at one level), plus distractor sentences
(benefits, location, culture) that map to no skill. A skill sentence = a sentence shape + a cue phrase
for the skill (cues.SKILL_CUES; the phrase is the expected evidence, verbatim) + a level cue
(cues.LEVEL_CUES) for a level drawn uniformly from the skill's SFIA range.

Gold and training rows share the vocabulary (skills, cue phrases, level cues, titles: the domain knowledge
to learn) but never a sentence shape: GOLD and TRAIN below are disjoint template sets, distractors
included, and every training/dev row is also checked against the gold set with contamination.py (rows at
5-gram Jaccard >= 0.4, a margin under the 0.5 refusal threshold, are redrawn).

Training rows carry "reply": the compact target JSON the model should produce. It is the offline stand-in
for the seed's cloud teacher: a rule-built answer from the generator's own labels, not a model's output.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `sfia` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfia.contamination import GoldIndex, normalise  # noqa: E402
from sfia.cues import LEVEL_CUES, SKILL_CUES  # noqa: E402
from sfia.framework import LEVEL_NAMES, load_framework  # noqa: E402

GOLD_SEED, TRAIN_SEED, DEV_SEED = 9009, 4242, 7171
N_GOLD, N_TRAIN, N_DEV = 200, 2000, 100
GEN_MARGIN = 0.4  # redraw training rows this similar to any gold row (refusal is at 0.5)
SKILL_COUNT_WEIGHTS = {1: 0.45, 2: 0.40, 3: 0.15}
PAIR_PROB = 0.3  # two skills in one sentence, sharing a level

# Sentence shapes. {x}/{x2}: cue phrases; {lvl}: level cue at the end, {Lvl}: capitalised at the start;
# {title} / {a_title}: job title without / with its article.
GOLD = {
    "open_ad": ["We are hiring {a_title} who will be {x} {lvl}.",
                "{Lvl}, the {title} is responsible for {x}.",
                "The successful {title} will focus on {x} {lvl}.",
                "Role: {title}. You will be {x} {lvl}.",
                "Our new {title} will take charge of {x} {lvl}.",
                "Join us as {a_title}, {x} {lvl}."],
    "open_me": ["In my last role as {a_title} I spent most of my time {x} {lvl}.",
                "I have worked as {a_title} for three years, {x} {lvl}.",
                "As {a_title}, I have been {x} {lvl}.",
                "{Lvl}, I worked as {a_title}, mainly {x}."],
    "more_ad": ["You will also be {x} {lvl}.",
                "The post further involves {x} {lvl}.",
                "Another part of the job is {x} {lvl}.",
                "{Lvl}, you will additionally be {x}."],
    "more_me": ["{Lvl}, I also took on {x}.",
                "I was additionally {x} {lvl}.",
                "Another part of my job was {x} {lvl}.",
                "Later I moved on to {x} {lvl}."],
    "intro_ad": ["We have an opening for {a_title}.", "Vacancy: {title}, permanent."],
    "intro_me": ["I am {a_title} by trade.", "I currently work as {a_title}."],
    "pair_ad": ["The work covers {x} and {x2} {lvl}.",
                "{Lvl}, the holder will be {x} and {x2}."],
    "pair_me": ["My duties combined {x} and {x2} {lvl}.",
                "{Lvl}, I handled {x} alongside {x2}."],
    "distract_ad": ["The office is in central Leeds with hybrid working.",
                    "We offer a generous pension and private healthcare.",
                    "Our team values kindness and open feedback.",
                    "Salary is competitive and reviewed every year.",
                    "You will join a friendly team of twelve people.",
                    "Relocation support is available for the right person.",
                    "Applications close at the end of the month.",
                    "We are an equal opportunities employer."],
    "distract_me": ["Outside work I enjoy hiking and photography.",
                    "I relocated to Bristol last spring.",
                    "My team had a strong culture of mutual support.",
                    "I speak English and Portuguese fluently.",
                    "I am available to start after a one-month notice period.",
                    "Colleagues describe me as calm and curious."],
}
TRAIN = {
    "open_ad": ["Job title: {title}. Main task: {x} {lvl}.",
                "Wanted: {title} for {x} {lvl}.",
                "This {title} position centres on {x} {lvl}.",
                "{Lvl}, our {title} spends the week {x}.",
                "Looking for {a_title} comfortable {x} {lvl}.",
                "Vacancy for {a_title}: expect {x} {lvl}.",
                "The {title} we need will spend their days {x} {lvl}."],
    "open_me": ["My work as {a_title} involved {x} {lvl}.",
                "{Lvl}, I was {x} while employed as {a_title}.",
                "Previously {a_title}, I focused on {x} {lvl}.",
                "Current position: {title}, mostly {x} {lvl}.",
                "For two years I served as {a_title}, {x} {lvl}."],
    "more_ad": ["Expect to be {x} {lvl} too.",
                "Duties also include {x} {lvl}.",
                "{Lvl}, the hire will be {x} as well.",
                "There is also {x} {lvl}."],
    "more_me": ["I also spent time {x} {lvl}.",
                "{Lvl}, my responsibilities extended to {x}.",
                "Beyond that I was {x} {lvl}.",
                "On top of this I kept {x} {lvl}."],
    "intro_ad": ["Opening: {title}.", "Now recruiting {a_title}."],
    "intro_me": ["Background: {title}.", "My title is {title}."],
    "pair_ad": ["Responsibilities span {x} plus {x2} {lvl}.",
                "{Lvl}, expect {x} as well as {x2}."],
    "pair_me": ["I combined {x} with {x2} {lvl}.",
                "{Lvl}, my role mixed {x} and {x2}."],
    "distract_ad": ["Free parking is provided on site.",
                    "The company gives every employee a learning budget.",
                    "This is a permanent, full-time contract.",
                    "Our headquarters overlook the river in Glasgow.",
                    "We celebrate wins together every Friday.",
                    "Flexible hours are standard here.",
                    "The team is spread across three time zones.",
                    "A cycle-to-work scheme is available."],
    "distract_me": ["I hold a full driving licence.",
                    "In my spare time I coach a youth football team.",
                    "I moved from Dublin to Manchester in 2019.",
                    "My manager praised my calm attitude.",
                    "I volunteer at a local food bank.",
                    "I enjoy cooking and long-distance running."],
}
_VOWEL_ACRONYM_START = set("AEFHILMNORSX")  # letters spoken with a vowel sound: "an ML engineer"
_SPOKEN_AS_WORDS = {"SOC", "CISO"}  # acronyms read as words: "a SOC analyst"


def with_article(title: str) -> str:
    """The title with "a" or "an" by sound, acronyms included.

    >>> with_article("ML engineer"), with_article("UX designer"), with_article("analyst")
    ('an ML engineer', 'a UX designer', 'an analyst')
    """
    first = title.split()[0]
    if first.isupper() and first not in _SPOKEN_AS_WORDS:
        vowel = first[0] in _VOWEL_ACRONYM_START
    else:
        vowel = first[0].lower() in "aeio"
    return ("an " if vowel else "a ") + title


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def count_sentences(text: str) -> int:
    """Sentences in a text: terminators followed by a space or the end ("Role: x. You will..." is two)."""
    return len(re.findall(r"[.!?](?:\s|$)", text))


class _Deck:
    """Draws skills evenly: every skill appears once per shuffled pass before any repeats."""

    def __init__(self, rng: random.Random):
        self.rng, self.cards = rng, []

    def draw(self, exclude: set[str]) -> str:
        if not [c for c in self.cards if c not in exclude]:
            fresh = sorted(SKILL_CUES)
            self.rng.shuffle(fresh)
            self.cards += fresh
        i = next(i for i, c in enumerate(self.cards) if c not in exclude)
        return self.cards.pop(i)


def _example(rng: random.Random, deck: _Deck, shapes: dict) -> tuple[str, list[dict]]:
    fw = load_framework()
    voice = rng.choice(["ad", "me"])
    k = rng.choices(list(SKILL_COUNT_WEIGHTS), weights=list(SKILL_COUNT_WEIGHTS.values()))[0]
    codes: list[str] = []
    for _ in range(k):
        codes.append(deck.draw(set(codes)))
    picks = [{"code": c, "level": rng.choice(fw.levels_of(c)), "evidence": rng.choice(SKILL_CUES[c][0])} for c in codes]
    titles = SKILL_CUES[codes[0]][1] if rng.random() < 0.8 else SKILL_CUES[rng.choice(sorted(SKILL_CUES))][1]
    title = rng.choice(titles)

    # group skills into sentences: optionally the last two share one sentence and one level
    groups: list[list[dict]] = [[p] for p in picks]
    if k >= 2 and rng.random() < PAIR_PROB:
        a, b = picks[-2], picks[-1]
        common = sorted(set(fw.levels_of(a["code"])) & set(fw.levels_of(b["code"])))
        if common:
            a["level"] = b["level"] = rng.choice(common)
            groups = [[p] for p in picks[:-2]] + [[a, b]]

    sentences, used = [], set()
    for gi, g in enumerate(groups):
        kind = "pair" if len(g) == 2 else ("open" if gi == 0 else "more")
        options = [t for t in shapes[f"{kind}_{voice}"] if t not in used]
        tpl = rng.choice(options)
        used.add(tpl)
        lvl = rng.choice(LEVEL_CUES[g[0]["level"]])
        sentences.append(tpl.format(x=g[0]["evidence"], x2=g[-1]["evidence"], lvl=lvl, Lvl=_cap(lvl),
                                    title=title, a_title=with_article(title)))
    if len(groups[0]) == 2:  # a pair sentence carries no title: introduce the job first
        intro = rng.choice(shapes[f"intro_{voice}"])
        sentences.insert(0, intro.format(title=title, a_title=with_article(title)))
    room = max(0, 4 - sum(count_sentences(x) for x in sentences))
    n_distract = rng.choices(range(room + 1), weights=[4, 3, 2, 1][: room + 1])[0]
    for d in rng.sample(shapes[f"distract_{voice}"], n_distract):
        sentences.insert(rng.randrange(len(sentences) + 1), d)
    text = " ".join(sentences)
    order = sorted(picks, key=lambda p: text.find(p["evidence"]))
    return text, [{"code": p["code"], "name": fw.by_code(p["code"]).name, "level": p["level"],
                   "evidence": p["evidence"]} for p in order]


_CODE_WORD = None


def contains_code(text: str) -> str | None:
    """The first SFIA code that appears as a whole word (any case) in the text, else None."""
    global _CODE_WORD
    if _CODE_WORD is None:
        _CODE_WORD = re.compile(r"\b(" + "|".join(sorted(load_framework().skills)) + r")\b", re.IGNORECASE)
    m = _CODE_WORD.search(text)
    return m.group(1) if m else None


def reply_for(skills: list[dict]) -> str:
    """The teacher-style target: compact JSON, evidence quoted from the input, a rationale of <= 12 words.

    >>> reply_for([{"code": "PROG", "level": 4, "evidence": "fixing defects in production code"}])
    '{"skills":[{"code":"PROG","level":4,"evidence":"fixing defects in production code"}],"rationale":"PROG at Enable level."}'
    """
    body = [{"code": s["code"], "level": s["level"], "evidence": s["evidence"]} for s in skills]
    why = "; ".join(f"{s['code']} at {LEVEL_NAMES[s['level']].split('/')[0]}" for s in skills)
    return json.dumps({"skills": body, "rationale": why + " level."}, separators=(",", ":"), ensure_ascii=False)


def generate(n: int, seed: int, shapes: dict, prefix: str, width: int, avoid: GoldIndex | None = None,
             seen: set[str] | None = None, with_reply: bool = False) -> list[dict]:
    rng, seen = random.Random(seed), (seen if seen is not None else set())
    deck, rows = _Deck(rng), []
    while len(rows) < n:
        text, skills = _example(rng, deck, shapes)
        norm = normalise(text)
        if norm in seen or contains_code(text):
            continue
        if avoid is not None:
            hit = avoid.nearest(text)
            if hit and hit[1] >= GEN_MARGIN:
                continue
        assert all(s["evidence"] in text for s in skills)
        seen.add(norm)
        row = {"id": f"{prefix}{len(rows) + 1:0{width}d}", "input": text, "skills": skills}
        if with_reply:
            row["reply"] = reply_for(skills)
        rows.append(row)
    return rows


def build() -> dict[str, list[dict]]:
    """All three splits, deterministically."""
    gold = generate(N_GOLD, GOLD_SEED, GOLD, "g", 3)
    index, seen = GoldIndex([r["input"] for r in gold]), {normalise(r["input"]) for r in gold}
    train = generate(N_TRAIN, TRAIN_SEED, TRAIN, "t", 4, index, seen, with_reply=True)
    dev = generate(N_DEV, DEV_SEED, TRAIN, "d", 3, index, seen, with_reply=True)
    return {"gold": gold, "train": train, "dev": dev}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def output_paths(root: Path) -> dict[str, Path]:
    return {"gold": root / "gold" / "sfia_gold.jsonl",
            "train": root / "targets" / "sfia" / "data" / "train.jsonl",
            "dev": root / "targets" / "sfia" / "data" / "dev.jsonl"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2],
                    help="repository root to write gold/ and targets/sfia/data/ under (default: this repo)")
    args = ap.parse_args(argv)
    splits = build()
    for name, path in output_paths(args.root).items():
        write_jsonl(path, splits[name])
        print(f"{path}: {len(splits[name])} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
