"""Unit tests for pipeline.label_fields (pure parsing; no images, no Tesseract).

Inputs are hand-written strings modelled on what Tesseract returns for the
labels drawn by filmflow.synth.render_label (provenance: this project).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filmflow.config import OCRConfig
from pipeline.label_fields import fix_digits, parse_date, parse_label, parse_person_name, value_spans
from pipeline.types import OcrLine, OcrWord


def line(text: str, conf: float = 91.0) -> OcrLine:
    return OcrLine(tuple(OcrWord(w, conf) for w in text.split()))


@pytest.mark.parametrize(
    "text, order, expected",
    [
        ("2019-04-02", "MDY", "20190402"),
        ("2019/04/02", "MDY", "20190402"),
        ("20190402", "MDY", "20190402"),
        ("04/02/2019", "MDY", "20190402"),
        ("04/02/2019", "DMY", "20190204"),
        ("14/03/1956", "MDY", "19560314"),  # first group > 12: only the DMY reading is a date
        ("02.04.2019", "MDY", "20190402"),  # dots: European, day first
        ("02-APR-2019", "MDY", "20190402"),
        ("02 APR 2019", "MDY", "20190402"),
        ("APR 02 2019", "MDY", "20190402"),
        ("APR 2, 2019", "MDY", "20190402"),
        ("2 April 2019", "MDY", "20190402"),
        ("02-apr-19", "MDY", "20190402"),
        ("03/14/56", "MDY", "19560314"),
        ("03/14/29", "MDY", "20290314"),
        ("03/14/30", "MDY", "19300314"),
        ("O2.O4.2Ol9", "MDY", "20190402"),  # OCR O/l for 0/1
        ("0S/1B/1956", "MDY", "19560518"),  # S->5, B->8
        ("02 - APR - 2019", "MDY", "20190402"),
        ("29.02.2000", "MDY", "20000229"),
    ],
)
def test_parse_date_forms(text, order, expected):
    assert parse_date(text, date_order=order, pivot=30) == expected


@pytest.mark.parametrize("text", ["31.02.1990", "30/02/2019", "2019-13-01", "00/00/0000", "29.02.1900", "", "ABC", "12/34", "1234567"])
def test_parse_date_rejects_impossible(text):
    with pytest.raises(ValueError):
        parse_date(text)


def test_parse_date_pivot_is_configurable():
    assert parse_date("01/02/45", pivot=50) == "20450102"
    assert parse_date("01/02/45", pivot=30) == "19450102"


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
       st.sampled_from(["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y", "%Y%m%d"]))
def test_parse_date_round_trips(d, fmt):
    assert parse_date(d.strftime(fmt).upper(), date_order="MDY") == d.strftime("%Y%m%d")


@pytest.mark.parametrize(
    "text, order, expected",
    [
        ("DOE, JANE", "family_first", "DOE^JANE"),
        ("Doe, Jane Marie", "family_first", "DOE^JANE MARIE"),
        ("NGUYEN, THI MAI", "family_first", "NGUYEN^THI MAI"),
        ("DOE^JANE^MARIE", "family_first", "DOE^JANE^MARIE"),
        ("DOE^JANE", "family_first", "DOE^JANE"),
        ("DOE*JANE", "family_first", "DOE^JANE"),  # Tesseract's reading of ^
        ('DOE"JANE', "family_first", "DOE^JANE"),
        ("O'BRIEN, SEAN", "family_first", "O'BRIEN^SEAN"),
        ("O’BRIEN, SEAN", "family_first", "O'BRIEN^SEAN"),
        ("SMITH-JONES, ANNE-MARIE", "family_first", "SMITH-JONES^ANNE-MARIE"),
        ("SMITH - JONES, MARY", "family_first", "SMITH-JONES^MARY"),
        ("VAN DER BERG, ANNA", "family_first", "VAN DER BERG^ANNA"),
        ("GARCIA LOPEZ, LUIS", "family_first", "GARCIA LOPEZ^LUIS"),
        ("VAN DER BERG ANNA", "family_first", "VAN DER BERG^ANNA"),
        ("DOE JANE", "family_first", "DOE^JANE"),
        ("JANE DOE", "given_first", "DOE^JANE"),
        ("JANE MARIE DOE", "given_first", "DOE^JANE MARIE"),
        ("ANNA VAN DER BERG", "given_first", "VAN DER BERG^ANNA"),
        ("DOE", "family_first", "DOE"),
        ("DOE,", "family_first", "DOE"),
    ],
)
def test_parse_person_name(text, order, expected):
    assert parse_person_name(text, order=order) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("OO123456", "00123456"), ("0O12345B", "00123458"), ("I2345S7l", "12345571"), ("A1234567", "A1234567"),
     ("A12345G7", "A1234567"), ("SMITH", "SMITH"), ("AB0012", "AB0012")],
)
def test_fix_digits(text, expected):
    assert fix_digits(text) == expected


def test_parse_label_synth_layout():
    lines = [
        line("ST. ELSEWHERE GENERAL HOSPITAL"),
        line("NAME: O'BRIEN, SEAN"),
        OcrLine((OcrWord("ID:", 95), OcrWord("0O123456", 62.5), OcrWord("DOB:", 90), OcrWord("03/14/1956", 88),
                 OcrWord("SEX:", 93), OcrWord("F", 71))),
        line("DATE: 02-APR-2019 ACC: A1234567"),
    ]
    f = parse_label(lines, config=OCRConfig())
    assert {k: v.value for k, v in f.items()} == {
        "InstitutionName": "ST. ELSEWHERE GENERAL HOSPITAL",
        "PatientName": "O'BRIEN^SEAN",
        "PatientID": "00123456",
        "PatientBirthDate": "19560314",
        "PatientSex": "F",
        "StudyDate": "20190402",
        "AccessionNumber": "A1234567",
    }
    assert f["PatientID"].confidence == 62.5
    assert f["PatientID"].raw == "0O123456"


@pytest.mark.parametrize(
    "text, kw, expected",
    [
        ("MRN: 12345", "PatientID", "12345"),
        ("ID# 12345", "PatientID", "12345"),
        ("PATIENT ID: 12345", "PatientID", "12345"),
        ("HOSP NO: 12345", "PatientID", "12345"),
        ("1D: 12345", "PatientID", "12345"),  # OCR 1 for I in the key
        ("ID:12345", "PatientID", "12345"),  # key glued to value
        ("D0B: 1956-03-14", "PatientBirthDate", "19560314"),
        ("DATE OF BIRTH: 14.03.1956", "PatientBirthDate", "19560314"),
        ("BIRTH: 14-MAR-1956", "PatientBirthDate", "19560314"),
        ("STUDY DATE: 2019-04-02", "StudyDate", "20190402"),
        ("EXAM: 04/02/19", "StudyDate", "20190402"),
        ("ACCESSION: A77", "AccessionNumber", "A77"),
        ("SEX: M", "PatientSex", "M"),
        ("SEX: FEMALE", "PatientSex", "F"),
        ("NAME: DOE*JANE", "PatientName", "DOE^JANE"),
        ("NAMF: DOE, JANE", "PatientName", "DOE^JANE"),  # a colon marks a misread key
    ],
)
def test_parse_label_keys(text, kw, expected):
    f = parse_label([line(text)], config=OCRConfig())
    assert f[kw].value == expected


def test_parse_label_config_patterns_and_name_order():
    cfg = OCRConfig(field_patterns={"PatientID": ["UNIT NUMBER"]}, name_order="given_first")
    f = parse_label([line("PATIENT NAME: JANE DOE"), line("UNIT NUMBER: 998877")], config=cfg)
    assert f["PatientName"].value == "DOE^JANE"
    assert f["PatientID"].value == "998877"


def test_parse_label_impossible_date_left_out():
    f = parse_label([line("DOB: 31.02.1990 SEX: M")], config=OCRConfig())
    assert "PatientBirthDate" not in f
    assert f["PatientSex"].value == "M"


def test_parse_label_nothing():
    assert parse_label([], config=OCRConfig()) == {}
    assert parse_label([line("~ ~ ;")], config=OCRConfig()) == {}


@pytest.mark.parametrize("line, kw, value", [
    ("10: 00123456 DOB: 1956-03-14", "PatientID", "00123456"),
    ("IO: 00123456 DOB: 1956-03-14", "PatientID", "00123456"),
    ("ID: 00123456 008: 1956-03-14", "PatientBirthDate", "19560314"),
    ("OATE: 2019-04-02 ACC: A1234567", "StudyDate", "20190402"),
])
def test_key_misreads_of_imprinter_fonts(line, kw, value):
    """Keys as Tesseract reads them in DejaVu Sans Mono Bold at 100-130 dpi (sample_scans)."""
    words = tuple(OcrWord(t, 80.0) for t in line.split())
    assert parse_label([OcrLine(words)], config=OCRConfig())[kw].value == value


def test_key_misread_needs_punctuation():
    words = tuple(OcrWord(t, 80.0) for t in "TO 00123456".split())
    assert "PatientID" not in parse_label([OcrLine(words)], config=OCRConfig())


def test_value_spans_index_the_original_words():
    lines = [line("ST. ELSEWHERE GENERAL HOSPITAL"), line("NAME: DOE, JANE"),
             line("ID:00123456 DOB: 02 - APR - 2019 SEX: F"), line("DATE: NWOV ACC: A1234567")]
    spans = value_spans(lines, config=OCRConfig())
    assert spans["PatientID"] == (2, 0, 1)  # glued to its key: the same word
    assert spans["PatientBirthDate"] == (2, 2, 7)  # three words, the lone dashes between them too
    assert spans["PatientSex"] == (2, 8, 9)
    assert spans["StudyDate"] == (3, 1, 2)  # found though its value does not parse
    assert spans["AccessionNumber"] == (3, 3, 4)
    assert "StudyDate" not in parse_label(lines, config=OCRConfig())


def test_value_spans_key_without_value():
    assert "PatientID" not in value_spans([line("ID: DOB: 1956-03-14")], config=OCRConfig())


def test_date_with_a_quote_mark_beside_it():
    """A speck beside a date is read as a quote mark glued to it (sample film_01:
    ``2019-04-02'``); no date holds one, so the date is read without it."""
    from pipeline.label_fields import parse_ocr_date

    assert parse_ocr_date("2019-04-02'") == "20190402"
    assert parse_date('"11/02/1978', date_order="MDY") == "19781102"
    cfg = OCRConfig()
    f = parse_label([OcrLine((OcrWord("DATE:", 93.0), OcrWord("2019-04-02'", 0.0), OcrWord("ACC:", 93.0),
                              OcrWord("A1234567", 90.0)))], config=cfg)
    assert f["StudyDate"].value == "20190402" and f["StudyDate"].confidence == 0.0
