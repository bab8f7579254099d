"""SFIA package data: framework, official-spreadsheet converter, generator, gold/train files, contamination."""
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "targets"))

from autoloop.target import TargetError  # noqa: E402
from sfia import DEV_PATH, GOLD_PATH, TRAIN_PATH  # noqa: E402
from sfia import generate as gen  # noqa: E402
from sfia.contamination import assert_no_contamination, find_overlaps, shingles  # noqa: E402
from sfia.cues import LEVEL_CUES, SKILL_CUES  # noqa: E402
from sfia.forge_score import reward_components  # noqa: E402
from sfia.framework import LEVEL_NAMES, load_framework  # noqa: E402
from sfia.prompting import SYSTEM_PROMPT, build_messages, load_jsonl  # noqa: E402

PY = sys.executable
CONVERTER = ROOT / "targets" / "sfia" / "convert_official.py"


def run(args, **kw):
    return subprocess.run([PY, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    return load_framework(tmp_path_factory.mktemp("no_official"))  # no official text: our own descriptions


# ---------- framework ----------

def test_framework_has_147_skills_in_6_categories(fw):
    assert len(fw) == 147
    assert fw.categories() == ["Change and transformation", "Delivery and operation", "Development and implementation",
                               "People and skills", "Relationships and engagement", "Strategy and architecture"]
    for s in fw.skills.values():
        assert re.fullmatch(r"[A-Z]{4}", s.code) and 1 <= s.min_level <= s.max_level <= 7
        assert s.description and s.official_description is None and s.text == s.description


def test_lookups_by_code_and_name(fw):
    assert fw.lookup("prog").name == "Programming/software development"
    assert fw.by_name("  programming/software   DEVELOPMENT ").code == "PROG"
    assert fw.lookup("Solution architecture").code == "ARCH"
    assert fw.levels_of("ARCH") == (4, 5, 6)
    assert fw.levels_of("ITOP") == (1, 2, 3, 4, 5)
    assert fw.lookup("ZZZZ") is None and fw.by_name("Wizardry") is None
    with pytest.raises(KeyError):
        fw.levels_of("ZZZZ")
    assert LEVEL_NAMES[1] == "Follow" and LEVEL_NAMES[7] == "Set strategy/inspire/mobilise" and len(LEVEL_NAMES) == 7


def test_descriptions_cover_every_skill_once():
    lines = (ROOT / "targets/sfia/descriptions.tsv").read_text().splitlines()[1:]
    codes = [l.split("\t")[0] for l in lines]
    assert sorted(codes) == sorted(load_framework().skills) and len(set(codes)) == 147


# ---------- official spreadsheet converter ----------

HEADER = (["#", "Levels"] + [""] * 6 + ["Code", "URL", "Skill", "Category", "Subcategory", "Overall description",
                                         "Guidance notes"] + [f"Level {n} description" for n in range(1, 8)])
ROWS = [
    ["1", "", "", "", "4", "5", "6", "7", "ITSP", "https://example.invalid/ITSP", "Strategic planning",
     "Strategy and architecture", "Strategy and planning", "Official overall text for ITSP.", "Notes.",
     "", "", "", "Level four text.\r\nSecond line.", "Level five text.", "Level six text.", "Level seven text."],
    [],
    ["2", "", "", "", "", "", "6", "7", "ISCO", "u", "Information systems coordination", "c", "s",
     "Official ISCO text.", "", "", "", "", "", "", "Six.", "Seven."],
]


def _col(i):
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def write_xlsx(path, rows):
    """A real (minimal) xlsx: title row, the official header, shared strings, an inline string, rich text."""
    shared, cells_xml = [], []
    all_rows = [["SFIA 9 skills"], HEADER] + rows
    for r, row in enumerate(all_rows, 1):
        cells = []
        for c, val in enumerate(row):
            if val == "":
                continue
            ref = f"{_col(c)}{r}"
            if val.isdigit():
                cells.append(f'<c r="{ref}"><v>{val}</v></c>')
            elif val == "Official ISCO text.":
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{val}</t></is></c>')
            else:
                shared.append(val)
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
        cells_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'

    def si(v):
        if v == "Strategic planning":  # rich text run, as Excel writes formatted cells
            return '<si><r><t>Strategic </t></r><r><rPr><b/></rPr><t>planning</t></r></si>'
        return f'<si><t xml:space="preserve">{v.replace("&", "&amp;")}</t></si>'

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns} {rns}><sheets>'
                   '<sheet name="Read me" sheetId="1" r:id="rId1"/><sheet name="Skills" sheetId="2" r:id="rId2"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Type="ws" Target="worksheets/sheet1.xml"/>'
                   '<Relationship Id="rId2" Type="ws" Target="/xl/worksheets/sheet2.xml"/></Relationships>')
        z.writestr("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst {ns}>{"".join(si(v) for v in shared)}</sst>')
        z.writestr("xl/worksheets/sheet1.xml", f'<?xml version="1.0"?><worksheet {ns}><sheetData><row r="1">'
                   '<c r="A1" t="inlineStr"><is><t>Licence notes</t></is></c></row></sheetData></worksheet>')
        z.writestr("xl/worksheets/sheet2.xml", f'<?xml version="1.0"?><worksheet {ns}><sheetData>{"".join(cells_xml)}</sheetData></worksheet>')


def _check_converted(out_dir):
    data = json.loads((out_dir / "sfia9_text.json").read_text())
    assert set(data["skills"]) == {"ITSP", "ISCO"}
    f = load_framework(out_dir)
    itsp = f.by_code("ITSP")
    assert itsp.official_description == "Official overall text for ITSP." and itsp.text == itsp.official_description
    assert itsp.level_text == {4: "Level four text.\nSecond line.", 5: "Level five text.", 6: "Level six text.",
                               7: "Level seven text."}
    assert f.by_code("ISCO").official_description == "Official ISCO text." and set(f.by_code("ISCO").level_text) == {6, 7}
    assert f.by_code("PROG").official_description is None  # skills not in the file keep our own text
    return data


def test_convert_xlsx_to_user_cache(tmp_path):
    src = tmp_path / "SFIA-9.xlsx"
    write_xlsx(src, ROWS)
    cache = tmp_path / "cache" / "sfia"
    r = run([CONVERTER, src, "--out", cache])
    assert r.returncode == 0, r.stderr
    assert "wrote 2 skills and 6 level texts from sheet 'Skills'" in r.stdout
    data = _check_converted(cache)
    assert data["skills"]["ITSP"]["name"] == "Strategic planning" and data["header_row"] == 2


def test_convert_default_dir_is_read_by_framework_in_a_new_process(tmp_path):
    src = tmp_path / "SFIA-9.xlsx"
    write_xlsx(src, ROWS)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("AUTOLOOP_SFIA_DIR", None)
    env.pop("AUTOLOOP_CACHE_DIR", None)
    assert run([CONVERTER, src], env=env).returncode == 0
    assert (tmp_path / "xdg/autoloop/sfia/sfia9_text.json").is_file()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from sfia.framework import lookup; "
            "print(lookup('ITSP').text)")
    r = run(["-c", code, ROOT / "targets"], env=env)
    assert r.stdout.strip() == "Official overall text for ITSP.", r.stderr


