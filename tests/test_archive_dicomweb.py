"""DicomWebArchive against a real Orthanc + DICOMweb plugin, credentials from the environment.

Inputs: synthetic films from ``fixtures_orthanc.make_film_file`` (seeded).
"""

from __future__ import annotations

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from filmflow.archive.base import is_transient, open_archive, pixel_sha256
from filmflow.archive.dicomweb import ENV_PASSWORD, ENV_TOKEN, ENV_USER, DicomWebArchive, session_from_env
from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveUnreachableError, ConfigError, StoreFailedError, VerificationError
from orthanc_server import free_port

CONFIG = ArchiveConfig(timeout_s=10)

pytestmark = pytest.mark.orthanc


@pytest.fixture
def web_env(monkeypatch, orthanc_empty):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    monkeypatch.setenv(ENV_USER, orthanc_empty.auth[0])
    monkeypatch.setenv(ENV_PASSWORD, orthanc_empty.auth[1])
    return orthanc_empty


def test_credentials_only_from_env(monkeypatch):
    monkeypatch.setenv(ENV_TOKEN, "tok")
    session, kind = session_from_env()
    assert session.headers["Authorization"] == "Bearer tok"
    assert kind == "bearer token"
    monkeypatch.delenv(ENV_TOKEN)
    monkeypatch.setenv(ENV_USER, "u")
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    with pytest.raises(ConfigError, match=ENV_PASSWORD):
        session_from_env()
    with pytest.raises(ConfigError, match="not in the archive URL"):
        DicomWebArchive("http://u:p@127.0.0.1/dicom-web")


def test_store_contains_verify(web_env, film_files):
    paths = film_files(2)
    archive = open_archive(web_env.dicomweb_url, CONFIG)
    assert isinstance(archive, DicomWebArchive)
    with archive:
        archive.check()
        receipts = [archive.store(p) for p in paths]
        for path, receipt in zip(paths, receipts):
            ds = dcmread(path)
            assert archive.contains(ds.SOPInstanceUID)
            assert receipt.pixel_sha256 == pixel_sha256(ds)
            archive.verify(receipt)
        assert not archive.contains("1.2.826.0.1.3680043.8.498.404")
        archive.store(paths[0])  # again: idempotent
    assert len(web_env.rest("GET", "/instances")) == 2
    (iid,) = web_env.find_instance(receipts[0].sop_instance_uid)
    tags = web_env.rest("GET", f"/instances/{iid}/simplified-tags")
    assert tags["ConversionType"] == "DF"
    assert tags["PatientID"] == dcmread(paths[0]).PatientID


@pytest.mark.parametrize("transfer_syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless])
def test_compressed_round_trip(web_env, film_files, transfer_syntax):
    (path,) = film_files(1, transfer_syntax=transfer_syntax)
    with DicomWebArchive(web_env.dicomweb_url, CONFIG) as archive:
        receipt = archive.store(path)
        archive.verify(receipt)
    assert receipt.transfer_syntax_uid == transfer_syntax


def test_verify_mismatch_and_missing(web_env, film_files):
    (path,) = film_files(1)
    with DicomWebArchive(web_env.dicomweb_url, CONFIG) as archive:
        receipt = archive.store(path)
        bad = receipt.__class__(**{**receipt.__dict__, "pixel_sha256": "0" * 64})
        with pytest.raises(VerificationError, match="pixel hash mismatch"):
            archive.verify(bad)
        missing = receipt.__class__(**{**receipt.__dict__, "sop_instance_uid": "1.2.826.0.1.3680043.8.498.405"})
        with pytest.raises(VerificationError, match="does not hold"):
            archive.verify(missing)


def test_wrong_password_is_clear_and_does_not_leak(web_env, film_files, monkeypatch):
    secret = "wrong-secret-Xy7"
    monkeypatch.setenv(ENV_PASSWORD, secret)
    archive = DicomWebArchive(web_env.dicomweb_url, CONFIG)
    with pytest.raises(ArchiveUnreachableError, match="authentication failed") as info:
        archive.check()
    assert secret not in str(info.value)
    assert not is_transient(info.value)
    (path,) = film_files(1)
    with pytest.raises(ArchiveUnreachableError, match="authentication failed") as info:
        archive.store(path)
    assert secret not in str(info.value)


def test_unreachable_server_is_transient():
    archive = DicomWebArchive(f"http://127.0.0.1:{free_port()}/dicom-web", ArchiveConfig(timeout_s=3))
    with pytest.raises(ArchiveUnreachableError, match="cannot reach") as info:
        archive.check()
    assert is_transient(info.value)


def test_stow_failed_sop_sequence_maps_to_store_failed(web_env, film_files, monkeypatch):
    """Fault injection: the server answers 200 but lists the instance as failed (PS3.18 10.5.3)."""
    (path,) = film_files(1)
    archive = DicomWebArchive(web_env.dicomweb_url, CONFIG)
    item = Dataset()
    item.ReferencedSOPInstanceUID = dcmread(path).SOPInstanceUID
    item.FailureReason = 0xA900
    answer = Dataset()
    answer.FailedSOPSequence = [item]
    monkeypatch.setattr(archive._client, "store_instances", lambda datasets: answer)
    with pytest.raises(StoreFailedError, match="status 0xA900") as info:
        archive.store(path)
    assert not is_transient(info.value)
