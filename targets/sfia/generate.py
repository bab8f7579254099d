"""Seeded generator of the synthetic SFIA gold split and the training/dev data.

    python targets/sfia/generate.py [--root DIR] [--gold-dir DIR]

rewrites, byte for byte, gold/sfia_gold.jsonl (200 rows, seed GOLD_SEED) and targets/sfia/data/train.jsonl +
dev.jsonl (3000 + 100 rows, seeds TRAIN_SEED / DEV_SEED) under --root (default: this repository).

Documents. Each input is a job advert or a CV / experience statement composed from sfia/phrasebank.py:
a title or CV header, 1-4 skills (weighted to 1-3), each as an activity phrasing inside a sentence frame
or a bullet, with its level carried by a level statement (responsibility, autonomy, influence) or a level
lead-in clause placed next to that activity (or one statement before a list when all skills share a
level), plus realistic noise (company boilerplate, benefits, salary, location and hybrid rules, application
instructions, equal-opportunities and visa lines, tool lists, hobbies, education). Sizes: about a quarter
are short (1-3 sentences), the rest 1-6 paragraphs or bullet lists; about 40% use US spelling. Levels: the
first skill's level is uniform over its SFIA range, the others within one of it (clipped to their ranges),
as in a real document where one person's seniority shows throughout.

Splits. Training and dev rows use the TRAIN side of every phrase-bank list; the synthetic gold split uses
only the HELD-OUT side (activity phrasings, level statements and lead-ins, noise, organisation names,
cities), so it measures generalisation to unseen wording, with the same document layouts.

Contamination, applied automatically. Besides the freshly generated synthetic split, the generator reads
every other gold/*.jsonl and gold/**/*.jsonl under --gold-dir (default: this repository's gold/, so a run
with --root elsewhere reproduces the committed files): realistic gold sets and drafts when they exist.
Then (1) any phrase-bank item whose phrase (4+ words, canonical text) occurs in a gold text is dropped and
never drawn; (2) a training/dev row that shares a sentence (4+ words) with a gold text, near-duplicates a
gold input (5-gram Jaccard >= GEN_MARGIN), repeats an earlier input or contains a skill code is redrawn.
It prints how many items it dropped and rows it redrew. Every row has its own random stream (seed, split,
row, attempt), so a dropped phrase changes only the rows that drew it.

Training rows carry "reply": the compact target JSON the model should produce (the offline stand-in for the
seed's cloud teacher, built from the generator's own labels): evidence is the activity phrasing exactly as it
appears in the input (<= 10 words), the rationale <= 12 words.
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

from sfia import phrasebank as pb  # noqa: E402
from sfia.contamination import GoldIndex, GoldText, canon, discover_gold_files, normalise, read_gold_texts  # noqa: E402
from sfia.framework import load_framework  # noqa: E402

GOLD_SEED, TRAIN_SEED, DEV_SEED = 9009, 4242, 7171
N_GOLD, N_TRAIN, N_DEV = 200, 3000, 100
GEN_MARGIN = 0.4  # redraw rows this similar to any gold row (refusal is at 0.5)
SIZE_WEIGHTS = {"short": 0.2, "medium": 0.5, "long": 0.3}
SKILL_COUNT_WEIGHTS = {"short": {1: 0.7, 2: 0.3}, "medium": {1: 0.35, 2: 0.4, 3: 0.2, 4: 0.05},
                       "long": {1: 0.15, 2: 0.35, 3: 0.3, 4: 0.2}}
US_SHARE = 0.4
MAX_ATTEMPTS = 200
MAX_REPLY_COST = 425  # reply_cost budget: every reply stays <= 110 SmolLM2 tokens (the target allows 112)
SCOPE = tuple(pb.ACTIVITIES)  # the 33-skill working scope

# ---------------------------------------------------------------------------------------------------------
# Sentence frames: (template, form). {a} is the activity in that form; {lead} a level lead-in clause.
# ---------------------------------------------------------------------------------------------------------
AD_FRAMES = (
    ("You'll {a}.", "base"), ("You will {a}.", "base"), ("In this role you'll {a}.", "base"),
    ("Day to day, you will {a}.", "base"), ("Your main focus will be to {a}.", "base"),
    ("We need someone to {a}.", "base"), ("The job is to {a}.", "base"), ("Most weeks you'll {a}.", "base"),
    ("Part of the role is to {a}.", "base"), ("Expect to {a}.", "base"),
    ("We're looking for someone who can {a}.", "base"), ("The person we hire will {a}.", "base"),
    ("The role involves {a}.", "ing"), ("You'll spend a good part of your time {a}.", "ing"),
    ("Responsibilities include {a}.", "ing"), ("Experience {a} is essential.", "ing"),
    ("A big part of the job is {a}.", "ing"), ("This team is responsible for {a}.", "ing"),
)
AD_LEAD_FRAMES = (("{lead}, you'll {a}.", "base"), ("{lead}, you will {a}.", "base"),
                  ("{lead}, your job is to {a}.", "base"))
ME_PRESENT_FRAMES = (
    ("I {a}.", "base"), ("Currently I {a}.", "base"), ("Day to day I {a}.", "base"), ("My job is to {a}.", "base"),
    ("In my current role at {org} I {a}.", "base"), ("These days I mostly {a}.", "base"),
    ("At {org} I {a}.", "base"), ("Much of my week goes on {a}.", "ing"), ("I'm currently {a}.", "ing"),
)
ME_PAST_FRAMES = (
    ("I {a}.", "past"), ("At {org} I {a}.", "past"), ("In my previous job I {a}.", "past"),
    ("For {n} years I {a}.", "past"), ("Before that, I {a}.", "past"), ("While at {org}, I {a}.", "past"),
    ("I spent most of my time {a}.", "ing"), ("My work there centred on {a}.", "ing"),
    ("I have a track record of {a}.", "ing"), ("I gained solid experience {a}.", "ing"),
)
ME_LEAD_FRAMES = {"present": (("{lead}, I {a}.", "base"),), "past": (("{lead}, I {a}.", "past"),)}
AD_SHORT = (("We're hiring {a_title} to {a}.", "base"), ("{Title} wanted to {a}.", "base"),
            ("Looking for {a_title} who can {a}.", "base"), ("Job: {title}. You'll {a}.", "base"))
ME_SHORT = (("I'm {a_title} and I {a}.", "base"), ("As {a_title} at {org}, I {a}.", "past"),
            ("{Title} at {org}: I {a}.", "past"), ("I work as {a_title}; I {a}.", "base"))
AD_HEADINGS = ("What you'll do:", "Key responsibilities", "The role", "Your responsibilities:",
               "What the job involves:", "Responsibilities")
AD_VERB_HEADINGS = ("Day to day you will:", "In this job you will:")  # only above bare activity bullets
AD_ALSO = ("Other duties:", "Alongside that:", "Also part of the role:")
BENEFIT_HEADINGS = ("What we offer:", "Benefits", "Why join us?", "Perks")
ABOUT_HEADINGS = ("About us", "Who we are", "About the company")
ME_HEADINGS = ("Experience", "Career history", "Work history", "Recent roles")
BULLETS = ("- ", "• ", "* ")
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
    """Sentences and list lines in a text: terminators followed by a space or the end, plus lines without one.

    >>> count_sentences("Role: x. You will build things.\\n- Write code")
    3
    """
    n = 0
    for line in text.splitlines():
        if line.strip():
            n += max(1, len(re.findall(r"[.!?](?:\s|$)", line)))
    return n


_CODE_WORD = None


def contains_code(text: str) -> str | None:
    """The first SFIA code written as a word in capitals ("DENG", not "test" or "arch"), else None."""
    global _CODE_WORD
    if _CODE_WORD is None:
        _CODE_WORD = re.compile(r"\b(" + "|".join(sorted(load_framework().skills)) + r")\b")
    m = _CODE_WORD.search(text)
    return m.group(1) if m else None


def reply_for(skills: list[dict]) -> str:
    """The teacher-style target: compact JSON, evidence quoted from the input, a rationale of <= 12 words
    (the level reasons in order of first use, e.g. "Leads team; accountable.").

    >>> reply_for([{"code": "PROG", "level": 4, "evidence": "fix bugs raised by customers"}])
    '{"skills":[{"code":"PROG","level":4,"evidence":"fix bugs raised by customers"}],"rationale":"Leads team."}'
    """
    body = [{"code": s["code"], "level": s["level"], "evidence": s["evidence"]} for s in skills]
    reasons = list(dict.fromkeys(pb.LEVEL_REASONS[s["level"]] for s in skills))
    why = _cap("; ".join(reasons)) + "."
    return json.dumps({"skills": body, "rationale": why}, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------
# The bank of one split side, with the items found in gold text dropped
# ---------------------------------------------------------------------------------------------------------
def reply_cost(reply: str) -> int:
    """A tokenizer-free upper proxy for the reply's SmolLM2 token count (about 4 characters a token; digits
    are one token each, hyphens and slashes split words).

    >>> reply_cost('{"a":"ISO 27001 sign-up"}')  # 25 characters + 3 x 5 digits + 2 x 1 hyphen
    42
    """
    return len(reply) + 3 * sum(ch.isdigit() for ch in reply) + 2 * sum(ch in "-/" for ch in reply)


_SLOT = re.compile(r"\{[A-Za-z_]+\}")


def _pieces(text: str) -> list[str]:
    """Literal pieces of a template around its slots, with 4+ words (what must not occur in gold text)."""
    return [p for p in _SLOT.split(text) if len(canon(p).split()) >= 4]


class Bank:
    """One side (train or held-out) of the phrase bank; `banned` holds canonical phrases found in gold text."""

    def __init__(self, held_out: bool, banned: set[str] = frozenset()):
        k = 1 if held_out else 0
        self.held_out, self.banned = held_out, banned
        self.activities = {c: list(pb.ACTIVITIES[c][k]) for c in SCOPE}
        self.statements = {lv: list(pb.LEVEL_STATEMENTS[lv][k]) for lv in range(1, 8)}
        self.leads = {lv: list(pb.LEVEL_LEADS[lv][k]) for lv in range(1, 8)}
        self.noise = {pool: list(items[k]) for pool, items in pb.NOISE.items()}
        self.orgs = [f"{a} {b}" for a in pb.ORG_PARTS[k][0] for b in pb.ORG_PARTS[k][1]]
        self.cities = {loc: list(c[k]) for loc, c in pb.CITIES.items()}
        self.sectors = list(pb.SECTORS[k])

    # which items are dropped (any of their phrases found in gold text)
    def activity_ok(self, p: str) -> bool:
        return not any(canon(f) in self.banned for f in pb.activity_forms(p))

    def statement_ok(self, item: tuple[str, str]) -> bool:
        voice, tpl = item
        return not any(canon(f) in self.banned for v in pb.statement_voices(voice) for f in pb.level_fragments(tpl, v))

    def text_ok(self, t: str) -> bool:
        return not any(canon(p) in self.banned for p in _pieces(re.sub(r"^(uk|us):", "", t)))

    def dropped(self) -> dict[str, int]:
        return {"activity phrasings": sum(not self.activity_ok(p) for v in self.activities.values() for p in v),
                "level statements": sum(not self.statement_ok(s) for v in self.statements.values() for s in v),
                "level lead-ins": sum(not self.text_ok(s) for v in self.leads.values() for s in v),
                "noise items": sum(not self.text_ok(s) for v in self.noise.values() for s in v)}

    @staticmethod
    def _pick(rng: random.Random, items: list, ok) -> object:
        for _ in range(1000):
            x = rng.choice(items)
            if ok(x):
                return x
        raise RuntimeError(f"every item of a phrase-bank list was dropped as found in gold text: {items[:2]}...")

    def activity(self, rng, code):
        return self._pick(rng, self.activities[code], self.activity_ok)

    def statement(self, rng, level, voices):
        items = [s for s in self.statements[level] if s[0] in voices]
        return self._pick(rng, items, self.statement_ok)

    def lead(self, rng, level):
        return self._pick(rng, self.leads[level], self.text_ok)

    def noise_item(self, rng, pool, locale):
        items = [s for s in self.noise[pool] if not re.match(r"^(uk|us):", s) or s.startswith(locale + ":")]
        return re.sub(r"^(uk|us):", "", self._pick(rng, items, self.text_ok))


# ---------------------------------------------------------------------------------------------------------
# Composing one document
# ---------------------------------------------------------------------------------------------------------
class _Doc:
    """The state of one document being written: voice, locale, context slots, the skill blocks."""

    def __init__(self, rng: random.Random, bank: Bank, size: str, picks: list[dict]):
        self.rng, self.bank, self.size, self.picks = rng, bank, size, picks
        self.kind = rng.choice(["ad", "me"])
        self.locale = "us" if rng.random() < US_SHARE else "uk"
        self.org = rng.choice(bank.orgs)
        self.city = rng.choice(bank.cities[self.locale])
        self.sector = rng.choice(bank.sectors)
        self.n = rng.choice(["two", "three", "four", "five", "six", "eight", "ten", "12"])
        self.title = self._title(picks[0]["code"], picks[0]["level"])
        self.side = rng.choice(["before", "after"])  # where separate level statements go, for the whole doc
        for p in picks:
            p["phrase"] = bank.activity(rng, p["code"])
            p["area"] = rng.choice(pb.SKILL_CONTEXT[p["code"]][1])
        # keep the reply within budget (-ing forms are the longest): redraw the longest phrasing a few times,
        # then fall back to each skill's shortest phrasing, longest first (generate() checked that fits)
        def fits() -> bool:
            return reply_cost(reply_for([dict(p, evidence=pb.inflect(p["phrase"], "ing")) for p in picks])) \
                <= MAX_REPLY_COST
        for _ in range(20):
            if fits():
                break
            p = max(picks, key=lambda q: len(q["phrase"]))
            p["phrase"] = bank.activity(rng, p["code"])
        for p in sorted(picks, key=lambda q: -len(pb.inflect(q["phrase"], "ing"))):
            if fits():
                break
            p["phrase"] = min((x for x in bank.activities[p["code"]] if bank.activity_ok(x)),
                              key=lambda x: len(pb.inflect(x, "ing")))

    def _title(self, code: str, level: int) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return rng.choice(pb.GENERIC_TITLES)
        if level >= 6 and r < 0.6:
            return rng.choice(pb.LEADER_TITLES)
        base = rng.choice(pb.SKILL_CONTEXT[code][0])
        if rng.random() < 0.55:
            lv = level if rng.random() < 0.85 else rng.randint(1, 7)
            pre = rng.choice(pb.SENIORITY[lv])
            return f"{pre} {base}" if pre else base
        return base

    def fill(self, s: str) -> str:
        lo = {1: 22, 2: 28, 3: 35, 4: 48, 5: 62, 6: 80, 7: 110}[self.picks[0]["level"]] + self.rng.randint(-4, 6)
        if self.locale == "us":
            lo = int(lo * 1.6)
        date = f"{self.rng.randint(2, 28)} {self.rng.choice(['March', 'June', 'September', 'November'])}"
        if self.locale == "us":
            d, m = date.split()
            date = f"{m} {d}"
        slots = {"{org}": self.org, "{city}": self.city, "{sector}": self.sector, "{n}": self.n,
                 "{a_title}": with_article(self.title), "{A_title}": _cap(with_article(self.title)),
                 "{title}": self.title, "{lo}": str(lo), "{hi}": str(lo + self.rng.choice([5, 8, 10, 15])),
                 "{date}": date}
        for k, v in slots.items():
            s = s.replace(k, v)
        return s

    def noise(self, pool: str) -> str:
        return self.fill(self.bank.noise_item(self.rng, pool, self.locale))

    def noises(self, pool: str, k: int) -> list[str]:
        out: list[str] = []
        for _ in range(k * 3):
            if len(out) >= k:
                break
            x = self.noise(pool)
            if x not in out:
                out.append(x)
        return out

    def tools_line(self) -> str:
        rng = self.rng
        codes = [p["code"] for p in self.picks]
        if rng.random() < 0.4:  # tools of an unrelated skill: a tool name alone is not evidence
            codes = [rng.choice(SCOPE)]
        tools = sorted({t for c in codes for t in pb.SKILL_CONTEXT[c][2]})
        tools = rng.sample(tools, min(len(tools), rng.randint(3, 5)))
        lst = ", ".join(tools[:-1]) + " and " + tools[-1]
        if self.kind == "ad":
            return rng.choice([f"Tools we use: {lst}.", f"Our stack: {', '.join(tools)}.",
                               f"You'll work with {lst}.", f"Tech: {' / '.join(tools)}"])
        return rng.choice([f"Tools: {', '.join(tools)}", f"Skills: {', '.join(tools)}",
                           f"Comfortable with {lst}."])

    # -- one skill: activity text in a form, level statement / lead-in --
    def activity(self, p: dict, form: str, cap: bool = False) -> str:
        text = pb.inflect(p["phrase"], form)
        text = _cap(text) if cap else text
        p["evidence"] = text
        return text

    def statement(self, level: int, tense: str, area: str) -> str:
        if self.kind == "ad":
            voice, voices = "ad", ("both", "ad")
        elif tense == "present":
            voice, voices = "me", ("both",)
        else:
            voice, voices = "me_past", ("both", "me")
        v, tpl = self.bank.statement(self.rng, level, voices)
        return pb.render_statement(tpl, voice if v == "both" else {"ad": "ad", "me": "me_past"}[v], area)

    def sentence(self, p: dict, tense: str, allow_lead: bool = True) -> list[str]:
        """The activity sentence and its level (lead-in inside it, or a statement beside it)."""
        rng = self.rng
        if allow_lead and rng.random() < 0.3:
            frames = AD_LEAD_FRAMES if self.kind == "ad" else ME_LEAD_FRAMES[tense]
            tpl, form = rng.choice(frames)
            s = tpl.replace("{lead}", self.bank.lead(rng, p["level"])).replace("{a}", self.activity(p, form))
            return [self.fill(s)]
        frames = AD_FRAMES if self.kind == "ad" else (ME_PRESENT_FRAMES if tense == "present" else ME_PAST_FRAMES)
        tpl, form = rng.choice(frames)
        s = self.fill(tpl.replace("{a}", self.activity(p, form)))
        st = self.statement(p["level"], tense, p["area"])
        return [st, s] if self.side == "before" else [s, st]

    def bullet_pair(self, p: dict, tense: str, mark: str, with_level: bool = True) -> list[str]:
        form = "base" if self.kind == "ad" or tense == "present" else "past"
        act = mark + self.activity(p, form, cap=True) + (self.rng.choice(["", "."]))
        if not with_level:
            return [act]
        st = mark + self.statement(p["level"], tense, p["area"])
        return [st, act] if self.side == "before" else [act, st]


def _shared_level(picks: list[dict]) -> bool:
    return len(picks) > 1 and len({p["level"] for p in picks}) == 1


def _short(doc: _Doc) -> list[str]:
    """1-3 sentences, one paragraph."""
    rng, picks = doc.rng, doc.picks
    tense = "present" if doc.kind == "ad" else rng.choice(["present", "past"])
    out: list[str] = []
    if len(picks) == 1 and rng.random() < 0.5:
        p = picks[0]
        frames = AD_SHORT if doc.kind == "ad" else ME_SHORT
        tpl, form = rng.choice(frames)
        tense = "past" if form == "past" else "present"
        s = tpl.replace("{a}", doc.activity(p, form)).replace("{a_title}", with_article(doc.title))
        s = s.replace("{Title}", doc.title).replace("{title}", doc.title)
        s = doc.fill(s)
        st = doc.statement(p["level"], tense, p["area"])
        out = [st, s] if doc.side == "before" else [s, st]
        if doc.side == "before" and s.startswith("Job: "):
            out = [s, st]
    else:
        for p in picks:
            tpl, form = rng.choice(AD_LEAD_FRAMES if doc.kind == "ad" else ME_LEAD_FRAMES[tense])
            out.append(doc.fill(tpl.replace("{lead}", doc.bank.lead(rng, p["level"]))
                                .replace("{a}", doc.activity(p, form))))
    if count_sentences(" ".join(out)) < 3 and rng.random() < 0.35:
        pool = rng.choice(["location", "benefits", "culture"] if doc.kind == "ad" else ["cv_soft", "hobby"])
        out.insert(rng.choice([0, len(out)]) if pool != "location" else len(out), doc.noise(pool))
    return [" ".join(out)]


def _skill_paragraphs(doc: _Doc, picks: list[dict], tense: str, layout: str) -> list[str]:
    """The skills of one section as prose, bullets or a mix; returns paragraphs."""
    rng = doc.rng
    mark = rng.choice(BULLETS)
    paras: list[str] = []
    if layout == "prose":
        sents: list[str] = []
        if _shared_level(picks) and rng.random() < 0.5:
            sents.append(doc.statement(picks[0]["level"], tense, picks[0]["area"]))
            frames = AD_FRAMES if doc.kind == "ad" else (ME_PRESENT_FRAMES if tense == "present" else ME_PAST_FRAMES)
            for p, (tpl, form) in zip(picks, rng.sample(frames, len(picks))):
                sents.append(doc.fill(tpl.replace("{a}", doc.activity(p, form))))
        else:
            for p in picks:
                sents += doc.sentence(p, tense)
        if doc.size == "long" and len(picks) > 2 and rng.random() < 0.5:  # split into two paragraphs by skill
            cut = len(sents) // 2 + (len(sents) // 2) % 2
            paras += [" ".join(sents[:cut]), " ".join(sents[cut:])]
        else:
            paras.append(" ".join(sents))
        return paras
    if layout == "bullets":
        lines: list[str] = []
        intro = ""
        if _shared_level(picks) or (len(picks) == 1 and rng.random() < 0.4):
            intro = doc.statement(picks[0]["level"], tense, picks[0]["area"])
            for p in picks:
                lines += doc.bullet_pair(p, tense, mark, with_level=False)
        else:
            for p in picks:
                lines += doc.bullet_pair(p, tense, mark)
        if doc.kind == "ad" and rng.random() < 0.4:
            noise = mark + doc.noise("duty_noise")
            lines.insert(rng.randrange(len(lines) + 1) if not intro else len(lines), noise)
        heading = rng.choice(AD_HEADINGS + (AD_VERB_HEADINGS if intro else ())) if doc.kind == "ad" else ""
        block = "\n".join(([heading] if heading else []) + lines)
        if intro:
            paras.append(intro)
        paras.append(block)
        return paras
    # mixed: the first skill in prose, the rest as bullets after a short "also" heading
    first, rest = picks[0], picks[1:]
    paras.append(" ".join(doc.sentence(first, tense)))
    lines = []
    for p in rest:
        lines += doc.bullet_pair(p, tense, mark)
    also = rng.choice(AD_ALSO) if doc.kind == "ad" else rng.choice(["Other work:", "Also:", "Other responsibilities:"])
    paras.append("\n".join([also] + lines))
    return paras


def _advert(doc: _Doc) -> list[str]:
    rng, long = doc.rng, doc.size == "long"
    paras: list[str] = []
    if rng.random() < 0.85:
        t = doc.title
        paras.append(rng.choice([t, f"{t} – {doc.city}", f"Job title: {t}", f"We're hiring: {t}",
                                 f"{t} ({rng.choice(['permanent', 'contract', '12-month fixed term', 'full time'])})"]))
    about = []
    if rng.random() < (0.85 if long else 0.5):
        about = [doc.noise("company")]
        if rng.random() < 0.4:
            about.append(doc.noise("culture"))
    about_top = rng.random() < 0.7
    if about and about_top:
        paras.append(" ".join(about))
    layout = rng.choice(["prose", "bullets", "mixed"] if len(doc.picks) > 1 else ["prose", "bullets"])
    paras += _skill_paragraphs(doc, doc.picks, "present", layout)
    extra: list[str] = []
    if rng.random() < (0.6 if long else 0.3):
        soft = doc.noises("soft_ad", rng.randint(1, 3))
        if rng.random() < 0.5:
            mark = rng.choice(BULLETS)
            extra.append("\n".join([rng.choice(["About you:", "What we're looking for", "You'll bring:"])]
                                   + [mark + s for s in soft]))
        else:
            extra.append(" ".join(soft))
    if rng.random() < (0.5 if long else 0.3):
        extra.append(doc.tools_line())
    if about and not about_top:
        extra.append(rng.choice(ABOUT_HEADINGS) + "\n" + " ".join(about))
    tail: list[str] = []
    if rng.random() < 0.5:
        tail.append(doc.noise("salary"))
    if rng.random() < 0.6:
        tail.append(doc.noise("location"))
    if rng.random() < (0.8 if long else 0.45):
        ben = doc.noises("benefits", rng.randint(1, 4 if long else 2))
        if len(ben) > 1 and rng.random() < 0.5:
            mark = rng.choice(BULLETS)
            extra.append("\n".join([rng.choice(BENEFIT_HEADINGS)] + [mark + b for b in ben]))
        else:
            tail += ben
    if rng.random() < (0.5 if long else 0.2):
        tail.append(doc.noise("eeo"))
    if rng.random() < (0.6 if long else 0.25):
        tail.append(doc.noise("apply"))
    rng.shuffle(extra)
    paras += extra
    if tail:
        paras.append(" ".join(tail))
    return paras


def _cv(doc: _Doc) -> list[str]:
    rng, long = doc.rng, doc.size == "long"
    paras: list[str] = []
    first = rng.choice(pb.NAMES[0])
    last = rng.choice(pb.NAMES[1])
    r = rng.random()
    if r < 0.35:
        paras.append(f"{first} {last} – {doc.title}")
    elif r < 0.6:
        tools = pb.SKILL_CONTEXT[doc.picks[0]["code"]][2]
        paras.append(" | ".join([doc.title] + rng.sample(tools, min(2, len(tools)))))
    elif r < 0.7:
        paras.append(rng.choice(["Profile", "About me", "Summary"]))
    if rng.random() < (0.8 if long else 0.5):
        paras.append(doc.noise("cv_profile"))
    picks = doc.picks
    if long and len(picks) >= 2 and rng.random() < 0.6:  # current role (present) and a previous one (past)
        cut = rng.randint(1, len(picks) - 1)
        sections = [(picks[:cut], "present"), (picks[cut:], "past")]
    else:
        sections = [(picks, rng.choice(["present", "past"]))]
    use_heading = rng.random() < 0.5
    if use_heading:
        paras.append(rng.choice(ME_HEADINGS))
    years = [("2021 – present", "2017 – 2021"), ("2022–now", "2019–2022"), ("since 2020", "2016 to 2020")][rng.randrange(3)]
    for si, (group, tense) in enumerate(sections):
        layout = rng.choice(["prose", "bullets", "mixed"] if len(group) > 1 else ["prose", "bullets"])
        sec = _skill_paragraphs(doc, group, tense, layout)
        if layout != "prose" and rng.random() < 0.8:  # a role line above a list
            org = doc.org if si == 0 else rng.choice(doc.bank.orgs)
            role = doc.title if si == 0 else rng.choice(pb.SKILL_CONTEXT[group[0]["code"]][0])
            sec.insert(0, f"{org} — {role}, {years[0 if tense == 'present' else 1]}")
        paras += sec
    tail: list[str] = []
    if rng.random() < (0.5 if long else 0.25):
        paras.append(doc.tools_line())
    if rng.random() < (0.5 if long else 0.2):
        paras.append(rng.choice(["Education: ", "", "Qualifications: "]) + doc.noise("education"))
    if rng.random() < (0.6 if long else 0.3):
        tail += doc.noises("cv_soft", rng.randint(1, 2))
    if rng.random() < (0.5 if long else 0.25):
        tail.append(doc.noise("hobby"))
    if tail:
        paras.append(" ".join(tail))
    return paras


def _compose(rng: random.Random, bank: Bank, size: str, picks: list[dict]) -> str:
    doc = _Doc(rng, bank, size, picks)
    if size == "short":
        paras = _short(doc)
    else:
        paras = _advert(doc) if doc.kind == "ad" else _cv(doc)
    text = "\n\n".join(p for p in paras if p.strip())
    if doc.locale == "us":
        text = pb.to_us(text)
        for p in picks:
            p["evidence"] = pb.to_us(p["evidence"])
    return text


# ---------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------
class _Deck:
    """Draws skills evenly: every skill appears once per shuffled pass before any repeats."""

    def __init__(self, rng: random.Random):
        self.rng, self.cards = rng, []

    def draw(self, exclude: set[str]) -> str:
        if not [c for c in self.cards if c not in exclude]:
            fresh = sorted(SCOPE)
            self.rng.shuffle(fresh)
            self.cards += fresh
        i = next(i for i, c in enumerate(self.cards) if c not in exclude)
        return self.cards.pop(i)


def schedule(n: int, seed: int) -> list[tuple[str, list[tuple[str, int]]]]:
    """(size, [(code, level), ...]) for every row: fixed by the seed alone, whatever gets redrawn later."""
    fw = load_framework()
    rng = random.Random(seed)
    deck, out = _Deck(rng), []
    for _ in range(n):
        size = rng.choices(list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()))[0]
        w = SKILL_COUNT_WEIGHTS[size]
        k = rng.choices(list(w), weights=list(w.values()))[0]
        codes: list[str] = []
        for _ in range(k):
            codes.append(deck.draw(set(codes)))
        first = rng.choice(fw.levels_of(codes[0]))
        levels = [first]
        for c in codes[1:]:
            lo, hi = fw.by_code(c).min_level, fw.by_code(c).max_level
            levels.append(min(hi, max(lo, first + rng.choice([-1, 0, 0, 1]))))
        out.append((size, list(zip(codes, levels))))
    return out


class _Guard:
    """What a training/dev row must avoid: gold sentences, near-duplicates of gold inputs, repeats."""

    def __init__(self, gold_text: GoldText | None, index: GoldIndex | None, seen: set[str]):
        self.gold_text, self.index, self.seen = gold_text, index, seen
        self.redrawn = {"shares a gold sentence": 0, "near-duplicates a gold input": 0,
                        "repeats an earlier input": 0, "contains a skill code": 0, "reply too long": 0}

    def reject(self, text: str, reply: str) -> str | None:
        if reply_cost(reply) > MAX_REPLY_COST:
            return "reply too long"
        if normalise(text) in self.seen:
            return "repeats an earlier input"
        if contains_code(text):
            return "contains a skill code"
        if self.gold_text is not None and self.gold_text.shared_sentence(text):
            return "shares a gold sentence"
        if self.index is not None:
            hit = self.index.nearest(text)
            if hit and hit[1] >= GEN_MARGIN:
                return "near-duplicates a gold input"
        return None


def _fits(bank: Bank, labels: list[tuple[str, int]]) -> bool:
    """Whether the shortest allowed phrasings of these skills fit the reply budget (in their -ing forms)."""
    shortest = []
    for code, level in labels:
        ok = [p for p in bank.activities[code] if bank.activity_ok(p)]
        ev = min((pb.inflect(p, "ing") for p in ok), key=len)
        shortest.append({"code": code, "level": level, "evidence": ev})
    return reply_cost(reply_for(shortest)) <= MAX_REPLY_COST


def generate(n: int, seed: int, bank: Bank, prefix: str, width: int, guard: _Guard, with_reply: bool) -> list[dict]:
    fw = load_framework()
    rows = []
    for i, (size, labels) in enumerate(schedule(n, seed)):
        while len(labels) > 1 and not _fits(bank, labels):
            labels = labels[:-1]  # e.g. four skills whose shortest phrasings cannot fit the reply budget
        for attempt in range(MAX_ATTEMPTS):
            rng = random.Random(f"{seed}/{prefix}/{i}/{attempt}")
            picks = [{"code": c, "level": lv} for c, lv in labels]
            text = _compose(rng, bank, size, picks)
            why = guard.reject(text, reply_for(picks))
            if why is None:
                break
            guard.redrawn[why] += 1
        else:
            raise RuntimeError(f"row {prefix}{i + 1}: no clean document in {MAX_ATTEMPTS} attempts")
        guard.seen.add(normalise(text))
        order = sorted(picks, key=lambda p: text.find(p["evidence"]))
        skills = [{"code": p["code"], "name": fw.by_code(p["code"]).name, "level": p["level"],
                   "evidence": p["evidence"]} for p in order]
        assert all(s["evidence"] in text for s in skills), (text, skills)
        row = {"id": f"{prefix}{i + 1:0{width}d}", "input": text, "skills": skills}
        if with_reply:
            row["reply"] = reply_for(skills)
        rows.append(row)
    return rows


def output_paths(root: Path) -> dict[str, Path]:
    return {"gold": root / "gold" / "sfia_gold.jsonl",
            "train": root / "targets" / "sfia" / "data" / "train.jsonl",
            "dev": root / "targets" / "sfia" / "data" / "dev.jsonl"}


def _train_side_items(bank: Bank) -> list[str]:
    """Every phrase of the training side that must not occur in gold text: activity forms, level statement and
    lead-in pieces, noise pieces (4+ words each)."""
    items = pb.bank_phrases(held_out=False)
    for pool in bank.noise.values():
        for s in pool:
            items += _pieces(re.sub(r"^(uk|us):", "", s))
    return items


def build(gold_dir: Path | None = None, log=print) -> dict[str, list[dict]]:
    """All three splits, deterministically, given the gold files present under gold_dir."""
    default_gold = output_paths(Path(__file__).resolve().parents[2])["gold"]
    gold_dir = Path(gold_dir) if gold_dir is not None else default_gold.parent
    held = Bank(held_out=True)
    gold = generate(N_GOLD, GOLD_SEED, held, "g", 3, _Guard(None, None, set()), with_reply=False)

    others = discover_gold_files(gold_dir, exclude=(gold_dir / default_gold.name,))
    sources = [("synthetic gold split", [(i + 1, r["input"]) for i, r in enumerate(gold)])]
    sources += [(str(p), read_gold_texts(p)) for p in others]
    gold_text = GoldText(sources)
    n_texts = sum(len(s[1]) for s in sources[1:])
    log(f"gold texts checked: the synthetic split ({len(gold)} rows) + {len(others)} other gold file(s) "
        f"({n_texts} rows){': ' + ', '.join(p.name for p in others) if others else ''}")

    probe = Bank(held_out=False)
    banned = set(gold_text.found_phrases(_train_side_items(probe)))
    bank = Bank(held_out=False, banned=banned)
    dropped = bank.dropped()
    total = {"activity phrasings": sum(len(v) for v in bank.activities.values()),
             "level statements": sum(len(v) for v in bank.statements.values()),
             "level lead-ins": sum(len(v) for v in bank.leads.values()),
             "noise items": sum(len(v) for v in bank.noise.values())}
    log("phrase bank, training side: dropped as found in gold text: "
        + ", ".join(f"{dropped[k]} of {total[k]} {k}" for k in total))

    index = GoldIndex([t for _, items in sources for _, t in items])
    guard = _Guard(gold_text, index, {normalise(r["input"]) for r in gold})
    train = generate(N_TRAIN, TRAIN_SEED, bank, "t", 4, guard, with_reply=True)
    dev = generate(N_DEV, DEV_SEED, bank, "d", 3, guard, with_reply=True)
    log("training/dev rows redrawn: " + ", ".join(f"{v} {k}" for k, v in guard.redrawn.items()))
    return {"gold": gold, "train": train, "dev": dev}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2],
                    help="repository root to write gold/ and targets/sfia/data/ under (default: this repo)")
    ap.add_argument("--gold-dir", type=Path, default=None,
                    help="folder whose *.jsonl and **/*.jsonl gold files the data must not overlap "
                         "(default: this repository's gold/)")
    args = ap.parse_args(argv)
    splits = build(args.gold_dir)
    for name, path in output_paths(args.root).items():
        write_jsonl(path, splits[name])
        print(f"{path}: {len(splits[name])} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
