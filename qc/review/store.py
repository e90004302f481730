"""Review users, opaque film ids and the reviewer's decisions.

The users live in their own table (``review_users``) of the ledger database,
created here with its own SQLAlchemy metadata so the ledger module stays
unchanged. Decisions go through :meth:`filmflow.ledger.Ledger.transition`
(``flagged -> approved`` / ``flagged -> rejected``) and every one of them is
appended to the audit log with :meth:`filmflow.ledger.Ledger.add_audit`.

Patient data never leaves the ledger row: films are addressed by
:func:`film_id` (SHA-1 of the ledger key), and error messages name fields, not
their values.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pydicom.config
from pydicom.valuerep import validate_value
from sqlalchemy import Column, Float, MetaData, String, Table, insert, select, update

from filmflow.ledger import FilmRow, Ledger, LedgerConflict
from qc.review.auth import hash_password, verify_password

ROLES = ("reviewer", "viewer")

#: Header fields a reviewer may correct, with their DICOM VRs (PS3.5 6.2).
EDITABLE_FIELDS: dict[str, str] = {
    "PatientID": "LO",
    "PatientName": "PN",
    "PatientBirthDate": "DA",
    "StudyDate": "DA",
    "AccessionNumber": "SH",
    "PatientSex": "CS",
    "InstitutionName": "LO",
}

#: States shown in the review queue.
QUEUE_STATES = ("flagged", "approved")

_meta = MetaData()
users = Table(
    "review_users",
    _meta,
    Column("username", String(100), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class ReviewError(Exception):
    """A decision cannot be applied; ``status`` is the HTTP status the app answers with."""

    status = 400


class FieldErrors(ReviewError):
    """Corrected fields failed validation; ``errors`` maps keyword -> message (no values)."""

    status = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class StateConflict(ReviewError):
    """The film is no longer in a state that allows this decision."""

    status = 409


@dataclass(frozen=True)
class User:
    username: str
    role: str

    @property
    def can_decide(self) -> bool:
        return self.role == "reviewer"


# --- users -------------------------------------------------------------------------------------
class UserStore:
    """Review accounts in the ledger's database."""

    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine
        _meta.create_all(self.engine)

    def add(self, username: str, password: str, role: str) -> None:
        """Create or update a user (password stored as an argon2id hash).

        Raises
        ------
        ValueError
            Bad user name, unknown role, or a password shorter than 8 characters.
        """
        if not _USERNAME.match(username):
            raise ValueError("user name: 1-100 characters of letters, digits and . _ @ -")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValueError("password must be at least 8 characters")
        now = time.time()
        h = hash_password(password)
        with self.engine.begin() as conn:
            exists = conn.execute(select(users.c.username).where(users.c.username == username)).first()
            if exists:
                conn.execute(update(users).where(users.c.username == username).values(password_hash=h, role=role, updated_at=now))
            else:
                conn.execute(insert(users).values(username=username, password_hash=h, role=role, created_at=now, updated_at=now))

    def get(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(users.c.username, users.c.role).where(users.c.username == username)).first()
        return User(r[0], r[1]) if r else None

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (constant work for unknown users)."""
        with self.engine.connect() as conn:
            r = conn.execute(select(users).where(users.c.username == username)).mappings().first()
        if r is None:
            verify_password(_DUMMY_HASH, password)
            return None
        return User(r["username"], r["role"]) if verify_password(r["password_hash"], password) else None

    def password_hash(self, username: str) -> str:
        with self.engine.connect() as conn:
            r = conn.execute(select(users.c.password_hash).where(users.c.username == username)).first()
        return r[0] if r else ""


_DUMMY_HASH = hash_password("filmflow-dummy-password")


# --- films -------------------------------------------------------------------------------------
def film_id(source_path: str) -> str:
    """Opaque id of a film for URLs and logs: hex SHA-1 of its ledger key (the source path)."""
    return hashlib.sha1(source_path.encode("utf-8", "surrogateescape")).hexdigest()


def find_film(ledger: Ledger, fid: str, states: Iterable[str] | None = None) -> FilmRow | None:
    """The ledger row whose :func:`film_id` is ``fid``."""
    if not re.fullmatch(r"[0-9a-f]{40}", fid or ""):
        return None
    for row in ledger.rows(states=tuple(states) if states else None):
        if film_id(row.source_path) == fid:
            return row
    return None


def qc_codes(row: FilmRow) -> list[str]:
    """The non-info QC codes of a film."""
    return [q.get("code", "") for q in row.record.get("qc", []) if q.get("severity") != "info"]


def queue(ledger: Ledger, *, batch: str = "", code: str = "") -> list[FilmRow]:
    """Films waiting for a reviewer (flagged) or for release (approved), filtered by batch and QC code."""
    out = []
    for row in ledger.rows(states=QUEUE_STATES, batch=batch or None):
        if code and code not in qc_codes(row):
            continue
        out.append(row)
    out.sort(key=lambda r: (r.state != "flagged", r.batch, r.updated_at))
    return out


# --- validation --------------------------------------------------------------------------------
def validate_fields(values: Mapping[str, str]) -> dict[str, str]:
    """Check corrected header values against their VRs; return them normalised (stripped).

    Raises
    ------
    FieldErrors
        Per field, a message that does not repeat the value.
    """
    errors: dict[str, str] = {}
    out: dict[str, str] = {}
    for kw, vr in EDITABLE_FIELDS.items():
        v = str(values.get(kw, "") or "").strip()
        if kw in ("PatientName",):
            v = re.sub(r"\s*\^\s*", "^", v).upper() if v else v
        if kw == "PatientSex":
            v = v.upper()
        out[kw] = v
        if any(ord(c) < 32 for c in v) or "\\" in v:
            errors[kw] = "control characters and backslashes are not allowed"
            continue
        if vr == "DA" and v:
            if not re.fullmatch(r"\d{8}", v):
                errors[kw] = "date must be YYYYMMDD"
                continue
            try:
                d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:]))
            except ValueError:
                errors[kw] = "not a calendar date"
                continue
            if d.year < 1850 or d > _dt.date.today():
                errors[kw] = "date out of range (1850 to today)"
                continue
        if vr == "PN" and v:
            groups = v.split("=")
            if len(groups) > 3 or any(len(g.split("^")) > 5 for g in groups):
                errors[kw] = "person name: at most 5 ^-separated components (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX)"
                continue
            if any(len(g) > 64 for g in groups):
                errors[kw] = "person name component group longer than 64 characters"
                continue
            if not re.fullmatch(r"[A-Z0-9 '\-.^,=]+", v):
                errors[kw] = "person name: letters, digits, space, ' - . , and ^ only"
                continue
        if kw == "PatientSex" and v not in ("", "M", "F", "O"):
            errors[kw] = "must be M, F, O or empty"
            continue
        try:
            validate_value(vr, v, pydicom.config.RAISE)
        except ValueError:
            errors[kw] = f"not a valid {vr} value"
    if not out["PatientID"]:
        errors.setdefault("PatientID", "required: a film cannot be archived without a patient ID")
    if errors:
        raise FieldErrors(errors)
    return out


# --- decisions ---------------------------------------------------------------------------------
def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def current_header(row: FilmRow) -> dict[str, str]:
    """The header the film would get as processed (what the reviewer sees and may correct)."""
    header = dict(row.record.get("header") or {})
    return {k: str(header.get(k, row.record.get(k, "")) or "") for k in EDITABLE_FIELDS}


def approve(ledger: Ledger, row: FilmRow, user: User, values: Mapping[str, str], *, reason: str = "") -> FilmRow:
    """Approve a flagged film, as is or with corrected fields.

    ``record['review']['overrides']`` receives the whole approved header, so
    that the release re-creates exactly what the reviewer approved (manifest
    and OCR are not consulted again).

    Raises
    ------
    FieldErrors, StateConflict
    """
    _require_reviewer(user)
    new = validate_fields(values)
    old = current_header(row)
    changes = {k: {"old": old[k], "new": new[k]} for k in EDITABLE_FIELDS if old[k] != new[k]}
    record = dict(row.record)
    record["review"] = {
        "action": "approve",
        "overrides": new,
        "settings_overrides": dict((row.record.get("review") or {}).get("settings_overrides") or {}),
        "corrected_fields": sorted(changes),
        # the QC codes on the page when the reviewer approved: release settles these only
        "reviewed_flags": [c for c in str(row.record.get("qc_flags") or "").split(";") if c],
        "decided_by": user.username,
        "decided_at": _now_iso(),
    }
    out = _transition(ledger, row, "approved", record, user)
    ledger.add_audit(user=user.username, source_path=row.source_path, action="approve", changes=changes, reason=reason)
    return out


def reject(ledger: Ledger, row: FilmRow, user: User, reason: str) -> FilmRow:
    """Reject a flagged film; the reason is required.

    Raises
    ------
    FieldErrors, StateConflict
    """
    _require_reviewer(user)
    reason = (reason or "").strip()
    if not reason:
        raise FieldErrors({"reason": "a reason is required to reject a film"})
    record = dict(row.record)
    record["review"] = {
        "action": "reject",
        "overrides": {},
        "settings_overrides": dict((row.record.get("review") or {}).get("settings_overrides") or {}),
        "reason": reason,
        "decided_by": user.username,
        "decided_at": _now_iso(),
    }
    out = _transition(ledger, row, "rejected", record, user)
    ledger.add_audit(user=user.username, source_path=row.source_path, action="reject",
                     changes={"state": {"old": row.state, "new": "rejected"}}, reason=reason)
    return out


def settings_overrides(rotation_k: str | int | None, denoise_off: bool, polarity_as_scanned: bool = False) -> dict[str, Any]:
    """Validated re-processing settings: forced quarter turns 0..3, denoise off, and/or the
    scan's polarity kept as scanned (no inversion: ``inversion_doubtful`` on a positive film).

    Raises
    ------
    FieldErrors
    """
    out: dict[str, Any] = {}
    if rotation_k not in (None, ""):
        try:
            k = int(rotation_k)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise FieldErrors({"rotation_k": "must be 0, 1, 2 or 3"}) from None
        if k not in (0, 1, 2, 3):
            raise FieldErrors({"rotation_k": "must be 0, 1, 2 or 3"})
        out["geometry"] = {"rotation_k": k, "fix_orientation": False}
    if polarity_as_scanned:
        out.setdefault("geometry", {})["fix_polarity"] = False
    if denoise_off:
        out["denoise"] = {"method": "off"}
    if not out:
        raise FieldErrors({"settings": "choose a rotation, polarity as scanned or denoise off"})
    return out


def request_reprocess(ledger: Ledger, row: FilmRow, user: User, overrides: dict[str, Any], *, reason: str = "") -> FilmRow:
    """Record a re-processing request on a flagged film (the film stays flagged until it is re-run).

    Raises
    ------
    StateConflict
    """
    _require_reviewer(user)
    if row.state != "flagged":
        raise StateConflict(f"film is {row.state}; only flagged films can be re-processed")
    old = (row.record.get("review") or {}).get("settings_overrides") or {}
    record = dict(row.record)
    record["review"] = {
        "action": "reprocess",
        "overrides": {},
        "settings_overrides": overrides,
        "decided_by": user.username,
        "decided_at": _now_iso(),
    }
    out = _transition(ledger, row, "flagged", record, user)
    ledger.add_audit(user=user.username, source_path=row.source_path, action="reprocess",
                     changes={"settings_overrides": {"old": old, "new": overrides}}, reason=reason)
    return out


def _require_reviewer(user: User) -> None:
    if not user.can_decide:
        err = ReviewError("only reviewers can decide")
        err.status = 403
        raise err


def _transition(ledger: Ledger, row: FilmRow, to_state: str, record: dict[str, Any], user: User) -> FilmRow:
    try:
        return ledger.transition(row.source_path, to_state, expect=("flagged",), record=record,
                                 actor=f"review:{user.username}")
    except LedgerConflict as exc:
        raise StateConflict(f"the film changed meanwhile ({exc}); reload the page") from None
