"""The ledger: the source of truth for each film's state.

One row per source file (keyed by its resolved path), holding its SHA-256, its
state, and its full per-film record as JSON. Every state change is one
transaction and is appended to the ``events`` table. SQLite under the work
folder is the embedded default; any SQLAlchemy URL (PostgreSQL) works too.

States::

    discovered -> processed -> pushed -> archived        (QC passed; pushed = stored, not yet verified)
               -> flagged -> approved -> processed -> pushed -> archived (held for review, released)
                          -> rejected
               -> failed                                  (error for this film)

``processed``/``approved`` films whose push failed stay there ("pending") and
are pushed by the next run without re-processing. Leases stop two concurrent
runs from processing the same film.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import DatabaseError

STATES = ("discovered", "processed", "flagged", "approved", "rejected", "pushed", "archived", "failed")
#: States from which a run pushes the staged DICOM without re-processing.
PENDING_PUSH = ("processed", "approved", "pushed")
#: States a run leaves alone (a human must act, or it is done).
FINAL = ("archived", "rejected")

metadata = MetaData()

films = Table(
    "films",
    metadata,
    Column("source_path", String(1024), primary_key=True),
    Column("sha256", String(64), index=True, nullable=False),
    Column("batch", String(200), nullable=False, default=""),
    Column("state", String(20), nullable=False),
    Column("record", Text, nullable=False, default="{}"),
    Column("staged_path", String(1024), nullable=False, default=""),
    Column("sop_instance_uid", String(64), nullable=False, default="", index=True),
    Column("study_instance_uid", String(64), nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("lease_owner", String(100), nullable=False, default=""),
    Column("lease_expires", Float, nullable=False, default=0.0),
    Column("updated_at", Float, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("source_path", String(1024), nullable=False, index=True),
    Column("from_state", String(20), nullable=False),
    Column("to_state", String(20), nullable=False),
    Column("actor", String(100), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("user", String(100), nullable=False),
    Column("source_path", String(1024), nullable=False, index=True),
    Column("action", String(40), nullable=False),
    Column("changes", Text, nullable=False, default="{}"),
    Column("reason", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class FilmRow:
    """One ledger row."""

    source_path: str
    sha256: str
    batch: str
    state: str
    record: dict[str, Any]
    staged_path: str
    sop_instance_uid: str
    study_instance_uid: str
    error: str
    updated_at: float


def default_ledger_url(work_dir: Path) -> str:
    """SQLAlchemy URL of the embedded SQLite ledger under ``work_dir``."""
    return f"sqlite:///{(Path(work_dir) / 'ledger.sqlite').resolve()}"


class Ledger:
    """Transactional film-state store over SQLAlchemy Core.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
    owner : str, optional
        Lease owner id of this process; defaults to host:pid:random.
    """

    def __init__(self, url: str, owner: str | None = None) -> None:
        self.url = url
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_tables(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, source_path: str) -> FilmRow | None:
        """The row of ``source_path`` or None."""
        with self.engine.connect() as conn:
            r = conn.execute(select(films).where(films.c.source_path == source_path)).mappings().first()
        return _row(r) if r else None

    def rows(self, *, states: tuple[str, ...] | None = None, batch: str | None = None) -> Iterator[FilmRow]:
        """All rows, optionally filtered by state and batch, ordered by path."""
        q = select(films).order_by(films.c.source_path)
        if states:
            q = q.where(films.c.state.in_(states))
        if batch:
            q = q.where(films.c.batch == batch)
        with self.engine.connect() as conn:
            for r in conn.execute(q).mappings():
                yield _row(r)

    def find_sha(self, sha256: str, *, exclude_path: str = "") -> list[FilmRow]:
        """Rows whose scan has this SHA-256 (the same scan submitted twice)."""
        q = select(films).where(films.c.sha256 == sha256, films.c.source_path != exclude_path)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q).mappings()]

    def counts(self, batch: str | None = None) -> dict[str, int]:
        """Number of films per state."""
        out: dict[str, int] = {}
        for row in self.rows(batch=batch):
            out[row.state] = out.get(row.state, 0) + 1
        return out

    # -- writes ----------------------------------------------------------------------------------
    def discover(self, source_path: str, sha256: str, batch: str) -> FilmRow:
        """Insert a newly discovered film (no-op when already known); returns its row.

        Two runs discovering the same new film at once: the second insert loses the race
        (a unique-key violation) and reads the row the first one wrote.
        """
        try:
            return self._discover(source_path, sha256, batch)
        except IntegrityError:
            return self._discover(source_path, sha256, batch)

    def _discover(self, source_path: str, sha256: str, batch: str) -> FilmRow:
        now = time.time()
        with self.engine.begin() as conn:
            r = conn.execute(select(films).where(films.c.source_path == source_path)).mappings().first()
            if r is None:
                conn.execute(
                    insert(films).values(
                        source_path=source_path, sha256=sha256, batch=batch, state="discovered",
                        record="{}", staged_path="", sop_instance_uid="", study_instance_uid="",
                        error="", lease_owner="", lease_expires=0.0, updated_at=now,
                    )
                )
                conn.execute(insert(events).values(at=now, source_path=source_path, from_state="", to_state="discovered", actor=self.owner))
                r = conn.execute(select(films).where(films.c.source_path == source_path)).mappings().first()
            elif r["sha256"] != sha256 and r["state"] not in ("archived",):
                # the file changed since last seen and was never archived: start it over
                conn.execute(
                    update(films).where(films.c.source_path == source_path).values(
                        sha256=sha256, state="discovered", record="{}", staged_path="", error="", updated_at=now
                    )
                )
                conn.execute(insert(events).values(at=now, source_path=source_path, from_state=r["state"], to_state="discovered", actor=self.owner))
                r = conn.execute(select(films).where(films.c.source_path == source_path)).mappings().first()
        return _row(r)

    def acquire(self, source_path: str, lease_s: float = 900.0, *, states: tuple[str, ...] | None = None) -> bool:
        """Take the processing lease on a film; False when another live run holds it.

        With ``states``, the lease is only taken while the film is in one of
        them (checked in the same statement), so a run never re-processes a film
        another run finished after this run listed it. A lease held by a process
        of this host that no longer exists (a killed run) is taken over at once.
        """
        now = time.time()
        free = (films.c.lease_owner == "") | (films.c.lease_owner == self.owner) | (films.c.lease_expires < now)
        with self.engine.begin() as conn:
            if states:
                holder = conn.execute(select(films.c.lease_owner).where(films.c.source_path == source_path)).scalar()
                if holder and _dead_local_owner(holder):
                    free = free | (films.c.lease_owner == holder)
            q = update(films).where(films.c.source_path == source_path).where(free)
            if states:
                q = q.where(films.c.state.in_(states))
            res = conn.execute(q.values(lease_owner=self.owner, lease_expires=now + lease_s))
            return res.rowcount == 1

    def release(self, source_path: str) -> None:
        """Give the lease back."""
        with self.engine.begin() as conn:
            conn.execute(
                update(films).where(films.c.source_path == source_path, films.c.lease_owner == self.owner).values(lease_owner="", lease_expires=0.0)
            )

    def transition(
        self,
        source_path: str,
        to_state: str,
        *,
        expect: tuple[str, ...] | None = None,
        record: dict[str, Any] | None = None,
        actor: str | None = None,
        **values: Any,
    ) -> FilmRow:
        """Move a film to ``to_state`` in one transaction.

        Parameters
        ----------
        expect : tuple of str, optional
            States the film must be in; otherwise ``LedgerConflict`` is raised
            (another run or reviewer moved it).
        record : dict, optional
            Replaces the stored per-film record.
        **values
            Other columns to set (staged_path, sop_instance_uid, study_instance_uid, error).

        Raises
        ------
        ValueError
            For an unknown state.
        LedgerConflict
            When the film is not in an expected state.
        """
        if to_state not in STATES:
            raise ValueError(f"unknown ledger state {to_state!r}")
        now = time.time()
        with self.engine.begin() as conn:
            r = conn.execute(select(films.c.state).where(films.c.source_path == source_path)).first()
            if r is None:
                raise LedgerConflict("film is not in the ledger")
            if expect and r[0] not in expect:
                raise LedgerConflict(f"film is {r[0]}, expected one of {', '.join(expect)}")
            vals: dict[str, Any] = {"state": to_state, "updated_at": now, **values}
            if record is not None:
                vals["record"] = json.dumps(record, sort_keys=True, default=str)
            conn.execute(update(films).where(films.c.source_path == source_path).values(**vals))
            conn.execute(insert(events).values(at=now, source_path=source_path, from_state=r[0], to_state=to_state, actor=actor or self.owner))
            out = conn.execute(select(films).where(films.c.source_path == source_path)).mappings().first()
        return _row(out)

    def add_audit(self, *, user: str, source_path: str, action: str, changes: dict[str, Any], reason: str = "") -> None:
        """Append one review decision to the append-only audit log."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit).values(at=time.time(), user=user, source_path=source_path, action=action,
                                     changes=json.dumps(changes, sort_keys=True), reason=reason)
            )

    def audit_log(self, source_path: str | None = None) -> list[dict[str, Any]]:
        """Audit entries, oldest first."""
        q = select(audit).order_by(audit.c.id)
        if source_path:
            q = q.where(audit.c.source_path == source_path)
        with self.engine.connect() as conn:
            return [dict(r, changes=json.loads(r["changes"])) for r in conn.execute(q).mappings()]


class LedgerConflict(Exception):
    """A state transition found the film in an unexpected state."""


def _row(r: Any) -> FilmRow:
    return FilmRow(
        source_path=r["source_path"], sha256=r["sha256"], batch=r["batch"], state=r["state"],
        record=json.loads(r["record"] or "{}"), staged_path=r["staged_path"],
        sop_instance_uid=r["sop_instance_uid"], study_instance_uid=r["study_instance_uid"],
        error=r["error"], updated_at=r["updated_at"],
    )


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    """``create_all``, tolerating a concurrent run that creates the same tables at the same moment.

    ``create_all`` checks for each table, then creates it; two runs starting
    together both see no table and the second CREATE fails ("already exists").
    Checking again then finds the table.
    """
    for i in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DatabaseError:
            if i == attempts - 1:
                raise
            time.sleep(0.1 * (i + 1))


def _dead_local_owner(owner: str) -> bool:
    """True when lease ``owner`` (host:pid:tag) is a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
