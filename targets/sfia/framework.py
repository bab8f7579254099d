"""The SFIA 9 skills as data: codes, names, categories, level ranges, and lookups.

Why this file exists: the score needs to know which codes and names are real (hallucination) and the
generator needs each skill's level range. The facts (code, name, category, level range) ship in
`skills.tsv`; the one-line descriptions in `descriptions.tsv` are our own words, because the SFIA
Foundation's descriptive text is licensed. A user who downloads the official spreadsheet can run
`python targets/sfia/convert_official.py SFIA-9.xlsx`; its output in the user cache folder is then picked
up here (`Skill.official_description`, `Skill.level_text`), never committed to the repo.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKILLS_TSV = HERE / "skills.tsv"
DESCRIPTIONS_TSV = HERE / "descriptions.tsv"
OFFICIAL_TEXT_FILE = "sfia9_text.json"

# The generic levels of responsibility (names only; the guiding phrases are public, the essences are not).
LEVEL_NAMES: dict[int, str] = {
    1: "Follow",
    2: "Assist",
    3: "Apply",
    4: "Enable",
    5: "Ensure/advise",
    6: "Initiate/influence",
    7: "Set strategy/inspire/mobilise",
}


@dataclass(frozen=True)
class Skill:
    code: str
    name: str
    category: str
    subcategory: str
    min_level: int
    max_level: int
    description: str  # our own one-liner
    official_description: str | None = None  # from the user's spreadsheet, if converted
    level_text: dict[int, str] = field(default_factory=dict)  # official per-level text, if converted

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.min_level, self.max_level + 1))

    @property
    def text(self) -> str:
        """The best description available: the official one when the user converted it, else ours."""
        return self.official_description or self.description


def official_text_dir() -> Path:
    """Where convert_official writes and framework reads the official text (a user cache, never the repo).

    AUTOLOOP_SFIA_DIR overrides; else $AUTOLOOP_CACHE_DIR/sfia; else $XDG_CACHE_HOME/autoloop/sfia;
    else ~/.cache/autoloop/sfia.
    """
    if os.environ.get("AUTOLOOP_SFIA_DIR"):
        return Path(os.environ["AUTOLOOP_SFIA_DIR"]).expanduser()
    if os.environ.get("AUTOLOOP_CACHE_DIR"):
        return Path(os.environ["AUTOLOOP_CACHE_DIR"]).expanduser() / "sfia"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "autoloop" / "sfia"


def norm_name(name: str) -> str:
    """Case-insensitive, whitespace-collapsed key for skill names."""
    return re.sub(r"\s+", " ", name).strip().casefold()


class Framework:
    """All 147 skills with lookups. Build it with `load_framework()` (cached)."""

    def __init__(self, skills: list[Skill]):
        self.skills: dict[str, Skill] = {s.code: s for s in skills}
        self._by_name: dict[str, str] = {norm_name(s.name): s.code for s in skills}

    def __len__(self) -> int:
        return len(self.skills)

    def by_code(self, code: str) -> Skill | None:
        return self.skills.get(code.strip().upper()) if isinstance(code, str) else None

    def by_name(self, name: str) -> Skill | None:
        code = self._by_name.get(norm_name(name)) if isinstance(name, str) else None
        return self.skills[code] if code else None

    def lookup(self, code_or_name: str) -> Skill | None:
        """A four-letter code (any case) or a full skill name (any case); None when not in the framework."""
        return self.by_code(code_or_name) or self.by_name(code_or_name)

    def levels_of(self, code: str) -> tuple[int, ...]:
        s = self.by_code(code)
        if s is None:
            raise KeyError(f"{code!r} is not an SFIA 9 skill code")
        return s.levels

    def categories(self) -> list[str]:
        return sorted({s.category for s in self.skills.values()})


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _read_official(text_dir: Path) -> dict:
    p = text_dir / OFFICIAL_TEXT_FILE
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("skills") or {}
    except (OSError, ValueError, AttributeError):
        return {}  # a broken cache must not stop scoring; rerun convert_official to fix it


@lru_cache(maxsize=4)
def _load(text_dir: str) -> Framework:
    own = {r["code"]: r["description"] for r in _read_tsv(DESCRIPTIONS_TSV)}
    official = _read_official(Path(text_dir))
    skills = []
    for r in _read_tsv(SKILLS_TSV):
        off = official.get(r["code"]) or {}
        skills.append(
            Skill(
                code=r["code"],
                name=r["name"],
                category=r["category"],
                subcategory=r["subcategory"],
                min_level=int(r["min_level"]),
                max_level=int(r["max_level"]),
                description=own[r["code"]],
                official_description=off.get("description") or None,
                level_text={int(k): v for k, v in (off.get("levels") or {}).items()},
            )
        )
    return Framework(skills)


def load_framework(text_dir: Path | None = None) -> Framework:
    """The framework, with the official text merged in when the user converted the spreadsheet."""
    return _load(str(text_dir if text_dir is not None else official_text_dir()))


def lookup(code_or_name: str) -> Skill | None:
    return load_framework().lookup(code_or_name)


def levels_of(code: str) -> tuple[int, ...]:
    """The levels at which SFIA 9 defines the skill, e.g. levels_of("ARCH") == (4, 5, 6)."""
    return load_framework().levels_of(code)
