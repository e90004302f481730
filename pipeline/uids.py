"""Deterministic DICOM UIDs for digitized films.

Every UID filmflow writes is derived from the film's own content (the scan's
SHA-256) or identity (patient, exam date, accession), never from a clock, a
random source or the run that made it (batch name, work dir): migrating a scan
again, in the same batch or another, yields the very same SOP, Series and Study
Instance UIDs, so an archive sees a re-send as the same instance in the same
series rather than a second instance with the same SOP Instance UID.

References
----------
.. [1] DICOM PS3.5 section 9 "Unique Identifiers (UIDs)" and Annex B.2
   "UUID Derived UID" (root ``2.25``).
.. [2] RFC 9562 section 5.8 (UUID version 8) and Appendix B.2 (a name-based
   UUIDv8 using SHA-256).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

#: A syntactically valid UID (PS3.5 9.1): numeric components, no leading zeros.
UID_PATTERN = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")

#: Maximum length of a UID (PS3.5 9.1).
UID_MAX_LENGTH = 64

#: The UUID-derived root (PS3.5 B.2).
UUID_ROOT = "2.25"


def _digest(parts: tuple[str, ...]) -> bytes:
    # Length-prefixed so that ("ab", "c") and ("a", "bc") never collide.
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


def derive_uid(root: str, *parts: str) -> str:
    """Derive a UID deterministically from a root and some strings.

    Parameters
    ----------
    root : str
        UID root, e.g. ``"2.25"`` (UUID-derived) or an organisation root
        such as ``"1.2.826.0.1.3680043.10.543"``; at most 40 characters.
    *parts : str
        What the UID identifies (a purpose label and the identifying values);
        the same parts always give the same UID.

    Returns
    -------
    str
        A valid UID of at most 64 characters. With root ``2.25`` it is
        ``2.25.<decimal of a 128-bit UUID>``, the UUID being the first 128 bits
        of the SHA-256 of the parts with the RFC 9562 version (8) and variant
        bits set, i.e. a name-based UUIDv8. With any other root it is
        ``<root>.<decimal digits of the SHA-256>``, truncated to fit 64
        characters (at least 20 digits, i.e. > 64 bits, are kept).

    Raises
    ------
    ValueError
        When ``root`` is not a valid UID root or leaves too little room for
        the hash, or no part is given.

    Notes
    -----
    Parts are length-prefixed before hashing, so distinct part tuples cannot
    produce the same byte stream.

    References
    ----------
    DICOM PS3.5 9.1 (UID encoding rules) and B.2 (UUID derived UIDs).
    """
    if not parts:
        raise ValueError("derive_uid needs at least one part to hash")
    if not UID_PATTERN.match(root) and not re.fullmatch(r"0|[1-9]\d*", root):
        raise ValueError("UID root must be dotted numeric components without leading zeros")
    digest = _digest(parts)
    if root == UUID_ROOT:
        value = uuid.UUID(bytes=digest[:16])
        # Mark it as a UUID version 8 (custom, here name-based SHA-256), RFC 9562 variant.
        as_int = value.int
        as_int &= ~(0xF << 76)
        as_int |= 0x8 << 76
        as_int &= ~(0x3 << 62)
        as_int |= 0x2 << 62
        return f"{UUID_ROOT}.{as_int}"
    room = UID_MAX_LENGTH - len(root) - 1
    if room < 20:
        raise ValueError("UID root too long: it must leave at least 20 digits for the hash")
    digits = str(int.from_bytes(digest, "big"))[:room]  # first digit never 0
    return f"{root}.{digits}"


def is_valid_uid(uid: str) -> bool:
    """True when ``uid`` obeys PS3.5 9.1 (charset, no leading zeros, <= 64 chars)."""
    return len(uid) <= UID_MAX_LENGTH and bool(UID_PATTERN.match(uid))


@dataclass(frozen=True)
class FilmUIDs:
    """The UIDs of one digitized film.

    Attributes
    ----------
    sop_instance_uid : str
        SOP Instance UID (0008,0018) of the film object; from the scan's SHA-256.
    study_instance_uid : str
        Study Instance UID (0020,000D); shared by the films of one patient and
        exam (patient ID + study date, + accession number when known).
    series_instance_uid : str
        Series Instance UID (0020,000E); one series of digitized films per
        study, derived from the study UID alone.
    original_sop_instance_uid : str
        SOP Instance UID of the optional raw-scan instance (``keep_original``).
    """

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    original_sop_instance_uid: str


def film_uids(
    *,
    root: str,
    sha256: str,
    patient_id: str,
    study_date: str,
    accession_number: str,
) -> FilmUIDs:
    """Derive the UIDs of one film.

    Parameters
    ----------
    root : str
        UID root (``DicomConfig.uid_root``).
    sha256 : str
        Hex SHA-256 of the original scan file (:attr:`pipeline.types.Scan.sha256`).
    patient_id : str
        Patient ID (0010,0020) as written in the header; must not be empty.
    study_date : str
        Study Date (0008,0020), ``YYYYMMDD``, or empty when unknown.
    accession_number : str
        Accession Number (0008,0050), or empty.

    Returns
    -------
    FilmUIDs

    Raises
    ------
    ValueError
        When ``sha256`` is not 64 hex digits or ``patient_id`` is empty.

    Notes
    -----
    When the study date is unknown, the study UID also folds in the scan's
    SHA-256: filmflow cannot tell which films belong to the same exam, so each
    such film gets its own study rather than being merged with every other
    undated film of the patient.

    The series is one per study ("digitized films"), not one per batch: the
    SOP Instance UID depends only on the scan, so a series UID that depended
    on the batch would put the same instance in a second series whenever the
    scan is migrated again in another batch or from another work dir (whose
    ledger does not know it was archived), and the archive would hold two
    instances with one SOP Instance UID (PS3.3 C.12.1.1.1: a SOP Instance UID
    identifies exactly one instance). The batch stays in the ledger and on the
    dashboard; it is deliberately not written into the object either, so that
    both migrations send the same content under that SOP Instance UID.

    References
    ----------
    DICOM PS3.3 C.7.2.1 (General Study: Study Instance UID), C.7.3.1 (General
    Series: Series Instance UID), C.12.1 (SOP Common: SOP Instance UID).
    """
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError("sha256 must be 64 hexadecimal digits")
    if not patient_id.strip():
        raise ValueError("patient_id is empty: a study UID cannot be derived without it")
    sha = sha256.lower()
    study_parts = ["study", patient_id, study_date, accession_number]
    if not study_date:
        study_parts.append(sha)
    study = derive_uid(root, *study_parts)
    return FilmUIDs(
        sop_instance_uid=derive_uid(root, "film", sha),
        study_instance_uid=study,
        series_instance_uid=derive_uid(root, "film-series", study),
        original_sop_instance_uid=derive_uid(root, "original-scan", sha),
    )
