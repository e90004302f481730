"""``dicom.keep_original``: the untouched scan is archived beside the film (issue 5).

Through the real CLI into a real Orthanc (C-STORE). Inputs:
:func:`fixtures_orthanc.make_clean_batch` (provenance there).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from pipeline.scan_io import load_scan
from pipeline.uids import film_uids
from qc.dciodvfy import run_dciodvfy
from test_batch_orthanc import run_migrate

pytestmark = pytest.mark.orthanc


def test_original_scan_archived_in_same_study(orthanc_empty, clean_batch, tmp_path):
    batch, _ = clean_batch
    env = {"FILMFLOW_DICOM__KEEP_ORIGINAL": "true"}
    rows = run_migrate(batch, orthanc_empty.dicom_url, tmp_path, env=env)
    archived = [r for r in rows if r["status"] == "archived"]
    assert archived, [(r["source_file"], r["status"], r["qc_flags"], r["error"]) for r in rows]
    assert len(orthanc_empty.rest("GET", "/instances")) == 2 * len(archived)

    for row in archived:
        uids = film_uids(root="2.25", sha256=row["sha256"], patient_id=row["patient_id"], study_date=row["study_date"],
                         accession_number=row["accession_number"])
        assert uids.sop_instance_uid == row["sop_instance_uid"]
        (fid,) = orthanc_empty.find_instance(row["sop_instance_uid"])
        (oid,) = orthanc_empty.find_instance(uids.original_sop_instance_uid)
        film = pydicom.dcmread(io.BytesIO(orthanc_empty.rest_bytes(f"/instances/{fid}/file")))
        original_path = tmp_path / "original.dcm"
        original_path.write_bytes(orthanc_empty.rest_bytes(f"/instances/{oid}/file"))
        original = pydicom.dcmread(original_path)

        # same study and patient, own series
        assert original.StudyInstanceUID == film.StudyInstanceUID == row["study_instance_uid"]
        assert original.SeriesInstanceUID != film.SeriesInstanceUID
        assert original.SeriesDescription == "Original scan"
        assert original.PatientID == film.PatientID and original.PatientName == film.PatientName
        assert list(original.ImageType) == ["ORIGINAL", "SECONDARY"]
        assert "DerivationDescription" not in original
        # film-specific attributes that apply to the whole scan
        assert original.ConversionType == "DF"
        assert original.SOPClassUID == film.SOPClassUID
        assert [float(v) for v in original.NominalScannedPixelSpacing] == pytest.approx([25.4 / float(row["dpi"])] * 2)
        # pixels exactly as loaded: no deskew, crop, polarity change or denoise
        scan = load_scan(batch / row["source_file"], default_dpi=150.0, max_pixels=200_000_000)
        assert original.pixel_array.dtype == scan.pixels.dtype
        assert np.array_equal(original.pixel_array, scan.pixels)
        assert film.pixel_array.shape != scan.pixels.shape  # the film itself was cropped
        assert [f for f in run_dciodvfy(original_path) if f.level == "error"] == []

    again = {r["source_file"]: r for r in run_migrate(batch, orthanc_empty.dicom_url, tmp_path, env=env)}
    assert all(again[r["source_file"]]["status"] == "skipped" for r in archived)
    assert len(orthanc_empty.rest("GET", "/instances")) == 2 * len(archived)  # idempotent
    assert not any((tmp_path / "work" / "staging").glob("*.dcm"))  # both staged files removed

