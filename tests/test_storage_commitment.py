"""DICOM Storage Commitment (PS3.4 Annex J) against the real Orthanc, and against pynetdicom peers.

Orthanc (session fixture ``orthanc``) registers our calling AE ``FILMFLOW`` in
``DicomModalities`` at 127.0.0.1:``orthanc.calling_aet_port``; a listener on that
port receives its N-EVENT-REPORTs. A listener on any other port receives
nothing (the "modality not registered / listener unreachable" case).

- the N-EVENT-REPORT of a request for stored instances lists exactly those SOP
  Instance UIDs as committed (event type 1);
- a UID Orthanc does not hold comes back in the Failed SOP Sequence with
  Failure Reason 0x0112 (event type 2), the others committed;
- ``DimseArchive.commit`` after ``verify``: ``committed``; one request for several
  instances is matched back per SOP Instance UID (a lost one: ``commitment_failed``,
  0x0112, permanent); listener unreachable: ``auto`` falls back to C-FIND/C-GET
  (once, then not asked again in the run), ``require`` raises
  ``commitment_timeout`` (transient);
- peers without the Push Model context, or answering the N-ACTION with a failure
  status: ``CommitmentUnsupportedError``, ``auto`` falls back, ``require`` raises
  ``commitment_failed`` (transient); a peer reporting on the N-ACTION's own
  association: committed (pynetdicom SCPs on loopback);
- an Orthanc whose modality entry says ``"AllowStorageCommitment": false`` aborts
  the N-ACTION: ``auto`` falls back at once, ``require`` raises ``commitment_failed``
  (transient);
- a commitment port already in use: ``CommitmentListenerError`` (a ConfigError)
  from ``DimseArchive.check``; ``filmflow migrate`` exits 2 with one line before
  anything is pushed;
- ``filmflow migrate`` with ``require``: a listener Orthanc cannot reach leaves the
  films pending as ``commitment_timeout`` (one line per film, no traceback); the
  next run, listening where Orthanc reports, archives them and records ``committed``.

Inputs: synthetic films from :func:`fixtures_orthanc.make_film_file` and the
labelled batch of :func:`fixtures_orthanc.make_clean_batch` (provenance there).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import threading
import time

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from filmflow.archive.commitment import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    CommitmentFailedError,
    CommitmentListenerError,
    CommitmentTimeoutError,
    CommitmentUnsupportedError,
    acquire_listener,
    parse_event_report,
    release_listener,
    request_commitment,
    send_commitment_request,
)
from filmflow.archive import StoreReceipt
from filmflow.archive.dimse import DimseArchive
from filmflow.config import ArchiveConfig, load_settings
from filmflow.errors import ConfigError, VerificationError
from filmflow.report import read_report
from orthanc_server import free_port
from test_batch_orthanc import FILMFLOW, run_migrate

pytestmark = pytest.mark.orthanc

NO_SUCH_OBJECT_INSTANCE = 0x0112


def refs(paths):
    out = []
    for p in paths:
        ds = dcmread(p, stop_before_pixels=True)
        out.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return out


def commitment_config(orthanc, mode: str, *, port: int | None = None, timeout_s: float = 10.0) -> ArchiveConfig:
    return ArchiveConfig(storage_commitment=mode, commitment_port=port or orthanc.calling_aet_port,
                         commitment_host="127.0.0.1", commitment_timeout_s=timeout_s, timeout_s=10, retries=0)


@pytest.fixture
def push_model_assoc(orthanc_empty):
    """An association FILMFLOW -> Orthanc with only the Push Model context, and the listener Orthanc reports to."""
    listener = acquire_listener("FILMFLOW", "127.0.0.1", orthanc_empty.calling_aet_port)
    ae = AE(ae_title="FILMFLOW")
    ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
    assoc = ae.associate("127.0.0.1", orthanc_empty.dicom_port, ae_title=orthanc_empty.aet)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()
        release_listener(listener)


def store_all(orthanc, paths) -> None:
    with DimseArchive.from_url(orthanc.dicom_url, ArchiveConfig(timeout_s=10)) as arch:
        for p in paths:
            arch.store(p)


def test_commitment_report_lists_exactly_the_stored_instances(orthanc_empty, film_files, push_model_assoc):
    paths = film_files(3)
    store_all(orthanc_empty, paths)
    wanted = refs(paths)
    transaction = generate_uid()
    report = request_commitment(push_model_assoc, wanted, timeout_s=10, url=orthanc_empty.dicom_url,
                                transaction_uid=transaction)
    assert report.transaction_uid == transaction
    assert report.event_type == EVENT_ALL_COMMITTED
    assert sorted((r.sop_class_uid, r.sop_instance_uid) for r in report.committed) == sorted(wanted)
    assert report.failed == ()
    assert report.calling_ae_title == orthanc_empty.aet


def test_uid_not_held_comes_back_failed(orthanc_empty, film_files, push_model_assoc):
    paths = film_files(2)
    store_all(orthanc_empty, paths)
    held = refs(paths)
    missing = (held[0][0], generate_uid())
    report = request_commitment(push_model_assoc, [*held, missing], timeout_s=10, url=orthanc_empty.dicom_url)
    assert report.event_type == EVENT_FAILURES_EXIST
    assert report.committed_uids() == {uid for _, uid in held}
    assert [(r.sop_instance_uid, r.failure_reason) for r in report.failed] == [(missing[1], NO_SUCH_OBJECT_INSTANCE)]
    assert report.failure(missing[1]).failure_text == "0x0112 (no such object instance)"
    assert report.failure(held[0][1]) is None


def test_concurrent_transactions_are_matched_by_uid(orthanc_empty, film_files, push_model_assoc):
    """Two requests in flight on one listener: each report goes to its own transaction."""
    from filmflow.archive.commitment import wait_for_report

    a, b = film_files(2)
    store_all(orthanc_empty, [a, b])
    (ra,), (rb,) = refs([a]), refs([b])
    ta = send_commitment_request(push_model_assoc, [ra])
    tb = send_commitment_request(push_model_assoc, [rb, (rb[0], generate_uid())])
    report_b, report_a = wait_for_report(tb, 10), wait_for_report(ta, 10)
    assert report_a.committed_uids() == {ra[1]} and report_a.event_type == EVENT_ALL_COMMITTED
    assert report_b.committed_uids() == {rb[1]} and len(report_b.failed) == 1


def commit_one(arch, receipt):
    """``arch.commit`` for one instance: its outcome (or the CommitmentFailedError of the instance)."""
    results = arch.commit([receipt])
    assert list(results) == [receipt.sop_instance_uid]
    return results[receipt.sop_instance_uid]


def test_verify_then_commit(orthanc_empty, film_files):
    (path,) = film_files(1)
    with DimseArchive.from_url(orthanc_empty.dicom_url, commitment_config(orthanc_empty, "require")) as arch:
        receipt = arch.store(path)
        assert arch.verify(receipt, retrieve=True) is None
        outcome = commit_one(arch, receipt)
    assert outcome.method == "committed"
    assert orthanc_empty.dicom_url in outcome.note


def test_one_request_for_several_films_is_matched_back_per_instance(orthanc_empty, film_files):
    """One N-ACTION for three stored instances, one of them deleted from Orthanc meanwhile: two committed, that one
    ``commitment_failed`` with 0x0112 (permanent); each outcome under its own SOP Instance UID."""
    paths = film_files(3)
    with DimseArchive.from_url(orthanc_empty.dicom_url, commitment_config(orthanc_empty, "require")) as arch:
        receipts = [arch.store(p) for p in paths]
        for iid in orthanc_empty.find_instance(receipts[1].sop_instance_uid):
            orthanc_empty.rest("DELETE", f"/instances/{iid}")
        results = arch.commit(receipts)
    assert list(results) == [r.sop_instance_uid for r in receipts]
    kept, lost = [results[receipts[0].sop_instance_uid], results[receipts[2].sop_instance_uid]], results[receipts[1].sop_instance_uid]
    assert [o.method for o in kept] == ["committed", "committed"]
    assert kept[0].note == kept[1].note, "one transaction"
    assert isinstance(lost, CommitmentFailedError) and lost.code == "commitment_failed"
    assert "0x0112 (no such object instance)" in str(lost) and receipts[1].sop_instance_uid in str(lost)
    assert lost.transient is False


def test_verify_of_an_instance_the_archive_lost_fails_on_commitment(orthanc_empty, film_files):
    """Deleted from Orthanc after the store: verify stops at the C-FIND; a commitment request for it fails 0x0112."""
    (path,) = film_files(1)
    cfg = commitment_config(orthanc_empty, "require")
    with DimseArchive.from_url(orthanc_empty.dicom_url, cfg) as arch:
        receipt = arch.store(path)
        orthanc_empty.clear()
        with pytest.raises(VerificationError, match="does not hold"):
            arch.verify(receipt)
        failed = commit_one(arch, receipt)
    assert isinstance(failed, CommitmentFailedError)
    assert f"did not commit instance {receipt.sop_instance_uid}: failure reason 0x0112" in str(failed)
    assert failed.transient is False


def test_listener_unreachable_auto_falls_back_once(orthanc_empty, film_files):
    paths = film_files(2)
    cfg = commitment_config(orthanc_empty, "auto", port=free_port(), timeout_s=1.5)  # Orthanc reports elsewhere
    with DimseArchive.from_url(orthanc_empty.dicom_url, cfg) as arch:
        receipts = [arch.store(p) for p in paths]
        t0 = time.monotonic()
        first = commit_one(arch, receipts[0])
        t1 = time.monotonic()
        second = commit_one(arch, receipts[1])
        t2 = time.monotonic()
    assert first.method == second.method == "unsupported"
    assert "no storage commitment report" in first.note and "within 1.5 s" in first.note
    assert "'FILMFLOW'" in first.note and str(cfg.commitment_port) in first.note
    assert t1 - t0 >= 1.5
    assert t2 - t1 < 1.0, "auto asks only once per run"


def test_listener_unreachable_require_is_a_transient_timeout(orthanc_empty, film_files):
    (path,) = film_files(1)
    cfg = commitment_config(orthanc_empty, "require", port=free_port(), timeout_s=1.0)
    with DimseArchive.from_url(orthanc_empty.dicom_url, cfg) as arch:
        receipt = arch.store(path)
        arch.verify(receipt)
        with pytest.raises(CommitmentTimeoutError, match="no storage commitment report") as info:
            arch.commit([receipt])
    assert info.value.code == "commitment_timeout"
    assert info.value.transient is True


def test_off_and_no_port_do_not_ask(orthanc_empty, film_files):
    (path,) = film_files(1)
    for cfg, note in ((ArchiveConfig(storage_commitment="off", commitment_port=orthanc_empty.calling_aet_port), "off"),
                      (ArchiveConfig(), "commitment_port is 0")):
        with DimseArchive.from_url(orthanc_empty.dicom_url, cfg) as arch:
            arch.check()
            outcome = commit_one(arch, arch.store(path))
            assert arch._listener is None
        assert outcome.method == "off" and note in outcome.note


def test_require_without_port_is_a_config_error():
    with pytest.raises(ConfigError, match="commitment_port"):
        load_settings(archive={"storage_commitment": "require"})


@pytest.mark.parametrize("url, kind", [("out/archive", "folder"), ("http://127.0.0.1:1/dicom-web", "http")])
def test_require_on_an_archive_without_commitment_is_refused_before_the_batch(tmp_path, url, kind):
    from filmflow.batch import check_batch_inputs

    (tmp_path / "scans").mkdir()
    cfg = tmp_path / "site.toml"
    cfg.write_text('[archive]\nstorage_commitment = "require"\ncommitment_port = 11113\n')
    with pytest.raises(ConfigError, match=f"dicom:// archives only.*{kind} target"):
        check_batch_inputs(tmp_path / "scans", "b", archive=url, config=str(cfg), check_archive=False,
                           run={"work_dir": str(tmp_path / "work")})
    # the same site file is fine for a PACS
    got = check_batch_inputs(tmp_path / "scans", "b", archive="dicom://PACS@127.0.0.1:1", config=str(cfg),
                             check_archive=False, run={"work_dir": str(tmp_path / "work")})
    assert got.settings.archive.storage_commitment == "require"


@pytest.fixture
def busy_port():
    """A port on 127.0.0.1 held by another program (a pynetdicom Verification SCP)."""
    blocker = AE(ae_title="OTHER")
    blocker.add_supported_context(Verification)
    server = blocker.start_server(("127.0.0.1", free_port()), block=False)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def test_listener_port_in_use_is_a_config_error(busy_port):
    port = free_port()
    first = acquire_listener("FILMFLOW", "127.0.0.1", port)
    try:
        with pytest.raises(CommitmentListenerError, match=f"127.0.0.1:{busy_port} .*archive.commitment_port") as info:
            acquire_listener("FILMFLOW", "127.0.0.1", busy_port)
        assert isinstance(info.value, ConfigError) and info.value.exit_code == 2
        assert acquire_listener("FILMFLOW", "127.0.0.1", port) is first, "one listener per port in a process"
        release_listener(first)
        assert first.running
    finally:
        release_listener(first)
    assert not first.running


@pytest.mark.parametrize("mode", ["auto", "require"])
def test_a_busy_commitment_port_is_refused_before_the_batch(orthanc_empty, busy_port, film_files, tmp_path, mode):
    """``DimseArchive.check`` (the flow's start) and ``check_batch_inputs`` (the CLI's) bind the listener: a port in
    use stops the batch before any store, also with ``auto`` (our own setting, not the archive's)."""
    from filmflow.batch import check_batch_inputs

    (path,) = film_files(1)
    cfg = commitment_config(orthanc_empty, mode, port=busy_port)
    with DimseArchive.from_url(orthanc_empty.dicom_url, cfg) as arch:
        with pytest.raises(CommitmentListenerError, match=f"on 127.0.0.1:{busy_port} "):
            arch.check()
    (tmp_path / "scans").mkdir()
    site = tmp_path / "site.toml"
    site.write_text(f'[archive]\nstorage_commitment = "{mode}"\ncommitment_port = {busy_port}\n'
                    'commitment_host = "127.0.0.1"\n')
    with pytest.raises(CommitmentListenerError, match=f"on 127.0.0.1:{busy_port} "):
        check_batch_inputs(tmp_path / "scans", "b", archive=orthanc_empty.dicom_url, config=str(site),
                           run={"work_dir": str(tmp_path / "work")})
    assert orthanc_empty.rest("GET", "/instances") == []
    # commitment off: the port is not ours to bind, the same archive is fine
    off = commitment_config(orthanc_empty, "off", port=busy_port)
    with DimseArchive.from_url(orthanc_empty.dicom_url, off) as arch:
        arch.check()
        arch.store(path)
        assert arch._listener is None


# --- peers that do not offer commitment (pynetdicom SCPs on loopback) ---------------------------
@pytest.fixture
def peer():
    """Start a pynetdicom SCP; ``peer(push_model=..., action_status=..., report=...)`` -> (an association to it, its URL).

    Its C-FIND (Study Root) finds whatever SOP Instance UID it is asked for, so
    ``DimseArchive.verify`` gets as far as the commitment request. With
    ``report``, it commits every instance of a request and reports 0.2 s later
    on the association of the N-ACTION (PS3.4 J.3.3 allows either association).
    """
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

    servers, assocs = [], []

    def on_find(event):
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.SOPInstanceUID = event.identifier.SOPInstanceUID
        ident.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        yield 0xFF00, ident

    def reporting_action(event):
        info, assoc = event.action_information, event.assoc

        def later():
            time.sleep(0.2)
            report = Dataset()
            report.TransactionUID = info.TransactionUID
            report.ReferencedSOPSequence = info.ReferencedSOPSequence
            assoc.send_n_event_report(report, EVENT_ALL_COMMITTED, STORAGE_COMMITMENT_PUSH_MODEL,
                                      STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)

        threading.Thread(target=later, daemon=True).start()
        return 0x0000, None

    def start(*, push_model: bool, action_status: int = 0x0000, report: bool = False):
        ae = AE(ae_title="PEER")
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        if push_model:
            ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL)
        port = free_port()
        servers.append(ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_N_ACTION, reporting_action if report else lambda event: (action_status, None)),
            (evt.EVT_C_FIND, on_find)]))
        scu = AE(ae_title="FILMFLOW")
        scu.add_requested_context(Verification)
        scu.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
        assoc = scu.associate("127.0.0.1", port, ae_title="PEER")
        assert assoc.is_established
        assocs.append(assoc)
        return assoc, f"dicom://PEER@127.0.0.1:{port}"

    yield start
    for a in assocs:
        a.release()
    for s in servers:
        s.shutdown()


