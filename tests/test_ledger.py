"""The ledger: transactional state changes, leases, audit log, change detection."""

from __future__ import annotations

import pytest

from filmflow.ledger import Ledger, LedgerConflict, default_ledger_url


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(default_ledger_url(tmp_path))
    yield led
    led.close()


def test_discover_is_idempotent_and_records_events(ledger):
    a = ledger.discover("/s/a.tif", "aa" * 32, "b1")
    b = ledger.discover("/s/a.tif", "aa" * 32, "b1")
    assert a.state == b.state == "discovered"
    assert ledger.counts() == {"discovered": 1}


def test_transition_checks_expected_state(ledger):
    ledger.discover("/s/a.tif", "aa" * 32, "b1")
    row = ledger.transition("/s/a.tif", "processed", record={"x": 1}, staged_path="/w/x.dcm", sop_instance_uid="1.2.3")
    assert (row.state, row.record, row.staged_path, row.sop_instance_uid) == ("processed", {"x": 1}, "/w/x.dcm", "1.2.3")
    with pytest.raises(LedgerConflict):
        ledger.transition("/s/a.tif", "archived", expect=("flagged",))
    assert ledger.get("/s/a.tif").state == "processed"
    with pytest.raises(ValueError):
        ledger.transition("/s/a.tif", "lost")


def test_changed_file_starts_over_but_archived_stays(ledger):
    ledger.discover("/s/a.tif", "aa" * 32, "b1")
    ledger.transition("/s/a.tif", "failed", error="unreadable_scan: x")
    row = ledger.discover("/s/a.tif", "bb" * 32, "b1")
    assert (row.state, row.sha256, row.error) == ("discovered", "bb" * 32, "")
    ledger.transition("/s/a.tif", "archived")
    assert ledger.discover("/s/a.tif", "cc" * 32, "b1").state == "archived"


def test_lease_excludes_a_second_owner(tmp_path):
    url = default_ledger_url(tmp_path)
    one, two = Ledger(url, owner="one"), Ledger(url, owner="two")
    one.discover("/s/a.tif", "aa" * 32, "b1")
    assert one.acquire("/s/a.tif")
    assert not two.acquire("/s/a.tif")
    one.release("/s/a.tif")
    assert two.acquire("/s/a.tif")
    one.close()
    two.close()


def test_audit_log_is_append_only_in_order(ledger):
    ledger.add_audit(user="rev", source_path="/s/a.tif", action="approve", changes={"PatientID": ["1", "2"]})
    ledger.add_audit(user="rev", source_path="/s/a.tif", action="reject", changes={}, reason="blurred")
    log = ledger.audit_log("/s/a.tif")
    assert [e["action"] for e in log] == ["approve", "reject"]
    assert log[0]["changes"] == {"PatientID": ["1", "2"]}
    assert log[1]["reason"] == "blurred"


def test_find_sha_excludes_own_path(ledger):
    ledger.discover("/s/a.tif", "aa" * 32, "b1")
    ledger.discover("/s/copy.tif", "aa" * 32, "b2")
    assert [r.source_path for r in ledger.find_sha("aa" * 32, exclude_path="/s/a.tif")] == ["/s/copy.tif"]
