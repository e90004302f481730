"""Tests of qc.dciodvfy, the dicom3tools dciodvfy wrapper (runs the real program).

Inputs (provenance):
- /work/shared/data/digitized_films/SC1_UNC.dcm: CT film digitized by a CEMAX digitizer;
  NEMA WG04 compression test set; NEMA public test images. Purpose: a real file with a
  known dciodvfy Error (missing Type 2C Laterality).
- A dataset built here by pipeline.dicom_film from synthetic zeros, then deliberately broken.
"""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

from conftest import SHARED_DATA
from filmflow.config import DicomConfig
from filmflow.errors import ToolMissingError
from pipeline.dicom_film import build_film_dataset, write_dataset
from pipeline.uids import film_uids
from qc.dciodvfy import DciodvfyError, Finding, dciodvfy_version, parse_findings, run_dciodvfy

CEMAX = SHARED_DATA / "digitized_films" / "SC1_UNC.dcm"


def _film(tmp_path, **changes):
    uids = film_uids(root="2.25", sha256=hashlib.sha256(b"x").hexdigest(), patient_id="P1",
                     study_date="20000101", accession_number="")
    ds = build_film_dataset(np.zeros((64, 48), np.uint16), bits_stored=12, pixel_spacing_mm=0.1,
                            header={"PatientID": "P1", "StudyDate": "20000101"}, uids=uids,
                            config=DicomConfig(), laterality="U")
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return write_dataset(ds, tmp_path / "film.dcm")


def test_parse_findings():
    text = (
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time\n"
        "SCImage\n"
        "Error - Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>\n"
        "\n"
    )
    assert parse_findings(text) == [
        Finding("warning", "Missing attribute or value that would be needed to build DICOMDIR - Study Time"),
        Finding("error", "Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>"),
    ]


def test_real_cemax_film_reports_the_laterality_error():
    findings = run_dciodvfy(CEMAX)
    assert Finding("error", "Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>") in findings
    assert any(f.level == "warning" for f in findings)


def test_a_good_film_has_no_error(tmp_path):
    assert [f for f in run_dciodvfy(_film(tmp_path)) if f.level == "error"] == []


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"ConversionType": None}, "Conversion Type"),
        ({"BurnedInAnnotation": None}, "Burned In Annotation"),
        ({"NominalScannedPixelSpacing": None}, "Nominal Scanned Pixel Spacing"),
        ({"FrameIncrementPointer": 0x00181063}, "FrameIncrementPointer"),
    ],
)
def test_a_broken_film_reports_an_error(changes, fragment, tmp_path):
    errors = [f.message for f in run_dciodvfy(_film(tmp_path, **changes)) if f.level == "error"]
    assert any(fragment.replace(" ", "") in e.replace(" ", "") for e in errors), errors


def test_version():
    assert dciodvfy_version()[:1].isdigit()


def test_missing_tool(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="dicom3tools"):
        run_dciodvfy(CEMAX)


def test_timeout(monkeypatch, tmp_path):
    fake = tmp_path / "dciodvfy"
    fake.write_text("#!/bin/sh\nexec sleep 5\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DciodvfyError, match="did not finish"):
        run_dciodvfy(CEMAX, timeout_s=0.5)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_dciodvfy(tmp_path / "absent.dcm")
