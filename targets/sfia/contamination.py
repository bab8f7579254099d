"""Refuse training data that overlaps the gold set: the gold set is the exam and must never be trained on.

Two tests on the "input" text of each row:
  exact         equal after normalisation (lowercase, punctuation stripped, whitespace collapsed);
  near-duplicate  Jaccard similarity of word 5-gram shingles >= 0.5 (texts under 5 words are one shingle).
An inverted index from shingle to gold rows means each training row is compared only with gold rows that
share at least one shingle, so 2000 x 200 rows take a few milliseconds instead of 400k set comparisons.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from sfia.prompting import TargetError, load_jsonl

THRESHOLD = 0.5
SHINGLE = 5
_PUNCT = re.compile(r"[^\w\s]")


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
