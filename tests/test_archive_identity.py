"""``Archive.find_patient`` on every target, and the identity comparison (issue 4).

Inputs: synthetic films from ``fixtures_orthanc.make_film_file`` (seeded, fake patients).
"""

from __future__ import annotations

import pytest

from filmflow.archive.base import identity_conflicts
from filmflow.archive.dicomweb import ENV_PASSWORD, ENV_TOKEN, ENV_USER, DicomWebArchive
from filmflow.archive.dimse import DimseArchive
from filmflow.archive.folder import FolderArchive
from filmflow.config import ArchiveConfig
from fixtures_orthanc import make_film_dataset

CONFIG = ArchiveConfig(timeout_s=10)


def _film(tmp_path, seed, patient_id, name, birth):
    ds = make_film_dataset(seed=seed, patient_id=patient_id)
    ds.PatientName, ds.PatientBirthDate = name, birth
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "ours, theirs, expected",
    [
        ({"PatientName": "DOE^JANE", "PatientBirthDate": "19560314"}, {"PatientName": "Doe^Jane^^", "PatientBirthDate": "19560314"}, []),
        ({"PatientName": "DOE^JANE", "PatientBirthDate": "19560314"}, {"PatientName": "DOE^JOAN", "PatientBirthDate": "19560314"}, ["PatientName"]),
        ({"PatientName": "DOE^JANE", "PatientBirthDate": "19560314"}, {"PatientName": "DOE^JANE", "PatientBirthDate": "19650314"}, ["PatientBirthDate"]),
        ({"PatientName": "DOE^JANE", "PatientBirthDate": ""}, {"PatientName": "", "PatientBirthDate": "19650314"}, []),  # unknown is not different
    ],
)
def test_identity_conflicts(ours, theirs, expected):
    assert identity_conflicts(ours, [dict(theirs, PatientID="1")]) == expected
    assert identity_conflicts(ours, []) == []


def _check_find(archive, tmp_path):
    archive.store(_film(tmp_path, 1, "PID-A", "ALPHA^ANNA", "19500101"))
    archive.store(_film(tmp_path, 2, "PID-A", "ALPHA^ANNA", "19500101"))  # same patient, second study
    archive.store(_film(tmp_path, 3, "PID-B", "BETA^BORIS", "19600202"))
    assert archive.find_patient("PID-A") == [{"PatientID": "PID-A", "PatientName": "ALPHA^ANNA", "PatientBirthDate": "19500101"}]
    assert [m["PatientName"] for m in archive.find_patient("PID-B")] == ["BETA^BORIS"]
    assert archive.find_patient("PID-C") == []
    assert archive.find_patient("PID-*") == []  # no wildcard matching of other patients


@pytest.mark.orthanc
def test_find_patient_dimse(orthanc_empty, tmp_path):
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        _check_find(archive, tmp_path)


@pytest.mark.orthanc
def test_find_patient_dicomweb(orthanc_empty, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    monkeypatch.setenv(ENV_USER, orthanc_empty.auth[0])
    monkeypatch.setenv(ENV_PASSWORD, orthanc_empty.auth[1])
    with DicomWebArchive(orthanc_empty.dicomweb_url, CONFIG) as archive:
        _check_find(archive, tmp_path)


def test_find_patient_folder(tmp_path):
    root = tmp_path / "archive"
    with FolderArchive(root) as archive:
        archive.check()
        _check_find(archive, tmp_path)
    index = list((root / ".patients").rglob("*.json"))
    assert len(index) == 2 and not any("PID" in str(p) for p in index)  # hashed names, no patient data
    # an archive filled before the index existed: reindex
    for p in index:
        p.unlink()
    assert FolderArchive(root).find_patient("PID-A") == []
    assert FolderArchive(root).reindex_patients() == 3
    assert [m["PatientName"] for m in FolderArchive(root).find_patient("PID-A")] == ["ALPHA^ANNA"]


def test_store_with_known_hash_skips_decoding(tmp_path, monkeypatch):
    """The builder's hash is used as is (the pixels are not decoded again) and verify checks the archive against it."""
    import filmflow.archive.base as base
    from filmflow.errors import VerificationError

    path = _film(tmp_path, 5, "PID-H", "HASH^HANS", "19700101")
    real = base.pixel_sha256
    expected = real(__import__("pydicom").dcmread(path))
    calls = []
    monkeypatch.setattr(base, "pixel_sha256", lambda ds: calls.append(1) or real(ds))
    archive = FolderArchive(tmp_path / "archive")
    receipt = archive.store(path, pixel_sha256=expected)
    assert receipt.pixel_sha256 == expected and calls == []
    wrong = archive.store(path, pixel_sha256="0" * 64)
    with pytest.raises(VerificationError):
        archive.verify(wrong)


def test_find_patient_falls_back_to_study_root(tmp_path):
    """A peer with Study Root C-FIND only (no Patient Root) is asked at STUDY level."""
    from pydicom import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]

    from orthanc_server import free_port

    levels = []

    def on_find(event):
        levels.append(event.identifier.QueryRetrieveLevel)
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.PatientID, ident.PatientName, ident.PatientBirthDate = "PID-S", "STUDY^ROOT", "19700101"
        ident.StudyInstanceUID = "1.2.3"
        yield 0xFF00, ident

    ae = AE(ae_title="PEER")
    ae.add_supported_context(Verification)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        with DimseArchive("PEER", "127.0.0.1", port, CONFIG) as archive:
            assert archive.find_patient("PID-S") == [{"PatientID": "PID-S", "PatientName": "STUDY^ROOT", "PatientBirthDate": "19700101"}]
    finally:
        server.shutdown()
    assert levels == ["STUDY"]
