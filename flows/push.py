"""Pushing staged films to the archive and recording the archive's confirmation in the ledger.

Shared by ``migrate-batch`` and ``release-approved``. A film becomes
``archived`` only after the archive confirmed it (store + verify). A transient
failure (archive unreachable after the task's retries) leaves the film in its
pending state for the next run and stops further pushes in this run; a
permanent failure (a failure status for this instance) fails the film only.

Before the first store, the archive is asked for its own record of the patient
(``Archive.find_patient``); a different PatientName or PatientBirthDate there
holds the film for review (``archive_identity_conflict``, the archive's record
is the hospital's truth) and removes its staged files, unless a reviewer
already decided on the film. A film may have extra staged instances
(``record['extra_staged']``, e.g. the original scan of ``dicom.keep_original``):
it becomes ``archived`` only when every one of its instances is confirmed.
After the verify, the archive is asked to commit the film's instances (DICOM
Storage Commitment, ``Archive.commit``; one request for all of them, a plain
call with its own timeout, not a retried task): ``record['storage_commitment']``
is ``committed``, ``unsupported`` (C-FIND/C-GET only) or ``off``, with a note in
the report. An instance the archive did not commit, or (``require``) no report
in time, keeps the film pending (``commitment_failed`` / ``commitment_timeout``,
transient) or fails it (a permanent Failure Reason).

:meth:`Pusher.push` pushes one film; :meth:`Pusher.push_many` pushes films in
rounds and asks for commitment once per round (one N-ACTION for all the
round's instances instead of one per film, ~0.1 s each against Orthanc), with
the same per-film outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from filmflow.archive import Archive, StoreReceipt
from filmflow.config import ArchiveConfig
from filmflow.archive.base import identity_conflicts, is_transient
from filmflow.archive.commitment import CommitmentOutcome
from filmflow.errors import ArchiveError
from filmflow.ledger import PENDING_PUSH, Ledger
from flows.film import film_tag
from qc import checks


def _retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failed state carries the task's exception
        return is_transient(exc)
    return False


@task(name="push-film", task_run_name="push-{tag}", cache_policy=NO_CACHE, persist_result=False,
      retry_condition_fn=_retry_transient)
def push_film_task(tag: str, archive: Archive, staged_path: str, pixel_hash: str = "") -> StoreReceipt:
    """Store one staged instance (idempotent per SOP Instance UID); ``pixel_hash``: the builder's pixel SHA-256."""
    return archive.store(Path(staged_path), pixel_sha256=pixel_hash)


@task(name="archive-identity", task_run_name="identity-{tag}", cache_policy=NO_CACHE, persist_result=False,
      retry_condition_fn=_retry_transient)
def archive_identity_task(tag: str, archive: Archive, header: dict[str, str]) -> tuple[list[str], list[dict[str, str]]]:
    """The keywords on which the archive's record of the patient differs, and that record."""
    matches = archive.find_patient(header.get("PatientID", ""))
    return identity_conflicts(header, matches), matches


@task(name="verify-film", task_run_name="verify-{tag}", cache_policy=NO_CACHE, persist_result=False,
      retry_condition_fn=_retry_transient)
def verify_film_task(tag: str, archive: Archive, receipt: StoreReceipt, retrieve: bool) -> None:
    """Confirm the archive holds the instance (and, when ``retrieve``, identical pixels)."""
    archive.verify(receipt, retrieve=retrieve)


def verify_sample(sop_uid: str, fraction: float) -> bool:
    """Deterministic choice of the films whose pixels are retrieved and compared (``fraction`` of them)."""
    if fraction >= 1:
        return True
    if fraction <= 0:
        return False
    return (int.from_bytes(sop_uid.encode()[-8:], "big") % 10_000) < fraction * 10_000


#: Films per push round of :meth:`Pusher.push_many` (one storage commitment request each). Orthanc answered
#: one request for 200 instances in 0.36 s (bench/README.md); a round of 100 films keeps a request well
#: inside what archives accept and the films' leases (15 min) far from expiring while the round is stored.
ROUND_FILMS = 100


