"""Generate the profiles database once (seeded) into a cache folder; never committed.

The schema is what a recruitment search service plausibly has: profiles, and the skills each
profile claims (code + SFIA-like level 1-7). Optional indexes are *not* created here: they are
knobs, added per service instance by `prepare_instance_db`.
"""
from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path

SKILLS = (
    "PROG DTAN DBDS DENG SWDN TEST ARCH ITSP SCTY PENT NTDS NTAS CLOP DESN USEV BUAN REQM PRMG "
    "PROF RLMT DLMG METL INCA GOVN ITMG SORC SUPP ITOP SYSP STMG RELM CFMG ASUP HSIN MLNG DATS "
    "VISL DBAD INOV EMRG"
).split()
LOCATIONS = (
    "London Manchester Leeds Bristol Glasgow Edinburgh Cardiff Belfast Birmingham Liverpool "
    "Newcastle Sheffield Nottingham Leicester Brighton Oxford Cambridge Reading York Aberdeen "
    "Dublin Paris Berlin Madrid Lisbon Amsterdam Brussels Vienna Prague Warsaw"
).split()
FIRST = "Ada Alan Grace Linus Margaret Ken Barbara Edsger Donald Frances John Radia Tim Vint Guido Niklaus".split()
LAST = "Lovelace Turing Hopper Torvalds Hamilton Thompson Liskov Dijkstra Knuth Allen Backus Perlman Berners Cerf Rossum Wirth".split()

OPTIONAL_INDEXES = {
    "index_skill_level": "CREATE INDEX IF NOT EXISTS idx_skill_level ON profile_skills(skill, level)",
    "index_location": "CREATE INDEX IF NOT EXISTS idx_location ON profiles(location)",
}


def default_cache_dir() -> Path:
    """runs/api_demo/ of this repository (ignored by git), or $AUTOLOOP_API_DEMO_CACHE."""
    env = os.environ.get("AUTOLOOP_API_DEMO_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "runs" / "api_demo"


def db_path(rows: int, seed: int, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / f"profiles-r{rows}-s{seed}.sqlite"


def ensure_db(rows: int = 200_000, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """Return the cached base database, generating it first if needed (atomic rename: no half files)."""
    path = db_path(rows, seed, cache_dir)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    _generate(tmp, rows, seed)
    os.replace(tmp, path)
    return path


def _generate(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    try:
        con.executescript(
            """
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE profiles (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
                location TEXT NOT NULL, years INTEGER NOT NULL, available INTEGER NOT NULL, bio TEXT NOT NULL);
            CREATE TABLE profile_skills (profile_id INTEGER NOT NULL, skill TEXT NOT NULL, level INTEGER NOT NULL,
                PRIMARY KEY (profile_id, skill)) WITHOUT ROWID;
            """
        )
        # Skewed popularity, as in real candidate pools: a few skills and cities dominate.
        skill_w = [1.0 / (i + 1) ** 0.7 for i in range(len(SKILLS))]
        loc_w = [1.0 / (i + 1) ** 0.8 for i in range(len(LOCATIONS))]
        prof, sk = [], []
        for pid in range(1, rows + 1):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            loc = rng.choices(LOCATIONS, loc_w)[0]
            years = min(40, int(rng.expovariate(1 / 8)))
            bio = " ".join(rng.choices(SKILLS, k=12)).lower()
            prof.append((pid, name, f"user{pid}@example.org", loc, years, int(rng.random() < 0.6), bio))
            for code in set(rng.choices(SKILLS, skill_w, k=rng.randint(1, 5))):
                sk.append((pid, code, max(1, min(7, int(rng.gauss(3 + years / 10, 1.2))))))
            if len(prof) >= 20_000:
                con.executemany("INSERT INTO profiles VALUES (?,?,?,?,?,?,?)", prof)
                con.executemany("INSERT INTO profile_skills VALUES (?,?,?)", sk)
                prof, sk = [], []
        con.executemany("INSERT INTO profiles VALUES (?,?,?,?,?,?,?)", prof)
        con.executemany("INSERT INTO profile_skills VALUES (?,?,?)", sk)
        con.commit()
    finally:
        con.close()


def prepare_instance_db(base: Path, dest: Path, indexes: list[str]) -> Path:
    """Copy the base database for one service instance (it takes writes) and add the chosen indexes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base, dest)
    con = sqlite3.connect(dest)
    try:
        for name in indexes:
            con.execute(OPTIONAL_INDEXES[name])
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()
    return dest
