"""``Pusher.push_many``: the films of a push round share one storage commitment request (real Orthanc, real ledger).

- three films in one round: all ``archived``, committed by the same transaction (one N-ACTION);
- one film's instance lost from Orthanc between its verify and the round's request (a fault
  injector deletes it through Orthanc's REST API): that film ``failed`` with ``commitment_failed``
  (0x0112), the two others archived under the same transaction;
- ``require`` and Orthanc reporting to a port nobody listens on: every film of the round stored,
  then ``pending`` with ``commitment_timeout`` after one wait (per film, the first timeout would
  have stopped the others before their store);
- rounds are cut at ``ROUND_FILMS`` films: one transaction per round.

Inputs: synthetic films from :func:`fixtures_orthanc.make_film_file` (provenance there) staged in a
SQLite ledger under ``tmp_path`` as the migrate flow leaves them (``processed``, staged path, header).
"""

from __future__ import annotations

import hashlib
import re

import pytest
from prefect import flow
from prefect.testing.utilities import prefect_test_harness
from pydicom import dcmread

from filmflow.archive.dimse import DimseArchive
from filmflow.config import ArchiveConfig
from filmflow.ledger import Ledger, default_ledger_url
from orthanc_server import free_port

pytestmark = pytest.mark.orthanc


@pytest.fixture(scope="module", autouse=True)
def _prefect():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@flow(name="push-rounds-probe", validate_parameters=False, persist_result=False)
def in_flow(fn):
    """Run ``fn`` inside a flow run (the Pusher logs through Prefect's run logger)."""
    return fn()


def stage(ledger: Ledger, paths) -> dict[str, str]:
    """Put staged films in the ledger as ``processed``; {key: SOP Instance UID}."""
    keys = {}
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        key = str(path.with_suffix(".tif"))
        ledger.discover(key, hashlib.sha256(path.read_bytes()).hexdigest(), "rounds")
        header = {"PatientID": str(ds.PatientID), "PatientName": str(ds.PatientName)}
        ledger.transition(key, "processed", record={"source_file": path.name, "header": header},
                          staged_path=str(path), sop_instance_uid=str(ds.SOPInstanceUID),
                          study_instance_uid=str(ds.StudyInstanceUID))
        keys[key] = str(ds.SOPInstanceUID)
    return keys


def archive_config(orthanc, *, port: int | None = None, timeout_s: float = 10.0) -> ArchiveConfig:
    return ArchiveConfig(storage_commitment="require", commitment_port=port or orthanc.calling_aet_port,
                         commitment_host="127.0.0.1", commitment_timeout_s=timeout_s, timeout_s=10, retries=0,
                         verify_fraction=0)


def transaction_of(note: str) -> str:
    (uid,) = re.findall(r"transaction ([0-9.]+)\)", note)
    return uid


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(default_ledger_url(tmp_path))
    yield led
    led.close()


def push_many(orthanc, ledger, keys, cfg, *, before_commit=None):
    from flows.push import Pusher

    with DimseArchive.from_url(orthanc.dicom_url, cfg) as arch:
        arch.check()
        if before_commit is not None:
            real = arch.commit

            def commit(receipts):
                before_commit()
                return real(receipts)

            arch.commit = commit
        pusher = Pusher(ledger, arch, cfg)
        return in_flow(lambda: pusher.push_many(list(keys))), pusher


def test_one_commitment_request_per_round(orthanc_empty, film_files, ledger):
    keys = stage(ledger, film_files(3))
    states, pusher = push_many(orthanc_empty, ledger, keys, archive_config(orthanc_empty))
    assert states == {k: "archived" for k in keys}, pusher.errors
    rows = [ledger.get(k) for k in keys]
    assert {r.record["storage_commitment"] for r in rows} == {"committed"}
    notes = [next(n for n in r.record["notes"] if n.startswith("committed by")) for r in rows]
    assert len({transaction_of(n) for n in notes}) == 1, notes
    for uid in keys.values():
        assert len(orthanc_empty.find_instance(uid)) == 1


def test_an_instance_lost_before_the_request_fails_only_its_film(orthanc_empty, film_files, ledger):
    keys = stage(ledger, film_files(3))
    lost_key, lost_uid = list(keys.items())[1]

    def lose_one():
        for iid in orthanc_empty.find_instance(lost_uid):
            orthanc_empty.rest("DELETE", f"/instances/{iid}")

    states, pusher = push_many(orthanc_empty, ledger, keys, archive_config(orthanc_empty), before_commit=lose_one)
    assert states == {k: ("failed" if k == lost_key else "archived") for k in keys}
    lost = ledger.get(lost_key)
    assert lost.error.startswith(f"commitment_failed: dicom://ORTHANC@127.0.0.1:{orthanc_empty.dicom_port} did not "
                                 f"commit instance {lost_uid}: failure reason 0x0112"), lost.error
    others = [ledger.get(k) for k in keys if k != lost_key]
    assert len({transaction_of(next(n for n in r.record["notes"] if "transaction" in n)) for r in others}) == 1
    assert not pusher.outage, "a permanent failure of one film does not stop the run"


def test_no_report_leaves_every_film_of_the_round_pending_as_commitment_timeout(orthanc_empty, film_files, ledger):
    keys = stage(ledger, film_files(3))
    cfg = archive_config(orthanc_empty, port=free_port(), timeout_s=1.5)  # Orthanc reports elsewhere
    states, pusher = push_many(orthanc_empty, ledger, keys, cfg)
    assert states == {k: "pushed" for k in keys}, "stored, verified, not committed: pending"
    for k in keys:
        assert pusher.errors[k].startswith("commitment_timeout: no storage commitment report (N-EVENT-REPORT)"), pusher.errors[k]
        assert ledger.get(k).state == "pushed"
    assert pusher.outage == "commitment_timeout"
    assert sorted(i for uid in keys.values() for i in orthanc_empty.find_instance(uid)) == sorted(
        orthanc_empty.rest("GET", "/instances")) and len(orthanc_empty.rest("GET", "/instances")) == 3


def test_rounds_are_cut_at_round_films(orthanc_empty, film_files, ledger, monkeypatch):
    import flows.push

    monkeypatch.setattr(flows.push, "ROUND_FILMS", 2)
    keys = stage(ledger, film_files(3))
    states, _ = push_many(orthanc_empty, ledger, keys, archive_config(orthanc_empty))
    assert set(states.values()) == {"archived"}
    transactions = [transaction_of(next(n for n in ledger.get(k).record["notes"] if "transaction" in n)) for k in keys]
    assert transactions[0] == transactions[1] != transactions[2]
