"""DimseArchive against a real Orthanc (loopback) and small pynetdicom fault-injecting SCPs.

Inputs: synthetic films from ``fixtures_orthanc.make_film_file`` (seeded).
"""

from __future__ import annotations

import sys
import types

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from filmflow.archive.base import FALLBACK_NOTE, is_transient, open_archive, pixel_sha256
from filmflow.archive.dimse import DimseArchive
from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveUnreachableError, ConfigError, StoreFailedError, VerificationError
from fixtures_orthanc import MF_WORD_SC, PLAIN_SC
from orthanc_server import free_port

CONFIG = ArchiveConfig(timeout_s=10)

pytestmark = pytest.mark.orthanc


def test_url_parsing():
    archive = open_archive("dicom://PACS@10.0.0.5:11112", CONFIG)
    assert isinstance(archive, DimseArchive)
    assert (archive.called_aet, archive.host, archive.port) == ("PACS", "10.0.0.5", 11112)
    assert DimseArchive.from_url("dicom://PACS@pacs.example").port == 104
    with pytest.raises(ConfigError):
        DimseArchive.from_url("dicom://pacs.example:104")
    with pytest.raises(ConfigError):
        DimseArchive.from_url("dicom://WAY_TOO_LONG_AE_TITLE@pacs:104")


def test_store_three_and_check_orthanc_tags(orthanc_empty, film_files):
    paths = film_files(3)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        archive.check()
        receipts = [archive.store(p) for p in paths]
        assert archive._assoc is not None  # one association for the batch
    assert len(orthanc_empty.rest("GET", "/instances")) == 3
    for path, receipt in zip(paths, receipts):
        ds = dcmread(path)
        assert receipt.sop_instance_uid == ds.SOPInstanceUID
        assert receipt.sop_class_uid == MF_WORD_SC
        assert receipt.pixel_sha256 == pixel_sha256(ds)
        (iid,) = orthanc_empty.find_instance(ds.SOPInstanceUID)
        tags = orthanc_empty.rest("GET", f"/instances/{iid}/simplified-tags")
        assert tags["PatientID"] == ds.PatientID
        assert tags["StudyInstanceUID"] == ds.StudyInstanceUID
        assert tags["SOPInstanceUID"] == ds.SOPInstanceUID
        assert tags["ConversionType"] == "DF"
        assert [float(v) for v in tags["NominalScannedPixelSpacing"].split("\\")] == [0.169, 0.169]


def test_store_twice_keeps_one_instance(orthanc_empty, film_files):
    (path,) = film_files(1)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        first = archive.store(path)
        second = archive.store(path)
    assert first.sop_instance_uid == second.sop_instance_uid
    assert len(orthanc_empty.rest("GET", "/instances")) == 1


def test_contains_and_verify_by_find_and_get(orthanc_empty, film_files):
    (path,) = film_files(1)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        receipt = archive.store(path)
        assert archive.contains(receipt.sop_instance_uid)
        assert not archive.contains("1.2.826.0.1.3680043.8.498.404")
        archive.verify(receipt, retrieve=False)
        archive.verify(receipt)  # C-GET + pixel hash


def test_verify_detects_pixel_mismatch_and_missing(orthanc_empty, film_files):
    (path,) = film_files(1)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        receipt = archive.store(path)
        tampered = receipt.__class__(**{**receipt.__dict__, "pixel_sha256": "0" * 64})
        with pytest.raises(VerificationError, match="pixel hash mismatch"):
            archive.verify(tampered)
        missing = receipt.__class__(**{**receipt.__dict__, "sop_instance_uid": "1.2.826.0.1.3680043.8.498.405"})
        with pytest.raises(VerificationError, match="does not hold"):
            archive.verify(missing)