@dataclass
class _Stored:
    """A film stored and verified in a push round, waiting for the round's commitment request."""

    key: str
    tag: str
    state: str
    record: dict[str, Any]
    staged: list[tuple[str, str]]
    receipts: list[StoreReceipt]


class Pusher:
    """Pushes staged films of one run; remembers an archive outage so the rest wait for the next run."""

    def __init__(self, ledger: Ledger, archive: Archive, config: ArchiveConfig) -> None:
        self.ledger, self.archive, self.config = ledger, archive, config
        self.errors: dict[str, str] = {}
        self.outage: str = ""

    def push(self, key: str) -> str:
        """Push the staged film ``key``; returns its ledger state afterwards."""
        return self._round([key])[key]

    def push_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Push staged films in rounds of :data:`ROUND_FILMS`; their ledger states afterwards.

        Each round stores and verifies its films one by one, then asks the
        archive to commit all their instances in **one** storage commitment
        request; the archive's answer is matched back per film by SOP Instance
        UID, so every film ends as :meth:`push` would have left it (archived,
        pending with its reason, failed, or held for review). Hold the films'
        leases for the call.
        """
        keys = list(dict.fromkeys(keys))
        states: dict[str, str] = {}
        for i in range(0, len(keys), ROUND_FILMS):
            states.update(self._round(keys[i:i + ROUND_FILMS]))
        return states

    def _round(self, keys: list[str]) -> dict[str, str]:
        """Store and verify each film, then one commitment request for every instance stored."""
        states: dict[str, str] = {}
        stored: list[_Stored] = []
        for key in keys:
            got = self._store(key)
            if isinstance(got, _Stored):
                stored.append(got)
            else:
                states[key] = got
        if stored:
            states.update(self._commit(stored))
        return {key: states[key] for key in keys}

    def _store(self, key: str) -> "_Stored | str":
        """Identity check, store and verify one film; the film waiting for commitment, or its ledger state."""
        row = self.ledger.get(key)
        if row is None or row.state not in PENDING_PUSH or not row.staged_path:
            return row.state if row else ""
        tag = film_tag(key)
        if self.outage:
            self.errors[key] = f"{self.outage}: not pushed, after an earlier film's {self.outage} in this run; the next run pushes it"
            return row.state
        delays = [self.config.retry_delay_s * 2**i for i in range(self.config.retries)]
        retrying = {"retries": self.config.retries, "retry_delay_seconds": delays or 0}
        record = dict(row.record)
        extras = [e for e in record.get("extra_staged") or [] if e.get("path")]
        if any(not Path(e["path"]).is_file() for e in extras):
            error = "staged_missing: an extra staged instance of this film is gone; the next run re-processes it"
            self.ledger.transition(key, "failed", error=error)
            return "failed"
        staged = [(row.staged_path, record.get("pixel_sha256", "")), *((e["path"], e.get("pixel_sha256", "")) for e in extras)]
        try:
            if row.state != "pushed" and not record.get("review"):  # a reviewer's decision settles the identity
                conflicts, matches = archive_identity_task.with_options(**retrying)(tag, self.archive, dict(record.get("header") or {}))
                if conflicts:
                    return self._hold(key, record, staged, conflicts, matches)
            receipts = [push_film_task.with_options(**retrying)(tag, self.archive, path, digest) for path, digest in staged]
            if row.state != "pushed":
                row = self.ledger.transition(key, "pushed", expect=PENDING_PUSH)
            for receipt in receipts:
                verify_film_task.with_options(**retrying)(
                    tag, self.archive, receipt, verify_sample(row.sop_instance_uid, self.config.verify_fraction))
        except ArchiveError as exc:
            return self._not_archived(key, tag, row.state, exc)
        return _Stored(key, tag, row.state, record, staged, receipts)

    def _commit(self, stored: list[_Stored]) -> dict[str, str]:
        """One storage commitment request for the instances of ``stored``; each film archived or not by its own instances.

        ``Archive.commit`` is a plain call, not a task: the request has its own
        timeout (``archive.commitment_timeout_s``), so a Prefect retry would
        only wait again, and a failure is an expected outcome, not a task
        failure (no traceback on the console).
        """
        try:
            results = self.archive.commit([r for s in stored for r in s.receipts])
        except ArchiveError as exc:  # the whole request: every film of the round
            return {s.key: self._not_archived(s.key, s.tag, s.state, exc, quiet=n > 0) for n, s in enumerate(stored)}
        states = {}
        for s in stored:
            mine = [results.get(r.sop_instance_uid) for r in s.receipts]
            failures = [m for m in mine if isinstance(m, ArchiveError)]
            if failures:  # a permanent failure of one instance fails the film, else it stays pending
                exc = next((f for f in failures if not is_transient(f)), failures[0])
                states[s.key] = self._not_archived(s.key, s.tag, s.state, exc)
            else:
                states[s.key] = self._archived(s, [m for m in mine if isinstance(m, CommitmentOutcome)])
        return states

    def _not_archived(self, key: str, tag: str, state: str, exc: ArchiveError, *, quiet: bool = False) -> str:
        """A transient failure leaves the film pending and stops pushing in this run; a permanent one fails it.

        Messages name URLs, ports, status codes and UIDs, never patient data.
        ``quiet``: the same error was already logged in full for another film.
        """
        log = get_run_logger()
        if is_transient(exc):
            self.outage = exc.code
            self.errors[key] = f"{exc.code}: {exc}; the next run pushes it"
            if quiet:
                log.warning("film %s: %s, left pending (the next run pushes it)", tag, exc.code)
            else:
                log.warning("film %s: %s, left pending (the next run pushes it): %s", tag, exc.code, exc)
            return state
        self.ledger.transition(key, "failed", error=f"{exc.code}: {exc}")
        log.warning("film %s: push failed (%s)", tag, exc.code)
        return "failed"

    def _archived(self, s: _Stored, commitments: list[CommitmentOutcome]) -> str:
        """Record where the film's instances landed and how they were confirmed; ``archived``; staged files removed."""
        record, receipts = s.record, s.receipts
        record["dicom_path"] = receipts[0].location
        if len(receipts) > 1:
            record["extra_archived"] = [r.location for r in receipts[1:]]
        record["notes"] = [*record.get("notes", []), *(n for r in receipts for n in r.notes)]
        if commitments:  # the weakest of the film's instances
            weakest = next((o for o in commitments if o.method != "committed"), commitments[0])
            record["storage_commitment"] = weakest.method
            if weakest.method != "off" and weakest.note not in record["notes"]:
                record["notes"].append(weakest.note)
        self.ledger.transition(s.key, "archived", expect=PENDING_PUSH, record=record, error="")
        for path, _ in s.staged:
            Path(path).unlink(missing_ok=True)
        get_run_logger().info("film %s: archived", s.tag)
        return "archived"

    def _hold(self, key: str, record: dict[str, Any], staged: list[tuple[str, str]], conflicts: list[str],
              matches: list[dict[str, str]]) -> str:
        """Flag a film whose patient the archive knows under another name or birth date; drop its staged files."""
        findings = checks.check_archive_identity(conflicts)
        record["qc"] = [*record.get("qc", []), *(f.to_dict() for f in findings)]
        record["qc_flags"] = ";".join(filter(None, [record.get("qc_flags", ""), *(f.code for f in findings)]))
        record["archive_patient"] = matches  # the hospital's record, for the reviewer
        self.ledger.transition(key, "flagged", expect=PENDING_PUSH, record=record, staged_path="", error="")
        for path, _ in staged:
            Path(path).unlink(missing_ok=True)
        get_run_logger().warning("film %s: held for review (archive_identity_conflict)", film_tag(key))
        return "flagged"
