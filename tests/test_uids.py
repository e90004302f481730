"""Tests of pipeline.uids: deterministic, valid UIDs (PS3.5 9.1, B.2)."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.uids import FilmUIDs, derive_uid, film_uids, is_valid_uid

UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
SHA_A = hashlib.sha256(b"scan A").hexdigest()
SHA_B = hashlib.sha256(b"scan B").hexdigest()
ORG_ROOT = "1.2.826.0.1.3680043.10.543"


def _uids(**kw) -> FilmUIDs:
    args = dict(root="2.25", sha256=SHA_A, patient_id="PID001", study_date="19970706",
                accession_number="")
    args.update(kw)
    return film_uids(**args)


def _assert_valid(uid: str) -> None:
    assert len(uid) <= 64
    assert UID_RE.match(uid), uid
    assert is_valid_uid(uid)


def test_uuid_root_is_a_name_based_uuid_v8():
    uid = derive_uid("2.25", "film", SHA_A)
    _assert_valid(uid)
    assert uid.startswith("2.25.")
    value = uuid.UUID(int=int(uid[len("2.25."):]))
    assert value.version == 8
    assert value.variant == uuid.RFC_4122
    # The 122 free bits are the first 128 bits of the SHA-256 of the parts.
    mask = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
    digest = hashlib.sha256()
    for part in ("film", SHA_A):
        digest.update(len(part).to_bytes(8, "big") + part.encode())
    assert value.int & mask == int.from_bytes(digest.digest()[:16], "big") & mask


def test_other_root_is_truncated_to_64_characters():
    uid = derive_uid(ORG_ROOT, "film", SHA_A)
    _assert_valid(uid)
    assert uid.startswith(ORG_ROOT + ".")
    assert len(uid) == 64


@pytest.mark.parametrize("root", ["", "1.02.3", "1..2", "a.b", "1.2."])
def test_invalid_root_is_refused(root):
    with pytest.raises(ValueError):
        derive_uid(root, "x")


def test_root_leaving_no_room_is_refused():
    with pytest.raises(ValueError):
        derive_uid("1." + "2" * 50, "x")


def test_parts_are_unambiguous():
    assert derive_uid("2.25", "ab", "c") != derive_uid("2.25", "a", "bc")


@settings(max_examples=200, deadline=None)
@given(root=st.sampled_from(["2.25", ORG_ROOT, "1.2.3", "9"]), parts=st.lists(st.text(), min_size=1, max_size=4))
def test_derived_uids_are_always_valid_and_stable(root, parts):
    uid = derive_uid(root, *parts)
    _assert_valid(uid)
    assert derive_uid(root, *parts) == uid


def test_film_uids_are_stable_and_valid():
    first, again = _uids(), _uids()
    assert first == again
    for uid in (first.sop_instance_uid, first.study_instance_uid, first.series_instance_uid,
                first.original_sop_instance_uid):
        _assert_valid(uid)
    assert len({first.sop_instance_uid, first.study_instance_uid, first.series_instance_uid,
                first.original_sop_instance_uid}) == 4


def test_films_of_one_exam_share_study_and_series():
    a, b = _uids(sha256=SHA_A), _uids(sha256=SHA_B)
    assert a.study_instance_uid == b.study_instance_uid
    assert a.series_instance_uid == b.series_instance_uid
    assert a.sop_instance_uid != b.sop_instance_uid


def test_sha256_case_does_not_matter():
    assert _uids(sha256=SHA_A.upper()) == _uids(sha256=SHA_A)


def test_no_uid_depends_on_the_batch():
    # The same scan migrated again in another batch must be the same instance in the same
    # series: a batch-derived series put one SOP Instance UID in two series. The batch is no
    # input of the derivation at all (tests/test_remigration_orthanc.py checks it end to end).
    import inspect

    assert "batch_name" not in inspect.signature(film_uids).parameters


@pytest.mark.parametrize("change", [{"patient_id": "PID002"}, {"study_date": "19970707"}, {"accession_number": "A123"}])
def test_other_study_gets_other_series(change):
    assert _uids(**change).series_instance_uid != _uids().series_instance_uid


@pytest.mark.parametrize("change", [{"patient_id": "PID002"}, {"study_date": "19970707"}, {"accession_number": "A123"}])
def test_identity_changes_the_study(change):
    assert _uids(**change).study_instance_uid != _uids().study_instance_uid


def test_undated_films_get_their_own_study():
    a, b = _uids(study_date="", sha256=SHA_A), _uids(study_date="", sha256=SHA_B)
    assert a.study_instance_uid != b.study_instance_uid


def test_organisation_root_film_uids_fit():
    u = _uids(root=ORG_ROOT)
    for uid in (u.sop_instance_uid, u.study_instance_uid, u.series_instance_uid, u.original_sop_instance_uid):
        _assert_valid(uid)
        assert uid.startswith(ORG_ROOT + ".")


@pytest.mark.parametrize("kw", [{"sha256": "xyz"}, {"sha256": SHA_A[:-1]}, {"patient_id": ""}, {"patient_id": "  "}])
def test_bad_input_is_refused(kw):
    with pytest.raises(ValueError):
        _uids(**kw)