def test_peer_without_push_model_context_is_unsupported(peer):
    assoc, _ = peer(push_model=False)
    with pytest.raises(CommitmentUnsupportedError, match="no presentation context for Storage Commitment"):
        send_commitment_request(assoc, [("1.2.840.10008.5.1.4.1.1.7", generate_uid())], url="dicom://PEER")


def test_peer_answering_failure_status_is_unsupported(peer):
    assoc, _ = peer(push_model=True, action_status=0x0110)
    with pytest.raises(CommitmentUnsupportedError, match="status 0x0110"):
        send_commitment_request(assoc, [("1.2.840.10008.5.1.4.1.1.7", generate_uid())], url="dicom://PEER")


@pytest.mark.parametrize("push_model, status", [(False, 0x0000), (True, 0x0110)])
def test_verify_against_a_peer_without_commitment(peer, push_model, status):
    """``auto``: unsupported, C-FIND only, not asked again; ``require``: transient, so the film stays pending."""
    _, url = peer(push_model=push_model, action_status=status)
    receipt = StoreReceipt(generate_uid(), "", "", url, sop_class_uid="1.2.840.10008.5.1.4.1.1.7")
    cfg = dict(commitment_port=free_port(), commitment_host="127.0.0.1", commitment_timeout_s=5, timeout_s=5)
    reason = "no presentation context for Storage Commitment" if not push_model else "status 0x0110"
    with DimseArchive.from_url(url, ArchiveConfig(storage_commitment="auto", **cfg)) as arch:
        arch.verify(receipt, retrieve=False)
        outcome = commit_one(arch, receipt)
        again = commit_one(arch, receipt)
    assert outcome.method == "unsupported" and reason in outcome.note
    assert again == outcome
    with DimseArchive.from_url(url, ArchiveConfig(storage_commitment="require", **cfg)) as arch:
        with pytest.raises(CommitmentFailedError, match=reason) as info:
            arch.commit([receipt])
    assert info.value.code == "commitment_failed"
    assert info.value.transient is True


