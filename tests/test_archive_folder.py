"""FolderArchive: atomic, idempotent filing and the DICOMDIR media export.

Inputs: synthetic films from ``fixtures_orthanc.make_film_file`` (seeded).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from filmflow.archive.base import StoreReceipt, is_transient, open_archive, pixel_sha256
from filmflow.archive.folder import FolderArchive
from filmflow.errors import ArchiveUnreachableError, StoreFailedError, VerificationError


def test_open_archive_dispatches_folder(tmp_path):
    assert isinstance(open_archive(str(tmp_path / "a")), FolderArchive)
    assert isinstance(open_archive((tmp_path / "b").as_uri()), FolderArchive)


def test_store_verify_contains(tmp_path, film_files):
    (src,) = film_files(1)
    ds = dcmread(src)
    with FolderArchive(tmp_path / "archive") as archive:
        archive.check()
        assert not archive.contains(ds.SOPInstanceUID)
        receipt = archive.store(src)
        assert archive.contains(ds.SOPInstanceUID)
        archive.verify(receipt)
    expected = tmp_path / "archive" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert Path(receipt.location) == expected
    assert expected.read_bytes() == src.read_bytes()
    assert receipt.pixel_sha256 == pixel_sha256(ds)
    assert receipt.sop_class_uid == ds.SOPClassUID


def test_store_twice_is_idempotent_and_leaves_no_temp_files(tmp_path, film_files):
    (src,) = film_files(1)
    archive = FolderArchive(tmp_path / "archive")
    archive.check()
    first = archive.store(src)
    second = archive.store(src)
    assert first.location == second.location
    assert "already stored" in second.notes
    files = sorted(p for p in (tmp_path / "archive").rglob("*") if p.is_file())
    index = [p for p in files if p.parts[-3] == ".patients"]
    assert len(index) == 1 and index[0].suffix == ".json"  # one patient record, no temp files
    assert [p for p in files if p not in index] == [Path(first.location)]


def test_verify_detects_changed_pixels(tmp_path, film_files):
    src, other = film_files(2)
    archive = FolderArchive(tmp_path / "archive")
    receipt = archive.store(src)
    # Simulate corruption: same SOP UID, other pixels.
    ds = dcmread(other)
    stored = dcmread(receipt.location)
    stored.PixelData = ds.PixelData
    stored.save_as(receipt.location)
    with pytest.raises(VerificationError, match="pixel hash mismatch"):
        archive.verify(receipt)


def test_verify_missing_instance(tmp_path):
    archive = FolderArchive(tmp_path / "archive")
    archive.check()
    receipt = StoreReceipt("1.2.3", "1.2", "1.2.3.4", str(tmp_path / "archive/x.dcm"))
    with pytest.raises(VerificationError):
        archive.verify(receipt, retrieve=False)


def test_non_dicom_input_is_permanent_failure(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(StoreFailedError) as info:
        FolderArchive(tmp_path / "archive").store(bad)
    assert not is_transient(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_check_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ArchiveUnreachableError, match="not writable") as info:
            FolderArchive(locked / "archive").check()
        assert not is_transient(info.value)
    finally:
        locked.chmod(0o700)


def test_check_path_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArchiveUnreachableError):
        FolderArchive(blocker).check()


def test_dicomdir_lists_every_instance_and_updates(tmp_path, film_files):
    study = "1.2.826.0.1.3680043.8.498.1"
    paths = film_files(3, study_uid=study) + film_files(1)
    archive = FolderArchive(tmp_path / "archive", dicomdir=True)
    for p in paths[:2]:
        archive.store(p)
    dicomdir = archive.write_dicomdir()
    assert {i.SOPInstanceUID for i in FileSet(dicomdir)} == {dcmread(p).SOPInstanceUID for p in paths[:2]}
    for p in paths[2:]:
        archive.store(p)
    archive.close()  # writes the update
    fs = FileSet(dcmread(dicomdir))
    uids = {dcmread(p).SOPInstanceUID for p in paths}
    assert {i.SOPInstanceUID for i in fs} == uids
    for instance in fs:  # every record points at a readable copy with the same pixels
        loaded = instance.load()
        original = next(p for p in paths if dcmread(p).SOPInstanceUID == loaded.SOPInstanceUID)
        assert pixel_sha256(loaded) == pixel_sha256(dcmread(original))
    assert not archive.contains("1.2.3.999")


def test_same_instance_from_another_batch_is_not_stored_twice(tmp_path, film_files):
    """The same scan migrated by another batch carries another Series Instance UID but the same
    SOP Instance UID: the archive keeps its one file and the receipt names it."""
    (src,) = film_files(1)
    ds = dcmread(src)
    ds.SeriesInstanceUID = "2.25.1234567890"
    other = tmp_path / "other-batch.dcm"
    ds.save_as(other, enforce_file_format=True)
    arch = FolderArchive(tmp_path / "arch")
    arch.check()
    first = arch.store(src)
    second = arch.store(other)
    assert second.location == first.location
    assert second.series_instance_uid == first.series_instance_uid
    assert any("another series" in n for n in second.notes)
    arch.verify(second)
    assert len(list((tmp_path / "arch").rglob(f"{ds.SOPInstanceUID}.dcm"))) == 1