def test_convert_csv_export(tmp_path):
    import csv
    src = tmp_path / "skills.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER] + ROWS)
    r = run([CONVERTER, src, "--out", tmp_path / "out"])
    assert r.returncode == 0, r.stderr
    _check_converted(tmp_path / "out")


@pytest.mark.parametrize("case", ["missing", "not_zip", "no_header", "wrong_type", "inside_repo"])
def test_convert_bad_input_is_one_line_exit_2(tmp_path, case):
    src = tmp_path / "SFIA-9.xlsx"
    out = tmp_path / "out"
    if case == "not_zip":
        src.write_text("this is not a workbook")
    elif case == "no_header":
        write_xlsx(src, [])
        with zipfile.ZipFile(src) as z:
            files = {n: z.read(n) for n in z.namelist()}
        files["xl/sharedStrings.xml"] = files["xl/sharedStrings.xml"].replace(b">Code<", b">Kode<")
        with zipfile.ZipFile(src, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
    elif case == "wrong_type":
        src = tmp_path / "SFIA-9.pdf"
        src.write_text("%PDF")
    elif case == "inside_repo":
        write_xlsx(src, ROWS)
        out = ROOT / "targets" / "sfia" / "official"
    r = run([CONVERTER, src, "--out", out])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src if case != "inside_repo" else out) in lines[0] and ";" in lines[0], r.stderr
    assert not (ROOT / "targets" / "sfia" / "official").exists()


