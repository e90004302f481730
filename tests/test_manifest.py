"""Tests for pipeline.manifest: loading the RIS CSV and reconciling a label reading.

All manifests are written by the tests into tmp_path (provenance: this file;
names and IDs are invented).
"""

from __future__ import annotations

import pytest

from filmflow.config import ManifestConfig
from filmflow.errors import ManifestError
from pipeline.manifest import load_manifest, reconcile
from pipeline.types import FieldValue, LabelReading, ManifestRow

HEADER = "patient_id,patient_name,birth_date,study_date,accession_number,scan_file\n"
GOOD = (
    HEADER
    + "00123456,\"DOE, JANE\",03/14/1956,2019-04-02,A1234567,film_0001.tif\n"
    + "00999999,O'Brien^Sean,14.03.1960,02-APR-2019,A7654321,film_0002.tif\n"
    + "\n"
    + "00777777,SMITH-JONES^ANNE-MARIE,1970-01-01,04/02/19,,\n"
)


def write(tmp_path, text, encoding="utf-8", name="manifest.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def reading(**fields: str) -> LabelReading:
    return LabelReading(fields={k: FieldValue(v, 90.0, v) for k, v in fields.items()})


def row(line=2, pid="00123456", name="DOE^JANE", dob="19560314", date="20190402", acc="A1234567", scan="") -> ManifestRow:
    return ManifestRow(line=line, PatientID=pid, PatientName=name, PatientBirthDate=dob, StudyDate=date,
                       AccessionNumber=acc, scan_file=scan)


# ---------------------------------------------------------------------------- load_manifest
def test_load_normalises(tmp_path):
    rows = load_manifest(write(tmp_path, GOOD), ManifestConfig())
    assert rows == [
        row(2, scan="film_0001.tif"),
        row(3, "00999999", "O'BRIEN^SEAN", "19600314", "20190402", "A7654321", "film_0002.tif"),
        row(5, "00777777", "SMITH-JONES^ANNE-MARIE", "19700101", "20190402", "", ""),
    ]


def test_load_custom_columns_and_optional_missing(tmp_path):
    cfg = ManifestConfig(columns={"PatientID": "MRN", "PatientName": "Name", "PatientBirthDate": "DOB",
                                  "StudyDate": "ExamDate"})
    p = write(tmp_path, "MRN,Name,DOB,ExamDate\n42,\"Doe, John\",01.02.1950,2001-02-03\n")
    assert load_manifest(p, cfg) == [row(2, "42", "DOE^JOHN", "19500201", "20010203", "", "")]


def test_load_dmy_order(tmp_path):
    p = write(tmp_path, HEADER + "1,DOE^J,03/04/1956,2019-04-02,,\n")
    assert load_manifest(p, ManifestConfig(), date_order="DMY")[0].PatientBirthDate == "19560403"


def test_bad_date_names_line_and_column_not_value(tmp_path):
    p = write(tmp_path, HEADER + "00123456,DOE^JANE,31.02.1990,2019-04-02,,\n1,A^B,1990-01-01,2019-01-01,,\n")
    with pytest.raises(ManifestError) as ei:
        load_manifest(p, ManifestConfig())
    msg = str(ei.value)
    assert "line 2" in msg and "'birth_date'" in msg
    assert "31.02" not in msg and "DOE" not in msg and "00123456" not in msg


def test_bad_line_number_counts_quoted_newlines(tmp_path):
    p = write(tmp_path, HEADER + '1,"DOE,\nJANE",1990-01-01,2019-01-01,,\n2,A^B,1990-01-01,,,\n')
    with pytest.raises(ManifestError, match=r"line 4, column 'study_date'"):
        load_manifest(p, ManifestConfig())


def test_empty_id(tmp_path):
    p = write(tmp_path, HEADER + "1,A^B,1990-01-01,2019-01-01,,\n  ,DOE^JANE,1990-01-01,2019-01-01,,\n")
    with pytest.raises(ManifestError, match=r"line 3, column 'patient_id'"):
        load_manifest(p, ManifestConfig())


def test_missing_column(tmp_path):
    p = write(tmp_path, "patient_id,patient_name,study_date\n1,A^B,2019-01-01\n")
    with pytest.raises(ManifestError, match="birth_date"):
        load_manifest(p, ManifestConfig())


def test_duplicate_rows(tmp_path):
    p = write(tmp_path, GOOD + "00123456,DOE^JANE,1956-03-14,2019-04-02,A1234567,film_0001.tif\n")
    with pytest.raises(ManifestError, match="line 6 duplicates line 2"):
        load_manifest(p, ManifestConfig())


def test_latin1_file(tmp_path):
    text = HEADER + "5,MÜLLER^JÖRG,1950-01-01,2019-01-01,,\n"
    p = write(tmp_path, text, encoding="latin-1")
    with pytest.raises(ManifestError, match="manifest.encoding") as ei:
        load_manifest(p, ManifestConfig())
    assert "line 2" in str(ei.value) and "MÜLLER" not in str(ei.value)
    rows = load_manifest(p, ManifestConfig(encoding="latin-1"))
    assert rows[0].PatientName == "MÜLLER^JÖRG"


def test_utf8_bom(tmp_path):
    p = write(tmp_path, "\ufeff" + GOOD)
    assert len(load_manifest(p, ManifestConfig())) == 3


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "nope.csv", ManifestConfig())


