"""``filmflow migrate`` through the real CLI into a real Orthanc (issues 4 and 5).

Inputs: :func:`fixtures_orthanc.make_clean_batch` (provenance there) and, for the
identity conflict, one synthetic instance from :func:`fixtures_orthanc.make_film_file`.
Every instance Orthanc holds is compared with the report through Orthanc's REST
API; a second run of the same command must not add an instance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from filmflow.archive.dicomweb import ENV_PASSWORD, ENV_TOKEN, ENV_USER
from filmflow.report import read_report
from fixtures_orthanc import make_film_file

pytestmark = pytest.mark.orthanc

FILMFLOW = [sys.executable, "-m", "filmflow.cli"]
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"


def run_migrate(batch: Path, archive: str, tmp: Path, *, env: dict[str, str] | None = None,
                timeout: float = 600) -> list[dict[str, str]]:
    """One ``filmflow migrate`` of ``batch`` (with its manifest) in a subprocess; the report rows."""
    full = dict(os.environ, PREFECT_HOME=str(tmp / "prefect-home"), **(env or {}))
    full.pop("PREFECT_API_URL", None)
    res = subprocess.run(
        [*FILMFLOW, "migrate", str(batch), "--manifest", str(batch / "manifest.csv"), "--archive", archive,
         "--report", str(tmp / "report.csv"), "--work-dir", str(tmp / "work"), "--workers", "2"],
        cwd=tmp, env=full, capture_output=True, text=True, timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return read_report(tmp / "report.csv")


def assert_orthanc_matches_report(orthanc, rows: list[dict[str, str]], transfer_syntax: str) -> list[dict[str, str]]:
    """Every archived row is exactly one Orthanc instance with the report's key tags; returns the archived rows."""
    archived = [r for r in rows if r["status"] == "archived"]
    assert archived, [(r["source_file"], r["status"], r["qc_flags"], r["error"]) for r in rows]
    assert len(orthanc.rest("GET", "/instances")) == len(archived)
    for row in archived:
        (iid,) = orthanc.find_instance(row["sop_instance_uid"])
        tags = orthanc.rest("GET", f"/instances/{iid}/simplified-tags")
        assert tags["PatientID"] == row["patient_id"]
        assert tags["PatientName"] == row["patient_name"]
        assert tags["StudyInstanceUID"] == row["study_instance_uid"]
        assert tags["SOPInstanceUID"] == row["sop_instance_uid"]
        assert tags["ConversionType"] == "DF"
        spacing = [float(v) for v in tags["NominalScannedPixelSpacing"].split("\\")]
        assert spacing == pytest.approx([25.4 / float(row["dpi"])] * 2, rel=1e-6)
        assert orthanc.rest("GET", f"/instances/{iid}/metadata/TransferSyntax") == transfer_syntax
    return archived


@pytest.mark.parametrize(
    "target, syntax",
    [("dimse", "explicit_vr_le"), ("dicomweb", "jpegls_lossless")],
)
def test_migrate_into_orthanc_and_rerun(orthanc_empty, clean_batch, tmp_path, target, syntax):
    batch, _ = clean_batch
    env = {"FILMFLOW_DICOM__TRANSFER_SYNTAX": syntax}
    if target == "dicomweb":
        url = orthanc_empty.dicomweb_url
        env.update({ENV_USER: orthanc_empty.auth[0], ENV_PASSWORD: orthanc_empty.auth[1]})
        os.environ.pop(ENV_TOKEN, None)
    else:
        url = orthanc_empty.dicom_url
    ts = {"explicit_vr_le": EXPLICIT_VR_LE, "jpegls_lossless": JPEG_LS_LOSSLESS}[syntax]

    first = run_migrate(batch, url, tmp_path, env=env)
    archived = assert_orthanc_matches_report(orthanc_empty, first, ts)

    again = {r["source_file"]: r for r in run_migrate(batch, url, tmp_path, env=env)}
    for row in archived:
        assert again[row["source_file"]]["status"] == "skipped"
        assert again[row["source_file"]]["sop_instance_uid"] == row["sop_instance_uid"]
    assert len(orthanc_empty.rest("GET", "/instances")) == len(archived)  # no second instance


def test_archive_identity_conflict_flags_the_film(orthanc_empty, clean_batch, tmp_path):
    """Orthanc already holds every batch patient's ID under another name: no film is pushed.

    Films that OCR/QC already holds never reach the archive check, so the test
    asks that each film is flagged and at least one carries the conflict code.
    """
    batch, truth = clean_batch
    seeded = [make_film_file(tmp_path, seed=90 + i, patient_id=t["PatientID"]) for i, t in enumerate(truth)]  # TEST^FILM
    subprocess.run(["storescu", "-aet", "FILMFLOW", "-aec", orthanc_empty.aet, "127.0.0.1", str(orthanc_empty.dicom_port),
                    *map(str, seeded)], check=True, capture_output=True, timeout=60)
    assert len(orthanc_empty.rest("GET", "/instances")) == len(truth)

    rows = run_migrate(batch, orthanc_empty.dicom_url, tmp_path)
    assert [r["status"] for r in rows] == ["flagged"] * len(truth), [(r["status"], r["error"]) for r in rows]
    conflicted = [r for r in rows if "archive_identity_conflict" in r["qc_flags"].split(";")]
    assert conflicted, [r["qc_flags"] for r in rows]
    for row in conflicted:
        assert row["dicom_path"] == ""
    assert len(orthanc_empty.rest("GET", "/instances")) == len(truth)  # only the seeded instances
    assert not any((tmp_path / "work" / "staging").glob("*.dcm"))  # staged files removed
