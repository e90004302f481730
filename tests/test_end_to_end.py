"""End to end through the real CLI on the bundled sample scans (issue 2).

One migration of ``sample_scans/`` into a folder archive, checked against the
JSON sidecars' ground truth, with real Tesseract and real ``dciodvfy``; then a
second run of the same command, which must archive nothing new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from filmflow.report import read_report
from qc.dciodvfy import run_dciodvfy

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scans"
FILMFLOW = [sys.executable, "-m", "filmflow.cli"]


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PREFECT_HOME=str(cwd / "prefect-home"), PREFECT_API_URL="")
    env.pop("PREFECT_API_URL")
    return subprocess.run([*FILMFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def truths() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    args = ("migrate", str(SAMPLES), "--manifest", str(SAMPLES / "manifest.csv"), "--config", str(SAMPLES / "filmflow.toml"),
            "--archive", str(tmp / "archive"),
            "--report", str(tmp / "report.csv"), "--work-dir", str(tmp / "work"))
    first = run_cli(*args, cwd=tmp)
    assert first.returncode == 0, first.stderr[-3000:]
    report1 = {r["source_file"]: r for r in read_report(tmp / "report.csv")}
    files1 = sorted(p.relative_to(tmp / "archive") for p in (tmp / "archive").rglob("*.dcm"))
    second = run_cli(*args, cwd=tmp)
    assert second.returncode == 0, second.stderr[-3000:]
    report2 = {r["source_file"]: r for r in read_report(tmp / "report.csv")}
    files2 = sorted(p.relative_to(tmp / "archive") for p in (tmp / "archive").rglob("*.dcm"))
    return {"tmp": tmp, "first": first, "report1": report1, "report2": report2, "files1": files1, "files2": files2}


def test_every_source_file_has_one_report_row(migrated):
    names = {p.name for p in SAMPLES.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg")}
    assert set(migrated["report1"]) == names


@pytest.mark.parametrize("name", [n for n, t in truths().items() if t.get("expect") == "archived"])
def test_good_film_archived_with_truth_in_header(migrated, name):
    truth = truths()[name]
    row = migrated["report1"][truth["scan_file"]]
    assert row["status"] == "archived", (row["qc_flags"], row["error"])
    for kw, value in truth["fields"].items():
        assert row[f"ocr_{kw}"] == value, kw  # OCR'd fields equal the ground truth
    assert abs(float(row["skew_deg"]) - truth["skew_deg"]) <= 0.3
    # every sample lies on a visible bed, carries a printed flashed label and no lead marker
    assert (row["skew_source"], row["label_kind"], row["marker"]) == ("edges", "printed", "")
    path = Path(row["dicom_path"])
    assert path.is_file() and path.is_relative_to(migrated["tmp"] / "archive")
    ds = pydicom.dcmread(path)
    assert ds.PatientID == truth["fields"]["PatientID"]
    assert str(ds.PatientName) == truth["fields"]["PatientName"]
    assert ds.StudyDate == truth["fields"]["StudyDate"]
    assert ds.ConversionType == "DF"
    assert ds.BurnedInAnnotation == "YES"
    # PNG pHYs stores whole pixels per metre, so the file's DPI is within 0.05 % of the nominal one
    assert float(ds.NominalScannedPixelSpacing[0]) == pytest.approx(25.4 / truth["dpi"], rel=5e-4)
    assert ds.SOPInstanceUID == row["sop_instance_uid"]
    assert path.parent.parent.name == ds.StudyInstanceUID and path.parent.name == ds.SeriesInstanceUID
    assert ds.pixel_array.dtype.itemsize * 8 == (16 if truth["bits"] == 16 else 8)
    errors = [f for f in run_dciodvfy(path) if f.level == "error"]
    assert errors == []


def test_contradicting_film_is_flagged_and_not_archived(migrated):
    flagged = [t for t in truths().values() if t.get("expect") == "flagged"]
    assert flagged
    archived_ids = {pydicom.dcmread(migrated["tmp"] / "archive" / p, stop_before_pixels=True).PatientID for p in migrated["files1"]}
    for truth in flagged:
        row = migrated["report1"][truth["scan_file"]]
        assert row["status"] == "flagged"
        assert "manifest_disagree" in row["qc_flags"].split(";")
        assert row["dicom_path"] == "" and row["sop_instance_uid"] == ""
        assert truth["fields"]["PatientID"] not in archived_ids
        for kw, value in truth.get("manifest_differs", {}).items():
            assert value not in archived_ids


def test_unreadable_file_fails_clearly_and_batch_finishes(migrated):
    for truth in (t for t in truths().values() if t.get("expect") == "failed"):
        row = migrated["report1"][truth["scan_file"]]
        assert row["status"] == "failed"
        assert row["error"].startswith(truth.get("error", "unreadable_scan"))
    assert sum(r["status"] == "archived" for r in migrated["report1"].values()) == sum(
        t.get("expect") == "archived" for t in truths().values())


def test_second_run_archives_nothing_new(migrated):
    assert migrated["files1"] == migrated["files2"]
    for name, row in migrated["report1"].items():
        again = migrated["report2"][name]
        if row["status"] == "archived":
            assert again["status"] == "skipped"
            assert again["sop_instance_uid"] == row["sop_instance_uid"]
            assert again["study_instance_uid"] == row["study_instance_uid"]
        else:
            assert again["status"] == row["status"]


def test_summary_printed_without_patient_data(migrated):
    out = migrated["first"].stdout + migrated["first"].stderr
    assert "report:" in migrated["first"].stdout
    for truth in truths().values():
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
            value = truth.get("fields", {}).get(kw)
            if value:
                assert value not in out and value.split("^")[0] not in out, kw


def test_real_digitized_films_go_through(tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    subprocess.run([sys.executable, str(SAMPLES / "export_digitized.py"), str(src)], check=True, capture_output=True, timeout=300)
    exported = sorted(p.name for p in src.iterdir())
    assert len(exported) == 2
    res = run_cli("migrate", str(src), "--archive", str(tmp_path / "archive"), "--report", str(tmp_path / "r.csv"),
                  "--work-dir", str(tmp_path / "work"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_report(tmp_path / "r.csv")
    assert sorted(r["source_file"] for r in rows) == exported
    for r in rows:
        assert r["status"] in ("archived", "flagged"), (r["source_file"], r["error"])
        assert r["status"] == "archived" or r["qc_flags"]
