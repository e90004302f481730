"""Re-migrating the same scan in another batch and work dir is idempotent at the archive.

A scan migrated once, then again under another ``--batch-name`` from another
``--work-dir`` (a ledger that does not know it was archived), must give the very
same SOP, Series and Study Instance UIDs, so that the archive holds it once. With
the Series Instance UID derived from the batch name, Orthanc held two instances
with one SOP Instance UID in two series (a uniqueness violation), and with
``storage_commitment = "require"`` the second run reported ``commitment_failed``
(0x0112).

Through the real CLI into the real Orthanc of ``fixtures_orthanc`` (C-STORE).
Inputs: :func:`fixtures_orthanc.make_clean_batch` (provenance there).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from filmflow.report import read_report
from pipeline.uids import film_uids
from test_batch_orthanc import FILMFLOW

pytestmark = pytest.mark.orthanc


def migrate_as(batch: Path, archive: str, tmp: Path, *, batch_name: str, work: str,
               env: dict[str, str]) -> list[dict[str, str]]:
    """``filmflow migrate`` of ``batch`` under ``batch_name`` with its own work dir and report; the report rows."""
    full = dict(os.environ, PREFECT_HOME=str(tmp / "prefect-home"), **env)
    full.pop("PREFECT_API_URL", None)
    report = tmp / f"{work}.csv"
    res = subprocess.run(
        [*FILMFLOW, "migrate", str(batch), "--manifest", str(batch / "manifest.csv"), "--archive", archive,
         "--report", str(report), "--work-dir", str(tmp / work), "--batch-name", batch_name, "--workers", "2"],
        cwd=tmp, env=full, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return read_report(report)


@pytest.mark.parametrize("commitment", ["off", "require"])  # off: verified by C-FIND and C-GET
def test_same_scan_in_two_batches_is_one_instance(orthanc_empty, clean_batch, tmp_path, commitment):
    batch, _ = clean_batch
    env = {"FILMFLOW_ARCHIVE__STORAGE_COMMITMENT": commitment, "FILMFLOW_ARCHIVE__COMMITMENT_HOST": "127.0.0.1",
           "FILMFLOW_ARCHIVE__COMMITMENT_PORT": str(orthanc_empty.calling_aet_port),
           "FILMFLOW_ARCHIVE__COMMITMENT_TIMEOUT_S": "10"}

    first = migrate_as(batch, orthanc_empty.dicom_url, tmp_path, batch_name="ward-3-1998", work="work-a", env=env)
    archived = [r for r in first if r["status"] == "archived"]
    assert archived, [(r["source_file"], r["status"], r["qc_flags"], r["error"]) for r in first]
    held = {}
    for row in archived:
        (iid,) = orthanc_empty.find_instance(row["sop_instance_uid"])
        held[row["source_file"]] = orthanc_empty.rest("GET", f"/instances/{iid}/simplified-tags")["SeriesInstanceUID"]

    second = {r["source_file"]: r for r in migrate_as(batch, orthanc_empty.dicom_url, tmp_path,
                                                      batch_name="ward-7-2001", work="work-b", env=env)}
    for row in archived:
        again = second[row["source_file"]]
        # the new ledger does not know the film: it is processed and pushed again, and confirmed
        assert (again["status"], again["error"]) == ("archived", ""), (again["status"], again["error"], again["notes"])
        if commitment == "require":
            assert again["storage_commitment"] == "committed"
        assert (again["sop_instance_uid"], again["study_instance_uid"]) == (row["sop_instance_uid"],
                                                                            row["study_instance_uid"])
        # the archive holds the film once, in the series the first run put it in
        (iid,) = orthanc_empty.find_instance(row["sop_instance_uid"])
        tags = orthanc_empty.rest("GET", f"/instances/{iid}/simplified-tags")
        assert tags["SeriesInstanceUID"] == held[row["source_file"]]
        expected = film_uids(root="2.25", sha256=row["sha256"], patient_id=row["patient_id"],
                             study_date=row["study_date"], accession_number=row["accession_number"])
        assert tags["SeriesInstanceUID"] == expected.series_instance_uid
        (study,) = orthanc_empty.rest("POST", "/tools/lookup", data=row["study_instance_uid"])
        assert len(orthanc_empty.rest("GET", f"/studies/{study['ID']}/series")) == 1
    assert len(orthanc_empty.rest("GET", "/instances")) == len(archived)
