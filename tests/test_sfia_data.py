"""SFIA package data: framework, official-spreadsheet converter, generator, gold/train files, contamination."""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "targets"))

from autoloop.target import TargetError  # noqa: E402
from sfia import DEV_PATH, GOLD_PATH, TRAIN_PATH  # noqa: E402
from sfia import generate as gen  # noqa: E402
from sfia import phrasebank as pb  # noqa: E402
from sfia.contamination import (assert_no_contamination, assert_no_shared_text, canon, discover_gold_files,  # noqa: E402
                                find_overlaps, read_gold_texts, sentences, shingles)
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


# ---------- phrase bank ----------

def _bank_texts():
    """Every text the bank can put in a document (activity forms, statements in every voice, lead-ins, noise)."""
    out = []
    for tr, ho in pb.ACTIVITIES.values():
        for p in tr + ho:
            out += pb.activity_forms(p)
    for tr, ho in pb.LEVEL_STATEMENTS.values():
        for voice, tpl in tr + ho:
            out += [pb.render_statement(tpl, v, "the platform") for v in pb.statement_voices(voice)]
    for tr, ho in pb.LEVEL_LEADS.values():
        out += list(tr + ho)
    return out + pb.noise_items(False) + pb.noise_items(True)


def test_phrase_bank_covers_the_working_scope_with_a_held_out_quarter():
    assert set(pb.ACTIVITIES) == set(SKILL_CUES) and len(pb.ACTIVITIES) == 33  # the 33-skill working scope
    seen = set()
    for code, (train, held) in pb.ACTIVITIES.items():
        phrases = train + held
        assert len(phrases) >= 12 and len(set(phrases)) == len(phrases), code
        assert 0.2 <= len(held) / len(phrases) <= 0.3, code
        for p in phrases:
            assert p.split()[0].rstrip(",") in pb.VERB_FORMS, p  # a verb phrase the generator can inflect
            assert all(w[1:] in pb.VERB_FORMS for w in p.split() if w.startswith("^")), p
            for form in pb.activity_forms(p):
                assert 3 <= len(form.split()) <= 10, form  # evidence is 3-10 words
            assert canon(pb.plain(p)) not in seen, p
            seen.add(canon(pb.plain(p)))
        assert code in pb.SKILL_CONTEXT
    for level in range(1, 8):
        train, held = pb.LEVEL_STATEMENTS[level]
        assert len(train + held) >= 12 and 0.2 <= len(held) / len(train + held) <= 0.3, level
        for side in (train, held):  # both voices on both sides
            assert any(v in ("both", "ad") for v, _ in side) and any(v in ("both", "me") for v, _ in side)
        assert pb.LEVEL_LEADS[level][0] and pb.LEVEL_LEADS[level][1]
    for pool, (train, held) in pb.NOISE.items():
        assert train and held, pool


def test_phrase_bank_is_new_wording_without_codes():
    """No cue phrase or level cue of the old cues.py is reused, and no text names a skill code."""
    old = [p for cues, _ in SKILL_CUES.values() for p in cues] + [p for v in LEVEL_CUES.values() for p in v]
    texts = [canon(t) for t in _bank_texts()]
    for cue in old:
        assert not any(canon(cue) in t for t in texts), cue
    for t in _bank_texts():
        assert gen.contains_code(t) is None and "sfia" not in t.lower(), t


def test_level_markers_are_unambiguous():
    for held_out in (False, True):
        marks = [(lv, m) for lv, ms in pb.level_markers(held_out).items() for m in ms]
        for a in marks:
            for b in marks:
                assert a[0] == b[0] or a[1] not in b[1], (a, b)


# ---------- generator and committed files ----------

def test_generator_rewrites_committed_files_byte_identically(tmp_path):
    """Reproducible: a fresh run (reading the same gold files) writes the committed bytes. If a new gold file
    or draft appeared since the data was generated, rerun python targets/sfia/generate.py and commit."""
    r = run([ROOT / "targets/sfia/generate.py", "--root", tmp_path])
    assert r.returncode == 0, r.stderr
    assert "dropped as found in gold text" in r.stdout and "rows redrawn" in r.stdout
    for committed in (GOLD_PATH, TRAIN_PATH, DEV_PATH):
        fresh = tmp_path / committed.relative_to(ROOT)
        assert fresh.read_bytes() == committed.read_bytes(), f"{committed} differs from the generator's output"


def test_generator_works_with_only_the_synthetic_gold(tmp_path):
    r = run([ROOT / "targets/sfia/generate.py", "--root", tmp_path, "--gold-dir", tmp_path / "no_gold"])
    assert r.returncode == 0, r.stderr
    assert "+ 0 other gold file(s)" in r.stdout
    assert len((tmp_path / "targets/sfia/data/train.jsonl").read_text().splitlines()) == gen.N_TRAIN
    assert (tmp_path / "gold/sfia_gold.jsonl").read_bytes() == GOLD_PATH.read_bytes()  # gold is seed-only


