"""Refuse training data that overlaps the gold set: the gold set is the exam and must never be trained on.

Whole-row tests on the "input" text of each row (assert_no_contamination, one gold file):
  exact         equal after normalisation (lowercase, punctuation stripped, whitespace collapsed);
  near-duplicate  Jaccard similarity of word 5-gram shingles >= 0.5 (texts under 5 words are one shingle).
An inverted index from shingle to gold rows means each training row is compared only with gold rows that
share at least one shingle, so thousands x 200 rows take milliseconds instead of 600k set comparisons.

Shared-text tests (assert_no_shared_text, any number of gold files), on canonical text (normalised as
above, US spellings mapped to UK ones so "organize" and "organise" compare equal):
  shared sentence  a sentence (split at . ! ? and line breaks, bullet marks dropped) of at least
                   MIN_SENTENCE_WORDS words that occurs in a training input and in a gold input.
                   Headings are layout, not sentences, and are exempt: a line of at most HEADING_WORDS
                   words that is not a list item and does not end in . ! ? ("What you'll do:",
                   "Job title: Data Engineer");
  shared phrase    a phrase-bank phrase of the training side (an activity phrasing in any of its forms,
                   a level statement or lead-in; 4+ words, see sfia/phrasebank.py) that occurs in a
                   training input and anywhere in a gold input.
Gold files are read tolerantly (read_gold_texts): rows without an "input" are skipped, and a line that is
not valid JSON (a draft being written) counts with its raw text, so a broken draft never hides a leak.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import json

from sfia.phrasebank import bank_phrases, to_uk
from sfia.prompting import TargetError, load_jsonl

THRESHOLD = 0.5
SHINGLE = 5
MIN_SENTENCE_WORDS = 4  # shorter "sentences" ("About the role", "Hybrid working") may be shared
HEADING_WORDS = 6
_PUNCT = re.compile(r"[^\w\s]")
_SENT_END = re.compile(r"(?<=[.!?])\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2013]|\d+[.)])\s+")


def normalise(text: str) -> str:
    """Lowercase, punctuation to spaces, whitespace collapsed.

    >>> normalise("  Writes, and MAINTAINS code! ")
    'writes and maintains code'
    """
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def shingles(text: str, n: int = SHINGLE) -> frozenset[str]:
    words = normalise(text).split()
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class Overlap:
    train_index: int  # 0-based row index in the training rows
    gold_index: int
    similarity: float  # 1.0 for an exact match
    exact: bool


class GoldIndex:
    """Gold inputs indexed by normalised text and by shingle, built once and queried per training row."""

    def __init__(self, gold_texts: list[str]):
        self.exact = {}
        for i, t in enumerate(gold_texts):
            self.exact.setdefault(normalise(t), i)
        self.sh = [shingles(t) for t in gold_texts]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sh):
            for g in s:
                self.postings[g].append(i)

    def nearest(self, text: str) -> tuple[int, float, bool] | None:
        """(gold index, similarity, exact) of the most similar gold text, or None when nothing is shared."""
        norm = normalise(text)
        if norm in self.exact:
            return self.exact[norm], 1.0, True
        mine = shingles(text)
        shared = Counter(i for g in mine for i in self.postings.get(g, ()))
        best = None
        for i, inter in shared.items():
            sim = inter / (len(mine) + len(self.sh[i]) - inter)
            if best is None or sim > best[1]:
                best = (i, sim, False)
        return best


def find_overlaps(train_texts: list[str], gold_texts: list[str], threshold: float = THRESHOLD) -> list[Overlap]:
    """Every training text that equals or near-duplicates a gold text, with its closest gold match."""
    index = GoldIndex(gold_texts)
    out = []
    for t, text in enumerate(train_texts):
        hit = index.nearest(text)
        if hit and (hit[2] or hit[1] >= threshold):
            out.append(Overlap(t, hit[0], hit[1], hit[2]))
    return out


def _line_numbers(path: Path) -> list[int]:
    """1-based file line of each non-blank row, matching load_jsonl's row order."""
    with open(path, encoding="utf-8") as f:
        return [n for n, line in enumerate(f, 1) if line.strip()]


def assert_no_contamination(train_path: str | Path, gold_path: str | Path, threshold: float = THRESHOLD) -> None:
    """Raise TargetError (one line: train file:line, gold file:line, similarity, fix) on the first overlap."""
    train_path, gold_path = Path(train_path), Path(gold_path)
    train = load_jsonl(train_path, required=("input",))
    gold = load_jsonl(gold_path, required=("input",))
    hits = find_overlaps([r["input"] for r in train], [r["input"] for r in gold], threshold)
    if not hits:
        return
    h = max(hits, key=lambda o: o.similarity)
    tl, gl = _line_numbers(train_path)[h.train_index], _line_numbers(gold_path)[h.gold_index]
    kind = "is an exact copy (similarity 1.00) of" if h.exact else f"near-duplicates (5-gram Jaccard {h.similarity:.2f} >= {threshold})"
    raise TargetError(
        f"{train_path}:{tl}: training input {kind} gold {gold_path}:{gl} ({len(hits)} overlapping row(s) in all); "
        f"remove or rewrite the overlapping training rows, or regenerate with python targets/sfia/generate.py"
    )