def test_report_on_the_association_of_the_request(peer):
    _, url = peer(push_model=True, report=True)
    receipt = StoreReceipt(generate_uid(), "", "", url, sop_class_uid="1.2.840.10008.5.1.4.1.1.7")
    cfg = ArchiveConfig(storage_commitment="require", commitment_port=free_port(), commitment_host="127.0.0.1",
                        commitment_timeout_s=5, timeout_s=5)  # our listener exists, the peer never calls it
    with DimseArchive.from_url(url, cfg) as arch:
        outcome = commit_one(arch, receipt)
    assert outcome.method == "committed", outcome


def test_parse_event_report_rejects_malformed_reports():
    info = Dataset()
    info.TransactionUID = generate_uid()
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    info.FailedSOPSequence = [item]
    with pytest.raises(ValueError, match="without Failure Reason"):
        parse_event_report(EVENT_FAILURES_EXIST, info)
    with pytest.raises(ValueError, match="event type 3"):
        parse_event_report(3, info)
    item.FailureReason = 0x0119
    assert parse_event_report(EVENT_FAILURES_EXIST, info).failed[0].failure_text == "0x0119 (class / instance conflict)"
    del info.TransactionUID
    with pytest.raises(ValueError, match="without Transaction UID"):
        parse_event_report(EVENT_FAILURES_EXIST, info)