def test_generator_drops_phrases_and_sentences_found_in_a_gold_file(tmp_path):
    """A gold file that uses a training phrasing, a level statement and a noise sentence: the generator drops
    all three, says so, and its training rows share nothing with that file."""
    activity = pb.ACTIVITIES["DENG"][0][3]  # "keep the overnight data feeds running reliably"
    statement = pb.render_statement(pb.LEVEL_STATEMENTS[4][0][0][1], "ad")
    noise = pb.NOISE["benefits"][0][1]
    gold_dir = tmp_path / "gold"
    (gold_dir / "drafts").mkdir(parents=True)
    text = f"Our analysts {pb.inflect(activity, 'ing')} every night. {statement}\n{noise}"
    (gold_dir / "drafts" / "w9.jsonl").write_text(json.dumps({"id": "x1", "input": text, "skills": []}) + "\n"
                                                  + '{"id": "x2", "input": "half-written dr\n')
    log = []
    splits = gen.build(gold_dir, log=log.append)
    assert "+ 1 other gold file(s) (2 rows): w9.jsonl" in log[0]
    assert "1 of 396 activity phrasings" in log[1] and "1 of 91 level statements" in log[1]
    assert "0 of 122 noise items" not in log[1]
    train_text = " | ".join(f" {canon(r['input'])} " for r in splits["train"] + splits["dev"])
    for phrase in pb.activity_forms(activity) + [statement, noise]:
        assert f" {canon(phrase)} " not in train_text, phrase
    for name in ("train", "dev"):
        p = tmp_path / f"{name}.jsonl"
        gen.write_jsonl(p, splits[name])
        assert_no_shared_text(p, [gold_dir / "drafts" / "w9.jsonl"])


def _check_rows(rows, fw, prefix, width):
    assert [r["id"] for r in rows] == [f"{prefix}{i:0{width}d}" for i in range(1, len(rows) + 1)]
    assert len({r["input"] for r in rows}) == len(rows)
    for r in rows:
        assert 1 <= len(r["skills"]) <= 4 and gen.count_sentences(r["input"]) >= 1, r
        assert gen.contains_code(r["input"]) is None and "sfia" not in r["input"].lower(), r["input"]
        assert len({s["code"] for s in r["skills"]}) == len(r["skills"])
        for s in r["skills"]:
            assert s["code"] in pb.ACTIVITIES and s["name"] == fw.by_code(s["code"]).name
            assert s["level"] in fw.levels_of(s["code"])
            assert s["evidence"] in r["input"] and 3 <= len(s["evidence"].split()) <= 10  # verbatim, short
        starts = [r["input"].find(s["evidence"]) for s in r["skills"]]
        assert starts == sorted(starts)  # labels in reading order


def _words(rows):
    return sorted(len(r["input"].split()) for r in rows)


def test_gold_file(fw):
    gold = load_jsonl(GOLD_PATH, required=("id", "input", "skills"))
    assert len(gold) == 200
    _check_rows(gold, fw, "g", 3)
    assert {s["code"] for r in gold for s in r["skills"]} == set(pb.ACTIVITIES)  # every working skill is examined
    assert {s["level"] for r in gold for s in r["skills"]} == set(range(1, 8))
    held = {canon(f) for tr, ho in pb.ACTIVITIES.values() for p in ho for f in pb.activity_forms(p)}
    assert all(canon(s["evidence"]) in held for r in gold for s in r["skills"])  # held-out phrasings only


def test_train_and_dev_files_with_teacher_replies(fw):
    train, dev = load_jsonl(TRAIN_PATH, ("id", "input", "skills", "reply")), load_jsonl(DEV_PATH, ("reply",))
    assert len(train) == 3000 and len(dev) == 100
    _check_rows(train, fw, "t", 4)
    _check_rows(dev, fw, "d", 3)
    assert not {r["input"] for r in train} & {r["input"] for r in dev}
    trained = {canon(f) for tr, ho in pb.ACTIVITIES.values() for p in tr for f in pb.activity_forms(p)}
    for r in train + dev:
        assert all(canon(s["evidence"]) in trained for s in r["skills"])  # training-side phrasings only
        assert reward_components(r["reply"], r)["forge_score"] == 1.0  # the teacher reply is a perfect answer
        assert len(json.loads(r["reply"])["rationale"].split()) <= 12
        assert r["reply"] == json.dumps(json.loads(r["reply"]), separators=(",", ":"), ensure_ascii=False)  # compact
    counts = {k: sum(len(r["skills"]) == k for r in train) for k in range(1, 5)}
    assert counts[1] > counts[3] > counts[4] > 0 and counts[2] > counts[3]  # 1-4 skills, weighted to 1-3