# ---------- generator and committed files ----------

def test_generator_rewrites_committed_files_byte_identically(tmp_path):
    r = run([ROOT / "targets/sfia/generate.py", "--root", tmp_path])
    assert r.returncode == 0, r.stderr
    for committed in (GOLD_PATH, TRAIN_PATH, DEV_PATH):
        fresh = tmp_path / committed.relative_to(ROOT)
        assert fresh.read_bytes() == committed.read_bytes(), f"{committed} differs from the generator's output"


def _check_rows(rows, fw, prefix, width):
    assert [r["id"] for r in rows] == [f"{prefix}{i:0{width}d}" for i in range(1, len(rows) + 1)]
    assert len({r["input"] for r in rows}) == len(rows)
    for r in rows:
        assert 1 <= len(r["skills"]) <= 3 and 1 <= gen.count_sentences(r["input"]) <= 4, r
        assert gen.contains_code(r["input"]) is None, r["input"]
        assert len({s["code"] for s in r["skills"]}) == len(r["skills"])
        for s in r["skills"]:
            assert s["code"] in SKILL_CUES and s["name"] == fw.by_code(s["code"]).name
            assert s["level"] in fw.levels_of(s["code"])
            assert s["evidence"] in r["input"] and len(s["evidence"].split()) >= 3


def test_gold_file(fw):
    gold = load_jsonl(GOLD_PATH, required=("id", "input", "skills"))
    assert len(gold) == 200
    _check_rows(gold, fw, "g", 3)
    assert {s["code"] for r in gold for s in r["skills"]} == set(SKILL_CUES)  # every working skill is examined
    assert {s["level"] for r in gold for s in r["skills"]} == set(range(1, 8))


def test_train_and_dev_files_with_teacher_replies(fw):
    train, dev = load_jsonl(TRAIN_PATH, ("id", "input", "skills", "reply")), load_jsonl(DEV_PATH, ("reply",))
    assert len(train) == 2000 and len(dev) == 100
    _check_rows(train, fw, "t", 4)
    _check_rows(dev, fw, "d", 3)
    assert not {r["input"] for r in train} & {r["input"] for r in dev}
    for r in train + dev:
        assert reward_components(r["reply"], r)["forge_score"] == 1.0  # the teacher reply is a perfect answer
        assert len(json.loads(r["reply"])["rationale"].split()) <= 12
        assert r["reply"] == json.dumps(json.loads(r["reply"]), separators=(",", ":"), ensure_ascii=False)  # compact


def test_gold_and_training_sentence_shapes_are_disjoint():
    gold_t = {t for v in gen.GOLD.values() for t in v}
    train_t = {t for v in gen.TRAIN.values() for t in v}
    assert not gold_t & train_t and set(gen.GOLD) == set(gen.TRAIN)
    train_text = " ".join(r["input"] for r in load_jsonl(TRAIN_PATH) + load_jsonl(DEV_PATH))
    gold_text = " ".join(r["input"] for r in load_jsonl(GOLD_PATH))
    for d in gen.GOLD["distract_ad"] + gen.GOLD["distract_me"]:
        assert d not in train_text
    for d in gen.TRAIN["distract_ad"] + gen.TRAIN["distract_me"]:
        assert d not in gold_text


def test_everything_gold_asks_is_taught_by_the_training_data():
    """Every (skill, cue phrase) and every level cue in gold occurs in train: the task is learnable, and a
    lookup of the shared vocabulary answers gold perfectly, so gold measures learning, not luck."""
    train = load_jsonl(TRAIN_PATH)
    taught = {(s["code"], s["evidence"]) for r in train for s in r["skills"]}
    train_text = " ".join(r["input"] for r in train)
    cue_to_code = {p: c for c, (cues, _) in SKILL_CUES.items() for p in cues}
    total = 0.0
    gold = load_jsonl(GOLD_PATH)
    for r in gold:
        assert {(s["code"], s["evidence"]) for s in r["skills"]} <= taught
        preds = []
        for phrase, code in cue_to_code.items():
            at = r["input"].find(phrase)
            if at < 0:
                continue
            sentence_end = r["input"].find(".", at + len(phrase))
            sentence = r["input"][r["input"].rfind(".", 0, at) + 1: sentence_end if sentence_end > 0 else None]
            level = next(lv for lv, cues in LEVEL_CUES.items() for c in cues if c in sentence.lower())
            preds.append({"code": code, "level": level, "evidence": phrase})
        total += reward_components(json.dumps({"skills": preds, "rationale": "lookup"}), r)["forge_score"]
    assert total / len(gold) == 1.0
    for cue in {c for cues in LEVEL_CUES.values() for c in cues}:
        assert cue in train_text.lower()