# ---------- shared sentences and phrases ----------

def canon(text: str) -> str:
    """Normalised text with UK spelling: the form every shared-text comparison uses.

    >>> canon("We prioritize the Organization's backlog!")
    'we prioritise the organisation s backlog'
    """
    return normalise(to_uk(text))


def sentences(text: str, min_words: int = MIN_SENTENCE_WORDS) -> list[str]:
    """Canonical sentences of a text with at least min_words words (lines, then . ! ? boundaries); heading
    lines are skipped.

    >>> sentences("Data Engineer\\n- Build the nightly loads. Keep them all running!\\nAbout us")
    ['build the nightly loads', 'keep them all running']
    """
    out = []
    for line in text.splitlines():
        line = line.strip()
        bare = _BULLET.sub("", line)
        if bare == line and len(normalise(line).split()) <= HEADING_WORDS and not line.endswith((".", "!", "?")):
            continue  # a heading or title line
        for part in _SENT_END.split(bare):
            c = canon(part)
            if len(c.split()) >= min_words:
                out.append(c)
    return out


def read_gold_texts(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line, text) for every gold row with a string "input"; an invalid JSON line counts with its raw
    text (a draft may be half written); rows of other shapes (no "input") are skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                out.append((n, line))
                continue
            if isinstance(row, dict) and isinstance(row.get("input"), str):
                out.append((n, row["input"]))
    return out


def discover_gold_files(gold_dir: str | Path, exclude: tuple[str | Path, ...] = ()) -> list[Path]:
    """Every gold/*.jsonl and gold/**/*.jsonl that holds at least one text row, sorted, minus `exclude`."""
    gold_dir = Path(gold_dir)
    skip = {Path(p).resolve() for p in exclude}
    files = sorted(set(gold_dir.glob("*.jsonl")) | set(gold_dir.glob("**/*.jsonl")))
    return [p for p in files if p.resolve() not in skip and p.is_file() and read_gold_texts(p)]


class GoldText:
    """Gold inputs from several sources, indexed for the shared-sentence and shared-phrase tests.

    sources: (label, [(line, text), ...]) pairs; the label (a file path) and line name a hit.
    """

    def __init__(self, sources: list[tuple[str, list[tuple[int, str]]]], min_words: int = MIN_SENTENCE_WORDS):
        self.min_words = min_words
        self.sentence_at: dict[str, tuple[str, int]] = {}
        self.rows: list[tuple[str, int, str]] = []  # label, line, " canonical text "
        for label, items in sources:
            for line, text in items:
                for s in sentences(text, min_words):
                    self.sentence_at.setdefault(s, (label, line))
                self.rows.append((label, line, f" {canon(text)} "))
        self.blob = " | ".join(r[2] for r in self.rows)

    def find_phrase(self, phrase: str) -> tuple[str, int] | None:
        """Where a phrase first occurs (whole words, canonical form) in any gold text, else None."""
        p = f" {canon(phrase)} "
        if len(p) <= 2 or p not in self.blob:
            return None
        return next((label, line) for label, line, t in self.rows if p in t)

    def found_phrases(self, phrases: list[str]) -> dict[str, tuple[str, int]]:
        """The canonical phrases (of those given) that occur in gold text, with their first gold location."""
        out = {}
        for ph in phrases:
            hit = self.find_phrase(ph)
            if hit:
                out[canon(ph)] = hit
        return out

    def shared_sentence(self, text: str) -> tuple[str, tuple[str, int]] | None:
        for s in sentences(text, self.min_words):
            if s in self.sentence_at:
                return s, self.sentence_at[s]
        return None


def assert_no_shared_text(train_file: str | Path, gold_files: list[str | Path] | tuple[str | Path, ...],
                          phrases: list[str] | None = None) -> None:
    """Raise TargetError (one line: train file:line, gold file:line, the shared text, the fix) when a training
    input shares a sentence or a phrase-bank phrase with any gold file. `phrases` defaults to the training
    side of sfia/phrasebank.py (4+ words)."""
    train_file = Path(train_file)
    train = load_jsonl(train_file, required=("input",))
    lines = _line_numbers(train_file)
    gold = GoldText([(str(g), read_gold_texts(g)) for g in gold_files])
    found = gold.found_phrases(bank_phrases() if phrases is None else phrases)
    hits = []
    for i, row in enumerate(train):
        shared = gold.shared_sentence(row["input"])
        if shared:
            hits.append((i, "sentence", shared[0], shared[1]))
            continue
        if found:
            text = f" {canon(row['input'])} "
            for ph, where in found.items():
                if f" {ph} " in text:
                    hits.append((i, "phrase-bank phrase", ph, where))
                    break
    if not hits:
        return
    i, kind, what, (gfile, gline) = hits[0]
    raise TargetError(
        f"{train_file}:{lines[i]}: training input shares the {kind} {what!r} with gold {gfile}:{gline} "
        f"({len(hits)} row(s) share gold text in all); remove or rewrite those rows, or regenerate with "
        f"python targets/sfia/generate.py (it drops phrases and sentences found in gold files)"
    )