def test_documents_look_like_adverts_and_cvs():
    train = load_jsonl(TRAIN_PATH)
    w = _words(train)
    assert 55 <= w[len(w) // 2] <= 120 and w[-1] <= 300  # median words: SFT on a 2-core CPU stays fast
    short = sum(gen.count_sentences(r["input"]) <= 3 and "\n" not in r["input"] for r in train)
    assert 0.12 <= short / len(train) <= 0.35  # a share of 1-3 sentence rows
    text = [r["input"] for r in train]
    assert sum("\n- " in t or "\n• " in t or "\n* " in t for t in text) > 900  # bullet lists
    assert sum(bool(re.search(r"\bI\b|\b[Mm]y\b", t)) for t in text) > 1200  # CV voice
    assert sum(bool(re.search(r"\byou\b", t, re.I)) for t in text) > 1200  # advert voice
    assert sum(bool(re.search(r"organization|analyze|prioritize|behavior|\$", t)) for t in text) > 200  # US
    assert sum(bool(re.search(r"organisation|analyse|prioritise|behaviour|£", t)) for t in text) > 300  # UK


def test_levels_cover_each_skill_range_and_sit_near_their_activity(fw):
    """Every level of every skill's range is taught, and each labelled level has a level statement or lead-in
    of that level within 300 characters of the skill's evidence (not a fixed suffix: before or after it)."""
    for path, held_out in ((TRAIN_PATH, False), (DEV_PATH, False), (GOLD_PATH, True)):
        rows = load_jsonl(path)
        marks = pb.level_markers(held_out)
        for r in rows:
            t = f" {canon(r['input'])} "
            for s in r["skills"]:
                e = t.find(f" {canon(s['evidence'])} ")
                assert e >= 0, r
                near = [m for m in marks[s["level"]] for hit in re.finditer(re.escape(f" {m} "), t)
                        if min(abs(hit.start() - e), abs(hit.end() - e)) <= 300]
                assert near, (path.name, r["id"], s)
    train = load_jsonl(TRAIN_PATH)
    for code in pb.ACTIVITIES:
        taught = {s["level"] for r in train for s in r["skills"] if s["code"] == code}
        assert taught == set(fw.levels_of(code)), code
    side = {"before": 0, "after": 0}  # a level statement precedes or follows its activity, by document
    train_marks = pb.level_markers(held_out=False)
    for r in train:
        if len(r["skills"]) == 1:
            t, s = f" {canon(r['input'])} ", r["skills"][0]
            e = t.find(f" {canon(s['evidence'])} ")
            at = [t.find(f" {m} ") for m in train_marks[s["level"]] if f" {m} " in t]
            side["before" if min(at) < e else "after"] += 1
    assert min(side.values()) > 0.25 * sum(side.values()), side


def test_everything_gold_asks_is_taught_by_the_training_data():
    train, gold = load_jsonl(TRAIN_PATH), load_jsonl(GOLD_PATH)
    taught = {(s["code"], s["level"]) for r in train for s in r["skills"]}
    assert {(s["code"], s["level"]) for r in gold for s in r["skills"]} <= taught


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """The SmolLM2 tokenizer built from the bundled GGUF (as `autoloop models pull` does), or None."""
    try:
        import mlx.core as mx

        from autoloop.mlx import models as M
    except ImportError:
        return None
    gguf = M.find_gguf()
    if gguf is None:
        return None
    _, meta = mx.load(str(gguf), return_metadata=True)
    return M.build_tokenizer(meta)


def test_replies_fit_the_token_budget(smollm2_tokenizer):
    """Every teacher reply (and the reply a gold row asks for) fits the target's 112-token reply budget."""
    rows = load_jsonl(TRAIN_PATH) + load_jsonl(DEV_PATH)
    replies = [r["reply"] for r in rows] + [gen.reply_for(r["skills"]) for r in load_jsonl(GOLD_PATH)]
    assert max(gen.reply_cost(x) for x in replies) <= gen.MAX_REPLY_COST
    if smollm2_tokenizer is None:  # the tokenizer-free proxy (about 4 characters a token) is all we have
        assert max(len(x) for x in replies) / 4 <= 110
        return
    lengths = [len(smollm2_tokenizer.encode(x).ids) for x in replies]
    assert max(lengths) <= 110, max(lengths)


# ---------- contamination ----------

def _all_gold_files():
    return discover_gold_files(ROOT / "gold")  # synthetic, realistic, sealed and drafts: whatever is present


def test_no_training_row_shares_text_with_any_gold_file():
    golds = _all_gold_files()
    assert GOLD_PATH in golds
    for f in (TRAIN_PATH, DEV_PATH):
        assert_no_shared_text(f, golds)
        for g in golds:
            assert_no_contamination(f, g)


def test_held_out_phrasings_never_appear_in_train_or_dev():
    text = " | ".join(f" {canon(r['input'])} " for r in load_jsonl(TRAIN_PATH) + load_jsonl(DEV_PATH))
    held = pb.bank_phrases(held_out=True, min_words=3)
    held += [p for s in pb.noise_items(held_out=True) for p in gen._pieces(s)]
    assert len(held) > 300
    for p in held:
        assert f" {canon(p)} " not in text, p
    trained = pb.bank_phrases(held_out=False)
    gold_text = " | ".join(f" {canon(r['input'])} " for r in load_jsonl(GOLD_PATH))
    for p in trained:
        assert f" {canon(p)} " not in gold_text, p


def _copy_with_row(tmp_path, text, at=700):
    rows = TRAIN_PATH.read_text().splitlines()
    rows.insert(at, json.dumps({"id": "t9999", "input": text, "skills": []}))
    p = tmp_path / "train.jsonl"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_shared_sentence_is_refused(tmp_path):
    """One gold sentence inside otherwise new text (and in US spelling) is enough to refuse the file."""
    gold = load_jsonl(GOLD_PATH)
    sent = next(x for r in gold[100:] for line in r["input"].splitlines()
                for x in re.split(r"(?<=[.!?])\s+", line.lstrip("-•* ")) if len(x.split()) >= 8 and x.endswith("."))
    first = next(i for i, r in enumerate(gold) if canon(sent) in sentences(r["input"]))
    p = _copy_with_row(tmp_path, f"Brand new opening line here. {pb.to_us(sent)} Another new closing line.")
    with pytest.raises(TargetError) as e:
        assert_no_shared_text(p, [GOLD_PATH])
    msg = str(e.value)
    assert "\n" not in msg and f"{p}:701" in msg and f"{GOLD_PATH}:{first + 1}" in msg and "sentence" in msg
    assert "regenerate" in msg


def test_shared_phrase_bank_phrase_is_refused(tmp_path):
    """A gold file that merely contains a phrasing used in training, inside a different sentence, refuses it."""
    train = load_jsonl(TRAIN_PATH)
    ev = train[5]["skills"][0]["evidence"]
    gold = tmp_path / "sfia_real.jsonl"
    gold.write_text(json.dumps({"id": "r1", "input": "About the team. Nothing to see here at all."}) + "\n"
                    + json.dumps({"id": "r2", "input": f"In 2023 our crew would {ev.lower()}, mostly at night."})
                    + "\n")
    with pytest.raises(TargetError) as e:
        assert_no_shared_text(TRAIN_PATH, [GOLD_PATH, gold])
    msg = str(e.value)
    assert f"{TRAIN_PATH}:" in msg and f"{gold}:2" in msg and "phrase-bank phrase" in msg
    gold.write_text(json.dumps({"id": "r1", "input": "Nothing shared with training in this one."}) + "\n")
    assert_no_shared_text(TRAIN_PATH, [GOLD_PATH, gold])  # and a clean file passes


def test_sentences_skip_headings_and_read_drafts_tolerantly(tmp_path):
    assert sentences("What you'll do:\n- Keep the loads running\nJob title: Senior Data Engineer\nWe hire now.") \
        == ["keep the loads running"]
    d = tmp_path / "gold" / "drafts"
    d.mkdir(parents=True)
    (d / "a.jsonl").write_text('{"id": "a", "input": "One two three four."}\n{"id": "b", "inp\n')
    (tmp_path / "gold" / "curve.jsonl").write_text('{"x": 1, "y": 2}\n')
    assert discover_gold_files(tmp_path / "gold") == [d / "a.jsonl"]  # files without text rows are not gold
    assert [n for n, _ in read_gold_texts(d / "a.jsonl")] == [1, 2]  # a half-written line counts as raw text


def test_committed_data_is_clean():
    # (Its speed is not asserted here: a timed unit test fails on a loaded box; performance lives in bench/.)
    assert_no_contamination(TRAIN_PATH, GOLD_PATH)
    assert_no_contamination(DEV_PATH, GOLD_PATH)


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


def test_overlap_search_3000_by_200():
    train = [r["input"] for r in load_jsonl(TRAIN_PATH)]
    gold = [r["input"] for r in load_jsonl(GOLD_PATH)]
    assert find_overlaps(train, gold) == []
    assert find_overlaps(gold[:5], gold)[0].exact


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
    for mod in (gen, contamination, prompting, pb):
        res = doctest.testmod(mod)
        assert res.attempted >= 1 and res.failed == 0, mod.__name__
