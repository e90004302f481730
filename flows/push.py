"""Pushing staged films to the archive and recording the archive's confirmation in the ledger.

Shared by ``migrate-batch`` and ``release-approved``. A film becomes
``archived`` only after the archive confirmed it (store + verify). A transient
failure (archive unreachable after the task's retries) leaves the film in its
pending state for the next run and stops further pushes in this run; a
permanent failure (a failure status for this instance) fails the film only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from filmflow.archive import Archive, StoreReceipt
from filmflow.config import ArchiveConfig
from filmflow.archive.base import is_transient
from filmflow.errors import ArchiveError
from filmflow.ledger import PENDING_PUSH, Ledger
from flows.film import film_tag


def _retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failed state carries the task's exception
        return is_transient(exc)
    return False


@task(name="push-film", task_run_name="push-{tag}", cache_policy=NO_CACHE, persist_result=False,
      retry_condition_fn=_retry_transient)
def push_film_task(tag: str, archive: Archive, staged_path: str) -> StoreReceipt:
    """Store one staged instance (idempotent per SOP Instance UID)."""
    return archive.store(Path(staged_path))


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


class Pusher:
    """Pushes staged films of one run; remembers an archive outage so the rest wait for the next run."""

    def __init__(self, ledger: Ledger, archive: Archive, config: ArchiveConfig) -> None:
        self.ledger, self.archive, self.config = ledger, archive, config
        self.errors: dict[str, str] = {}
        self.outage: str = ""

    def push(self, key: str) -> str:
        """Push the staged film ``key``; returns its ledger state afterwards."""
        log = get_run_logger()
        row = self.ledger.get(key)
        if row is None or row.state not in PENDING_PUSH or not row.staged_path:
            return row.state if row else ""
        tag = film_tag(key)
        if self.outage:
            self.errors[key] = f"archive_unreachable: not pushed ({self.outage}); the next run pushes it"
            return row.state
        delays = [self.config.retry_delay_s * 2**i for i in range(self.config.retries)]
        retrying = {"retries": self.config.retries, "retry_delay_seconds": delays or 0}
        try:
            receipt = push_film_task.with_options(**retrying)(tag, self.archive, row.staged_path)
            if row.state != "pushed":
                row = self.ledger.transition(key, "pushed", expect=PENDING_PUSH)
            verify_film_task.with_options(**retrying)(
                tag, self.archive, receipt, verify_sample(row.sop_instance_uid, self.config.verify_fraction))
        except ArchiveError as exc:
            if is_transient(exc):
                self.outage = exc.code
                self.errors[key] = f"{exc.code}: {exc}; the next run pushes it"
                log.warning("film %s: archive unreachable, left pending", tag)
                return row.state
            self.ledger.transition(key, "failed", error=f"{exc.code}: {exc}")
            log.warning("film %s: push failed (%s)", tag, exc.code)
            return "failed"
        record = dict(row.record)
        record["dicom_path"] = receipt.location
        record["notes"] = [*record.get("notes", []), *receipt.notes]
        self.ledger.transition(key, "archived", expect=PENDING_PUSH, record=record, error="")
        Path(row.staged_path).unlink(missing_ok=True)
        log.info("film %s: archived", tag)
        return "archived"