# ---------------------------------------------------------------------------- reconcile
FULL = dict(PatientID="00123456", PatientName="DOE^JANE", PatientBirthDate="19560314", StudyDate="20190402",
            AccessionNumber="A1234567", PatientSex="F", InstitutionName="ST. ELSEWHERE")
CFG = ManifestConfig()


def test_agree_manifest_spelling_wins():
    rows = [row(name="DOE^JANE^MARIE", scan="f1.tif"), row(3, "2", "X^Y", scan="f2.tif")]
    r = reconcile(reading(**{**FULL, "PatientName": "DOE^JANE^MARI"}), rows, scan_file="/in/f1.tif", config=CFG)
    assert r.status == "agree" and r.row == rows[0] and r.disagreements == ()
    assert r.header == {**FULL, "PatientName": "DOE^JANE^MARIE"}


def test_agree_by_patient_id_without_scan_file():
    r = reconcile(reading(**FULL), [row(), row(3, "2", "X^Y")], scan_file="x.tif", config=CFG)
    assert r.status == "agree" and r.row.line == 2


def test_agree_by_name_and_dob_when_id_unread():
    f = {k: v for k, v in FULL.items() if k != "PatientID"}
    r = reconcile(reading(**{**f, "PatientName": "D0E^JANE"}), [row(), row(3, "2", "X^Y")], scan_file="x", config=ManifestConfig(name_match_threshold=80))
    assert r.status == "agree" and r.header["PatientID"] == "00123456"


def test_disagree_on_id():
    rows = [row(scan="f1.tif")]
    r = reconcile(reading(**{**FULL, "PatientID": "00123457"}), rows, scan_file="f1.tif", config=CFG)
    assert r.status == "disagree"
    assert [(d.keyword, d.label_value, d.manifest_value) for d in r.disagreements] == [("PatientID", "00123457", "00123456")]
    assert r.header["PatientID"] == "00123457"  # the label's, not the manifest's


def test_disagree_on_name():
    r = reconcile(reading(**{**FULL, "PatientName": "ROE^JOHN"}), [row()], scan_file="x", config=CFG)
    assert r.status == "disagree"
    assert [d.keyword for d in r.disagreements] == ["PatientName"]
    assert r.header["PatientName"] == "ROE^JOHN"


def test_missing_field_is_not_a_contradiction():
    f = {k: v for k, v in FULL.items() if k not in ("AccessionNumber", "StudyDate")}
    assert reconcile(reading(**f), [row()], scan_file="x", config=CFG).status == "agree"


def test_scan_file_alone_does_not_agree():
    r = reconcile(reading(StudyDate="20190402"), [row(scan="f1.tif")], scan_file="f1.tif", config=CFG)
    assert r.status == "disagree"
    assert {d.keyword for d in r.disagreements} == {"PatientID", "PatientName", "PatientBirthDate"}
    assert "PatientID" not in r.header


def test_two_candidates_ambiguous():
    rows = [row(scan="a.tif"), row(3, scan="b.tif")]
    r = reconcile(reading(**FULL), rows, scan_file="c.tif", config=CFG)
    assert r.status == "ambiguous" and r.candidates == tuple(rows) and r.row is None
    assert r.header["PatientID"] == "00123456"


def test_two_studies_of_one_patient_settled_by_study_date():
    rows = [row(), row(3, date="20200101", acc="A2")]
    r = reconcile(reading(**FULL), rows, scan_file="x", config=CFG)
    assert r.status == "agree" and r.row.line == 2


def test_no_match_and_no_manifest():
    r = reconcile(reading(**{**FULL, "PatientID": "5", "PatientName": "ROE^JOHN"}), [row()], scan_file="x", config=CFG)
    assert r.status == "no_match" and r.header["PatientID"] == "5"
    assert reconcile(reading(**FULL), [], scan_file="x", config=CFG).status == "no_manifest"
    assert reconcile(reading(**FULL), None, scan_file="x", config=CFG).status == "no_manifest"


def test_loaded_manifest_round_trip(tmp_path):
    rows = load_manifest(write(tmp_path, GOOD), CFG)
    r = reconcile(reading(PatientID="00999999", PatientName="O'BRIEN^SEAN", PatientBirthDate="19600314"), rows,
                  scan_file="film_0002.tif", config=CFG)
    assert r.status == "agree" and r.row.line == 3