def test_cue_vocabulary_is_unambiguous():
    phrases = [p for cues, _ in SKILL_CUES.values() for p in cues] + [p for v in LEVEL_CUES.values() for p in v]
    assert len(phrases) == len(set(phrases))
    for a in phrases:
        for b in phrases:
            assert a == b or a not in b, (a, b)
        assert gen.contains_code(a) is None


# ---------- contamination ----------

def test_committed_data_is_clean_and_fast():
    t0 = time.perf_counter()
    assert_no_contamination(TRAIN_PATH, GOLD_PATH)
    assert_no_contamination(DEV_PATH, GOLD_PATH)
    assert time.perf_counter() - t0 < 1.0


def _inject(tmp_path, text):
    rows = (TRAIN_PATH.read_text().splitlines())
    rows.insert(700, json.dumps({"id": "t9999", "input": text, "skills": []}))
    p = tmp_path / "train.jsonl"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_exact_copy_is_refused(tmp_path):
    g = load_jsonl(GOLD_PATH)[41]
    p = _inject(tmp_path, "  " + g["input"].upper().replace(".", " !") + " ")  # case, spacing, punctuation differ
    with pytest.raises(TargetError) as e:
        assert_no_contamination(p, GOLD_PATH)
    msg = str(e.value)
    assert "\n" not in msg and f"{p}:701" in msg and f"{GOLD_PATH}:42" in msg and "1.00" in msg and "regenerate" in msg


def test_near_duplicate_with_two_words_changed_is_refused(tmp_path):
    gold = load_jsonl(GOLD_PATH)
    i = max(range(len(gold)), key=lambda k: len(gold[k]["input"].split()))
    words = gold[i]["input"].split()
    words[len(words) // 3] = "zebra"
    words[2 * len(words) // 3] = "quokka"
    near = " ".join(words)
    a, b = shingles(near), shingles(gold[i]["input"])
    jac = len(a & b) / len(a | b)
    assert 0.5 <= jac < 1.0
    with pytest.raises(TargetError) as e:
        assert_no_contamination(_inject(tmp_path, near), GOLD_PATH)
    assert f"{GOLD_PATH}:{i + 1}" in str(e.value) and f"{jac:.2f}" in str(e.value)


def test_overlap_search_2000_by_200_is_fast():
    train = [r["input"] for r in load_jsonl(TRAIN_PATH)]
    gold = [r["input"] for r in load_jsonl(GOLD_PATH)]
    t0 = time.perf_counter()
    assert find_overlaps(train, gold) == []
    assert find_overlaps(gold[:5], gold)[0].exact
    assert time.perf_counter() - t0 < 1.0


# ---------- prompting ----------

def test_prompt_and_messages():
    assert 150 < len(SYSTEM_PROMPT) < 300 and '"skills"' in SYSTEM_PROMPT and '"rationale"' in SYSTEM_PROMPT
    m = build_messages("I write code.")
    assert m == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "I write code."}]
    m = build_messages("x", system="S", demos=[("in", "out")])
    assert [x["content"] for x in m] == ["S", "in", "out", "x"]


def test_load_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"id": "a", "input": "x"}\n\n{"id": "b", "input": \n')
    with pytest.raises(TargetError, match=rf"{re.escape(str(p))}:3: not valid JSON"):
        load_jsonl(p)
    p.write_text('{"id": "a"}\n')
    with pytest.raises(TargetError, match=r":1: missing field\(s\) input"):
        load_jsonl(p, required=("id", "input"))
    with pytest.raises(TargetError, match="no such file"):
        load_jsonl(tmp_path / "none.jsonl")


def test_doctests():
    import doctest

    from sfia import contamination, prompting
    for mod in (gen, contamination, prompting):
        res = doctest.testmod(mod)
        assert res.attempted >= 1 and res.failed == 0, mod.__name__