@pytest.mark.parametrize("transfer_syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless])
def test_compressed_transfer_syntaxes_in_own_context(orthanc_empty, film_files, transfer_syntax):
    (path,) = film_files(1, transfer_syntax=transfer_syntax)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        receipt = archive.store(path)
        archive.verify(receipt)
    assert receipt.transfer_syntax_uid == transfer_syntax
    (iid,) = orthanc_empty.find_instance(receipt.sop_instance_uid)
    assert orthanc_empty.rest("GET", f"/instances/{iid}/metadata/TransferSyntax") == transfer_syntax


def test_reconnects_after_archive_restart(orthanc_empty, film_files):
    first, second = film_files(2)
    with DimseArchive.from_url(orthanc_empty.dicom_url, CONFIG) as archive:
        archive.store(first)
        orthanc_empty.stop()
        with pytest.raises(ArchiveUnreachableError) as info:
            archive.store(second)
        assert is_transient(info.value)
        orthanc_empty.start()
        archive.store(second)
    assert len(orthanc_empty.rest("GET", "/instances")) == 2


def test_unreachable_port_fails_check():
    archive = DimseArchive("NOBODY", "127.0.0.1", free_port(), ArchiveConfig(timeout_s=3))
    with pytest.raises(ArchiveUnreachableError) as info:
        archive.check()
    assert is_transient(info.value)


def test_wrong_called_aet_is_rejected_permanently(orthanc):
    archive = DimseArchive("NOT_ORTHANC", "127.0.0.1", orthanc.dicom_port, CONFIG)
    with pytest.raises(ArchiveUnreachableError, match="rejected") as info:
        archive.check()
    assert not is_transient(info.value)


# --- fault-injecting peers (pynetdicom SCPs) --------------------------------------------------
@pytest.fixture
def scp():
    """Start a pynetdicom Storage SCP: ``scp(contexts, status)`` -> port."""
    servers = []

    def start(sop_classes, status=0x0000):
        ae = AE(ae_title="PEER")
        ae.add_supported_context(Verification)
        for sop_class in sop_classes:
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, JPEGLSLossless, RLELossless])
        received = []

        def on_store(event):
            received.append(event.dataset)
            return status

        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        servers.append(server)
        return server.server_address[1], received

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize(("status", "transient"), [(0xA700, True), (0xA900, False), (0xC000, False)])
def test_failure_status_maps_to_store_failed(scp, film_files, status, transient):
    port, _ = scp([MF_WORD_SC], status=status)
    (path,) = film_files(1)
    with DimseArchive("PEER", "127.0.0.1", port, CONFIG) as archive:
        with pytest.raises(StoreFailedError, match=f"C-STORE failed with status 0x{status:04X}") as info:
            archive.store(path)
    assert is_transient(info.value) is transient


def test_warning_status_is_a_receipt(scp, film_files):
    port, received = scp([MF_WORD_SC], status=0xB000)
    (path,) = film_files(1)
    with DimseArchive("PEER", "127.0.0.1", port, CONFIG) as archive:
        receipt = archive.store(path)
    assert any("0xB000" in n for n in receipt.notes)
    assert len(received) == 1


def _stub_plain_sc(monkeypatch):
    """Use pipeline.dicom_film.as_plain_sc when it exists, else a minimal stand-in."""
    try:
        from pipeline.dicom_film import as_plain_sc  # noqa: F401

        return
    except ImportError:
        pass

    def as_plain_sc(ds):
        out = ds.copy()
        out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = PLAIN_SC
        for kw in ("NumberOfFrames", "FrameIncrementPointer", "FrameLabelVector"):
            if kw in out:
                del out[kw]
        return out

    module = types.ModuleType("pipeline.dicom_film")
    module.as_plain_sc = as_plain_sc
    monkeypatch.setitem(sys.modules, "pipeline.dicom_film", module)


def test_fallback_to_plain_sc_when_peer_refuses_multiframe(scp, film_files, monkeypatch):
    _stub_plain_sc(monkeypatch)
    port, received = scp([PLAIN_SC])
    (path,) = film_files(1)
    with DimseArchive("PEER", "127.0.0.1", port, CONFIG) as archive:
        receipt = archive.store(path)
    assert FALLBACK_NOTE in receipt.notes
    assert receipt.sop_class_uid == PLAIN_SC
    (ds,) = received
    assert ds.SOPClassUID == PLAIN_SC
    assert ds.SOPInstanceUID == dcmread(path).SOPInstanceUID
    assert "NumberOfFrames" not in ds


def test_peer_accepting_nothing_we_write(scp, film_files):
    port, _ = scp(["1.2.840.10008.5.1.4.1.1.2"])  # CT only
    (path,) = film_files(1, sop_class=PLAIN_SC)
    with DimseArchive("PEER", "127.0.0.1", port, CONFIG) as archive:
        with pytest.raises(StoreFailedError, match="accepted no presentation context") as info:
            archive.store(path)
    assert not is_transient(info.value)


def test_association_closed_by_idle_peer_is_reopened(film_files):
    """Orthanc drops idle associations after DicomScpTimeout; the next store reconnects."""
    import time

    from orthanc_server import OrthancServer, orthanc_available

    if not orthanc_available():
        pytest.skip("Debian's orthanc is not installed (/usr/sbin/Orthanc missing)")
    first, second = film_files(2)
    with OrthancServer(extra_config={"DicomScpTimeout": 1}) as server:
        with DimseArchive.from_url(server.dicom_url, CONFIG) as archive:
            archive.store(first)
            time.sleep(2.5)
            receipt = archive.store(second)
            archive.verify(receipt)
        assert len(server.rest("GET", "/instances")) == 2
