"""Convert the official SFIA 9 spreadsheet (which a user downloads from sfia-online.org) into a local cache.

    python targets/sfia/convert_official.py SFIA-9.xlsx [--out DIR]

Why: the SFIA Foundation licenses the descriptive text, so the repo ships only codes, names, ranges and
our own one-liners. A user who has the spreadsheet gets the full text by running this once; the output
(DIR/sfia9_text.json, default ~/.cache/autoloop/sfia/, see framework.official_text_dir) is read by
framework.py and never written inside the repo.

Input: the .xlsx itself (read with zipfile + xml.etree, no extra dependency) or a CSV export of its skills
sheet. The SFIA 9 skills sheet has the header
    #, Levels, (6 blank), Code, URL, Skill, Category, Subcategory, Overall description, Guidance notes,
    Level 1 description, ..., Level 7 description
Columns are found by header name, not position, so reordered or renamed exports still work:
    code         "Code" / "Skill code" / "SFIA code"          (required)
    name         "Skill" / "Skill name" / "Name"
    description  "Overall description" / "Description" / "Skill description"
    guidance     any header containing "guidance"
    level N      "Level N description" or "Level N"           (at least one required)
The header may sit below title rows (the first 30 rows are searched); in a workbook, every sheet is tried
and the first with such a header is used. Rows whose code is not four letters are skipped.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

if __package__ in (None, ""):  # run as a script: make `sfia` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfia.framework import OFFICIAL_TEXT_FILE, load_framework, official_text_dir  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
       "pr": "http://schemas.openxmlformats.org/package/2006/relationships"}
_RID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_LEVEL = re.compile(r"^level\s*([1-7])(\s+description)?$")


class ConvertError(Exception):
    """One line: what is wrong with which file, and the fix."""


# ---------- reading ----------

def _col_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref or "")
    if not letters:
        return -1
    n = 0
    for ch in letters.group(0):
        n = n * 26 + ord(ch) - 64
    return n - 1


def _text_of(el: ET.Element | None) -> str:
    """All <t> text under a shared-string or inline-string element (plain or rich text runs)."""
    if el is None:
        return ""
    return "".join(t.text or "" for t in el.iter(f"{{{_NS['m']}}}t"))


def _sheet_rows(xml: bytes, shared: list[str]) -> list[list[str]]:
    rows = []
    for row in ET.fromstring(xml).iter(f"{{{_NS['m']}}}row"):
        cells: dict[int, str] = {}
        for pos, c in enumerate(row.findall("m:c", _NS)):
            idx = _col_index(c.get("r", "")) if c.get("r") else pos
            t, v = c.get("t"), c.find("m:v", _NS)
            if t == "s" and v is not None:
                val = shared[int(v.text)]
            elif t == "inlineStr":
                val = _text_of(c.find("m:is", _NS))
            else:
                val = v.text if v is not None and v.text is not None else ""
            cells[idx] = val
        rows.append([cells.get(i, "") for i in range(max(cells) + 1)] if cells else [])
    return rows


def read_xlsx(path: Path) -> dict[str, list[list[str]]]:
    """{sheet name: rows of cell strings} for every worksheet, in workbook order."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        shared = []
        if "xl/sharedStrings.xml" in names:
            shared = [_text_of(si) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", _NS)]
        rels = {r.get("Id"): r.get("Target") for r in ET.fromstring(z.read("xl/_rels/workbook.xml.rels")).findall("pr:Relationship", _NS)}
        out = {}
        for sh in ET.fromstring(z.read("xl/workbook.xml")).iter(f"{{{_NS['m']}}}sheet"):
            target = rels.get(sh.get(_RID), "")
            member = target.lstrip("/") if target.startswith("/") else "xl/" + target
            if member in names:
                out[sh.get("name", member)] = _sheet_rows(z.read(member), shared)
        return out


def read_csv(path: Path) -> dict[str, list[list[str]]]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text[:20000], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return {path.stem: [row for row in csv.reader(io.StringIO(text), dialect)]}


# ---------- understanding ----------

def detect_columns(header: list[str]) -> dict[str, int]:
    """Map our field names (code, name, description, guidance, level1..level7, ...) to column indexes."""
    cols: dict[str, int] = {}
    for i, raw in enumerate(header):
        h = " ".join(str(raw).split()).casefold()
        m = _LEVEL.match(h)
        if m:
            cols.setdefault(f"level{m.group(1)}", i)
        elif h in ("code", "skill code", "sfia code", "skillcode"):
            cols.setdefault("code", i)
        elif h in ("skill", "skill name", "name"):
            cols.setdefault("name", i)
        elif h in ("overall description", "description", "skill description"):
            cols.setdefault("description", i)
        elif "guidance" in h:
            cols.setdefault("guidance", i)
        elif h in ("category", "subcategory"):
            cols.setdefault(h, i)
    return cols


def find_table(sheets: dict[str, list[list[str]]]) -> tuple[str, int, dict[str, int]]:
    for name, rows in sheets.items():
        for r, row in enumerate(rows[:30]):
            cols = detect_columns(row)
            if "code" in cols and any(k.startswith("level") for k in cols):
                return name, r, cols
    raise ValueError("no sheet has a header row with a 'Code' column and 'Level N description' columns")


def _clean(s: str) -> str:
    return "\n".join(line.strip() for line in str(s).replace("\r\n", "\n").replace("\r", "\n").strip().split("\n"))


def extract(sheets: dict[str, list[list[str]]]) -> tuple[dict, dict]:
    """(skills by code, info about where they came from)."""
    sheet, header_row, cols = find_table(sheets)
    skills = {}
    for row in sheets[sheet][header_row + 1:]:
        def cell(key: str) -> str:
            i = cols.get(key)
            return _clean(row[i]) if i is not None and i < len(row) else ""
        code = cell("code").upper()
        if not re.fullmatch(r"[A-Z]{4}", code):
            continue
        levels = {str(n): cell(f"level{n}") for n in range(1, 8) if cell(f"level{n}")}
        skills[code] = {"name": cell("name"), "description": cell("description"),
                        "guidance": cell("guidance"), "levels": levels}
    return skills, {"sheet": sheet, "header_row": header_row + 1, "columns": cols}


# ---------- command line ----------

def convert(src: Path, out_dir: Path) -> tuple[Path, dict]:
    if not src.is_file():
        raise ConvertError(f"{src}: no such file; download the SFIA 9 spreadsheet from sfia-online.org and pass its path")
    suffix = src.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            sheets = read_xlsx(src)
        elif suffix in (".csv", ".tsv", ".txt"):
            sheets = read_csv(src)
        else:
            raise ConvertError(f"{src}: unsupported file type {suffix or '(none)'}; pass the .xlsx or a .csv export of its skills sheet")
    except (zipfile.BadZipFile, KeyError, ET.ParseError) as e:
        raise ConvertError(f"{src}: not a readable .xlsx workbook ({type(e).__name__}); re-download it or export the skills sheet as CSV") from None
    except UnicodeDecodeError:
        raise ConvertError(f"{src}: not UTF-8 text; export the skills sheet as CSV UTF-8") from None
    try:
        skills, info = extract(sheets)
    except ValueError as e:
        raise ConvertError(f"{src}: {e}; pass the SFIA skills sheet (see the header list in convert_official.py)") from None
    if not skills:
        raise ConvertError(f"{src}: header found on sheet {info['sheet']!r} but no row has a four-letter skill code; check the file is the SFIA skills sheet")
    out_dir = out_dir.expanduser().resolve()
    if out_dir == REPO_ROOT or REPO_ROOT in out_dir.parents:
        raise ConvertError(f"{out_dir}: is inside the repository; the SFIA text is licensed and must not be committed, choose a folder outside it (default {official_text_dir()})")
    out_dir.mkdir(parents=True, exist_ok=True)
    info.update(source=src.name, sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
                unknown_codes=sorted(set(skills) - set(load_framework(out_dir).skills)))
    dest = out_dir / OFFICIAL_TEXT_FILE
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "skills": skills}, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(dest)
    return dest, {**info, "skills": len(skills), "level_texts": sum(len(s["levels"]) for s in skills.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Convert the official SFIA 9 spreadsheet into the local text cache.")
    ap.add_argument("spreadsheet", type=Path, help="SFIA 9 .xlsx (or a CSV export of its skills sheet)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default {official_text_dir()})")
    args = ap.parse_args(argv)
    try:
        dest, info = convert(args.spreadsheet, args.out or official_text_dir())
    except ConvertError as e:
        print(f"convert_official: {e}", file=sys.stderr)
        return 2
    extra = f"; {len(info['unknown_codes'])} code(s) not in skills.tsv: {' '.join(info['unknown_codes'])}" if info["unknown_codes"] else ""
    print(f"wrote {info['skills']} skills and {info['level_texts']} level texts from sheet {info['sheet']!r} to {dest}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
