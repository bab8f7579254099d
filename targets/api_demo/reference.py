"""Plain-Python answers to every endpoint, computed from the raw tables (no SQL logic).

The gold hashes come from here, not from the service, so a wrong query formulation or a
wrong cache is caught against an independent implementation.
"""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from api_demo.server import stat_row
from autoloop.services.calls import response_hash  # noqa: F401 (the hash the gold file holds)


class Reference:
    def __init__(self, db: Path):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            self.profiles = {r[0]: list(r) for r in con.execute(
                "SELECT id, name, email, location, years, available FROM profiles")}
            self.skills: dict[int, dict[str, int]] = defaultdict(dict)
            for pid, skill, level in con.execute("SELECT profile_id, skill, level FROM profile_skills"):
                self.skills[pid][skill] = level
        finally:
            con.close()

    def answer(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        parts = urlsplit(path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        seg = [s for s in parts.path.split("/") if s]
        if method == "POST" and len(seg) == 3 and seg[0] == "profiles" and seg[2] == "availability":
            pid = int(seg[1])
            if pid not in self.profiles:
                return 404, {"error": f"not found: no profile {pid}"}
            self.profiles[pid][5] = int(bool(body["available"]))
            return 200, {"id": pid, "available": bool(body["available"])}
        if seg == ["search"]:
            skill, lvl = q["skill"], int(q["min_level"])
            hits = [(sk[skill], p) for pid, sk in self.skills.items() if sk.get(skill, 0) >= lvl
                    for p in [self.profiles[pid]]]
            hits.sort(key=lambda h: (-h[0], -h[1][4], h[1][0]))
            res = [{"id": p[0], "name": p[1], "location": p[3], "years": p[4], "available": bool(p[5]), "level": lv}
                   for lv, p in hits[:20]]
            return 200, {"skill": skill, "min_level": lvl, "results": res}
        if len(seg) == 2 and seg[0] == "profiles":
            pid = int(seg[1])
            p = self.profiles.get(pid)
            if p is None:
                return 404, {"error": f"not found: no profile {pid}"}
            skills = [{"skill": s, "level": lv} for s, lv in sorted(self.skills[pid].items())]
            return 200, {"id": p[0], "name": p[1], "email": p[2], "location": p[3], "years": p[4],
                         "available": bool(p[5]), "skills": skills}
        if seg == ["stats", "skills"]:
            loc = q["location"]
            agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            for pid, p in self.profiles.items():
                if p[3] == loc:
                    for skill, lv in self.skills[pid].items():
                        a = agg[skill]
                        a[0] += 1
                        a[1] += p[4]
                        a[2] += lv
                        a[3] += p[5]
            return 200, {"location": loc, "skills": [stat_row(s, *agg[s]) for s in sorted(agg)]}
        raise ValueError(f"reference has no answer for {method} {path}")