# --- the whole CLI ---------------------------------------------------------------------------
def _records(work) -> dict[str, dict]:
    with sqlite3.connect(f"file:{work / 'ledger.sqlite'}?mode=ro", uri=True) as conn:
        return {sop: json.loads(rec) for sop, rec in conn.execute("SELECT sop_instance_uid, record FROM films")}


def migrate(batch, archive: str, tmp, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``filmflow migrate`` of ``batch`` (with its manifest) in a subprocess, as a user runs it."""
    full = dict(os.environ, PREFECT_HOME=str(tmp / "prefect-home"), **env)
    full.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [*FILMFLOW, "migrate", str(batch), "--manifest", str(batch / "manifest.csv"), "--archive", archive,
         "--report", str(tmp / "report.csv"), "--work-dir", str(tmp / "work"), "--workers", "2"],
        cwd=tmp, env=full, capture_output=True, text=True, timeout=600,
    )


REQUIRE = {"FILMFLOW_ARCHIVE__STORAGE_COMMITMENT": "require", "FILMFLOW_ARCHIVE__COMMITMENT_HOST": "127.0.0.1",
           "FILMFLOW_ARCHIVE__COMMITMENT_TIMEOUT_S": "2", "FILMFLOW_ARCHIVE__RETRIES": "0"}


@pytest.mark.parametrize("mode", ["auto", "require"])
def test_migrate_with_the_commitment_port_in_use_exits_2_before_pushing(orthanc_empty, clean_batch, busy_port,
                                                                         tmp_path, mode):
    batch, _ = clean_batch
    res = migrate(batch, orthanc_empty.dicom_url, tmp_path,
                  {**REQUIRE, "FILMFLOW_ARCHIVE__STORAGE_COMMITMENT": mode, "FILMFLOW_ARCHIVE__COMMITMENT_PORT": str(busy_port)})
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert res.stderr.strip().splitlines()[-1].startswith(
        f"filmflow: error: cannot listen for storage commitment reports on 127.0.0.1:{busy_port} (")
    assert "Traceback" not in res.stderr + res.stdout
    assert orthanc_empty.rest("GET", "/instances") == [], "nothing pushed"
    assert not (tmp_path / "report.csv").exists(), "no report claims a batch ran"


@pytest.mark.slow
def test_migrate_require_commitment_pending_then_committed(orthanc_empty, clean_batch, tmp_path):
    batch, truth = clean_batch
    env = REQUIRE
    # 1: Orthanc reports to a port nobody listens on: stored, not committed -> pending (commitment_timeout), nothing
    # archived; the other film is not pushed after that in this run, for the same reason
    res = migrate(batch, orthanc_empty.dicom_url, tmp_path, {**env, "FILMFLOW_ARCHIVE__COMMITMENT_PORT": str(free_port())})
    assert res.returncode == 0, res.stderr[-3000:]
    first = read_report(tmp_path / "report.csv")
    processed = [r for r in first if r["sop_instance_uid"] and r["status"] in ("pending", "archived")]
    assert len(processed) == 2, [(r["status"], r["qc_flags"], r["error"]) for r in first]
    assert {r["status"] for r in processed} == {"pending"}
    assert "2 film(s) pending (not yet confirmed by the archive): run the same command again" in res.stdout
    errors = sorted(r["error"] for r in processed)
    assert [e.split(":", 1)[0] for e in errors] == ["commitment_timeout", "commitment_timeout"], errors
    assert errors[0].startswith(f"commitment_timeout: no storage commitment report (N-EVENT-REPORT) from "
                                f"{orthanc_empty.dicom_url} within 2 s"), errors
    assert errors[1].startswith("commitment_timeout: not pushed, after an earlier film's commitment_timeout"), errors
    for r in processed:  # one line per film on the console, with its reason
        assert re.search(rf"^  {re.escape(r['source_file'])}\s+pending\s+commitment_timeout$", res.stdout, re.M), res.stdout
    console = res.stdout + res.stderr
    assert "Traceback" not in console and "archive_unreachable" not in console
    assert not [v for t in truth for k in ("PatientID", "PatientName", "AccessionNumber") if (v := t[k]) in res.stderr]
    # 2: listening where Orthanc reports: every pending film archived, committed
    second = run_migrate(batch, orthanc_empty.dicom_url, tmp_path,
                         env={**env, "FILMFLOW_ARCHIVE__COMMITMENT_PORT": str(orthanc_empty.calling_aet_port)})
    archived = {r["sop_instance_uid"]: r for r in second if r["status"] == "archived"}
    assert set(archived) == {r["sop_instance_uid"] for r in processed}
    assert all("committed by " + orthanc_empty.dicom_url in r["notes"] for r in archived.values())
    records = _records(tmp_path / "work")
    assert {records[uid]["storage_commitment"] for uid in archived} == {"committed"}
    assert sorted(i for uid in archived for i in orthanc_empty.find_instance(uid)) == sorted(
        orthanc_empty.rest("GET", "/instances")), "each film exactly once in the archive"


@pytest.fixture(scope="module")
def orthanc_no_commitment():
    """An Orthanc that knows FILMFLOW but does not allow it storage commitment ("AllowStorageCommitment": false)."""
    from orthanc_server import CALLING_AET, OrthancServer, orthanc_available

    if not orthanc_available():
        pytest.skip("Debian's orthanc is not installed")
    port = free_port()
    entry = {"AET": CALLING_AET, "Host": "127.0.0.1", "Port": port, "AllowEcho": True, "AllowFind": True,
             "AllowGet": True, "AllowMove": True, "AllowStore": True, "AllowStorageCommitment": False}
    with OrthancServer(calling_aet_port=port, extra_config={"DicomModalities": {CALLING_AET: entry}}) as server:
        yield server


def test_archive_refusing_commitment_auto_falls_back_require_does_not_archive(orthanc_no_commitment, film_files):
    """Orthanc 1.10 answers a refused N-ACTION by aborting the association (measured): no status at all."""
    (path,) = film_files(1)
    with DimseArchive.from_url(orthanc_no_commitment.dicom_url, commitment_config(orthanc_no_commitment, "auto")) as arch:
        receipt = arch.store(path)
        t0 = time.monotonic()
        outcome = commit_one(arch, receipt)
        elapsed = time.monotonic() - t0
        arch.verify(receipt, retrieve=True)  # the C-GET after the refused request still works
    assert outcome.method == "unsupported", outcome
    assert "no answer to the storage commitment request" in outcome.note
    assert elapsed < 5, "a refusal is not a timeout"
    with DimseArchive.from_url(orthanc_no_commitment.dicom_url, commitment_config(orthanc_no_commitment, "require")) as arch:
        with pytest.raises(CommitmentFailedError, match="no answer to the storage commitment request") as info:
            arch.commit([arch.store(path)])
    assert info.value.code == "commitment_failed"
    assert info.value.transient is True, "require: the film stays pending and the next run asks again"
