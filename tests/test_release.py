"""The ``release-approved`` flow: approved films reach the archive with the reviewer's header."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness
from pydicom import dcmread

from pipeline import uids
from qc.review import store


@pytest.fixture(scope="module", autouse=True)
def _prefect():
    with prefect_test_harness(server_startup_timeout=120):
        yield


REVIEWER = store.User("rita", "reviewer")


def approve_corrected(env) -> dict[str, str]:
    row = env.ledger.get(env.key("film_12"))
    values = {**store.current_header(row), "PatientID": "01234576", "StudyDate": "20190910"}
    store.approve(env.ledger, row, REVIEWER, values)
    return values


def release(env):
    from flows.release import release_approved

    return release_approved(work_dir=str(env.work_dir), archive=str(env.archive_dir))


def archived_files(env) -> list[Path]:
    return sorted(p for p in env.archive_dir.rglob("*.dcm") if "fileset" not in p.parts)


def test_release_archives_the_corrected_film_with_deterministic_uids(review_env, tmp_path):
    values = approve_corrected(review_env)
    summary = release(review_env)
    key = review_env.key("film_12")
    row = review_env.ledger.get(key)
    assert row.state == "archived", row.error
    assert summary.archived and not summary.failed and not summary.blocked
    (path,) = archived_files(review_env)
    ds = dcmread(path)
    expected = uids.film_uids(root=review_env.settings.dicom.uid_root, sha256=review_env.films["film_12"]["sha256"],
                              patient_id="01234576", study_date="20190910",
                              accession_number=values["AccessionNumber"])
    assert ds.PatientID == "01234576"
    assert ds.StudyDate == "20190910"
    assert str(ds.PatientName) == values["PatientName"]
    assert ds.SOPInstanceUID == expected.sop_instance_uid == row.sop_instance_uid
    assert ds.StudyInstanceUID == expected.study_instance_uid
    assert row.record["review"]["decided_by"] == "rita"
    assert not Path(row.staged_path).exists()  # the staged copy is removed once the archive confirmed

    # a second, independent release of the same approval gives the same UIDs and pixels
    from fixtures_review import BATCH
    from filmflow.config import load_settings
    from filmflow.ledger import Ledger, default_ledger_url
    from fixtures_review import ReviewEnv

    wd2, ar2 = tmp_path / "work2", tmp_path / "archive2"
    wd2.mkdir()
    l2 = Ledger(default_ledger_url(wd2))
    f = review_env.films["film_12"]
    l2.discover(f["path"], f["sha256"], BATCH)
    l2.transition(f["path"], "flagged", record=f["record"])
    env2 = ReviewEnv(wd2, ar2, load_settings(None, run={"work_dir": str(wd2)}, archive={"url": str(ar2)}), l2, review_env.films)
    approve_corrected(env2)
    release(env2)
    (path2,) = archived_files(env2)
    ds2 = dcmread(path2)
    assert (ds2.SOPInstanceUID, ds2.StudyInstanceUID, ds2.SeriesInstanceUID) == (
        ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert ds2.PixelData == ds.PixelData
    l2.close()


def test_rejected_film_never_reaches_the_archive(review_env):
    approve_corrected(review_env)
    rejected = review_env.ledger.get(review_env.key("film_01"))
    store.reject(review_env.ledger, rejected, REVIEWER, "not a film of this hospital")
    release(review_env)
    release(review_env)  # a second run changes nothing
    assert review_env.ledger.get(review_env.key("film_01")).state == "rejected"
    assert review_env.ledger.get(review_env.key("film_12")).state == "archived"
    files = archived_files(review_env)
    assert len(files) == 1
    assert dcmread(files[0]).PatientID == "01234576"
    actions = [a["action"] for a in review_env.ledger.audit_log()]
    assert actions == ["approve", "reject"]


def test_flagged_film_is_left_alone(review_env):
    summary = release(review_env)
    assert not summary.archived
    assert archived_files(review_env) == []
    assert {r.state for r in review_env.ledger.rows()} == {"flagged"}


def test_release_sends_a_film_back_to_review_for_a_finding_the_reviewer_never_saw(review_env, monkeypatch):
    """Approved for its manifest disagreement, released after scratch repair was turned on: the
    repair inpaints a line (a stand-in that reports one, so that the test does not depend on where
    the repair finds lines), the reviewer never saw that finding, so the film goes back to the
    review queue with it instead of reaching the archive; approved again, it is released."""
    import numpy as np

    from flows import film as film_flow
    from pipeline.scratches import ScratchReport

    def one_line(img, *, dpi, **_):
        out = np.array(img, copy=True)
        out[10, 10:20] = out[9, 10:20]
        return out, ScratchReport(lines=1, pixels=10)

    monkeypatch.setattr(film_flow.scratches, "repair_scratches", one_line)
    monkeypatch.setenv("FILMFLOW_DENOISE__SCRATCHES", "true")
    approve_corrected(review_env)
    key = review_env.key("film_12")
    assert review_env.ledger.get(key).record["review"]["reviewed_flags"]  # what the page showed
    summary = release(review_env)
    row = review_env.ledger.get(key)
    assert row.state == "flagged" and row.error.startswith("release_held"), (row.state, row.error)
    assert row.record["qc_flags"] == "scratches_inpainted"
    assert list(summary.blocked.values()) == ["scratches_inpainted"] and not summary.archived
    assert archived_files(review_env) == []

    values = approve_corrected(review_env)  # the reviewer sees the new finding and approves again
    assert "scratches_inpainted" in review_env.ledger.get(key).record["review"]["reviewed_flags"]
    summary = release(review_env)
    row = review_env.ledger.get(key)
    assert row.state == "archived", (row.state, row.error)
    (path,) = archived_files(review_env)
    ds = dcmread(path)
    assert ds.PatientID == values["PatientID"] and "scratch repair (1 line inpainted)" in ds.DerivationDescription
