"""The ``release-approved`` flow: films a reviewer approved -> DICOM -> archive.

For each ``approved`` film: re-run :func:`flows.film.process_film` with the
reviewer's header as ``overrides`` (and the reviewer's settings, e.g. denoise
off), which gives the same deterministic UIDs for the same scan and header;
stage the DICOM, move the film to ``processed``, then push it with the shared
:class:`flows.push.Pusher`, which marks it ``archived`` only after the archive
confirmed it. Rejected films are never touched.

Also here, as a plain function for the review app: :func:`reprocess_flagged`,
which re-runs a flagged film with the reviewer's settings and keeps it flagged
so the reviewer decides on the new result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from filmflow.archive import Archive, open_archive
from filmflow.config import Settings, load_settings
from filmflow.ledger import FilmRow, Ledger, LedgerConflict, default_ledger_url
from flows.film import FilmOutcome, film_tag, process_film
from flows.push import Pusher

log = logging.getLogger("filmflow.release")


@dataclass
class ReleaseSummary:
    """What a release run did (counts and opaque film tags only; no patient data)."""

    archived: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def settings_for(settings: Settings, settings_overrides: dict[str, Any] | None) -> tuple[Settings, list[str]]:
    """``settings`` with a reviewer's per-film overrides applied; also the notes on what could not be applied."""
    notes: list[str] = []
    if not settings_overrides:
        return settings, notes
    merged = settings.model_dump()
    for section, values in settings_overrides.items():
        values = dict(values)
        if section not in merged:
            notes.append(f"unknown settings section {section!r} ignored")
            continue
        merged[section].update(values)
    return Settings.model_validate(merged), notes


def prepare_release(row: FilmRow, settings: Settings, staging_dir: Path) -> FilmOutcome:
    """Re-process an approved film with the reviewer's header; stages the DICOM when QC passes.

    The returned record keeps the reviewer's ``review`` block and the
    reconciliation the reviewer saw (the manifest is not consulted again).
    """
    review = row.record.get("review") or {}
    film_settings, notes = settings_for(settings, review.get("settings_overrides"))
    outcome = process_film(
        Path(row.source_path), source_file=row.record.get("source_file", Path(row.source_path).name),
        settings=film_settings, batch_name=row.batch, manifest_rows=None, staging_dir=staging_dir,
        overrides=review.get("overrides") or {}, reviewed_codes=review.get("reviewed_flags"),
    )
    outcome.record["review"] = review
    if "reconciliation" in row.record:
        outcome.record["reconciliation"] = row.record["reconciliation"]
    if notes:
        outcome.record["notes"] = [*outcome.record.get("notes", []), *notes]
    if outcome.state != "failed" and outcome.record.get("sha256") != row.sha256:
        if outcome.staged_path:
            Path(outcome.staged_path).unlink(missing_ok=True)
        return FilmOutcome("failed", outcome.record, error="scan_changed: the scan file changed after it was approved; review it again")
    return outcome


def _unreviewed(new_record: dict[str, Any], approved_record: dict[str, Any]) -> list[str]:
    """The ``review`` QC codes of a release's ``new_record`` that the reviewer did not see when
    approving (``reviewed_flags``; none for approvals recorded before those were kept)."""
    seen = (approved_record.get("review") or {}).get("reviewed_flags")
    if seen is None:
        return []
    return [q["code"] for q in new_record.get("qc", []) if q.get("severity") == "review" and q.get("code") not in seen]


@task(name="release-film", task_run_name="release-{tag}", cache_policy=NO_CACHE, persist_result=False)
def release_film_task(tag: str, row: FilmRow, settings: Settings, staging_dir: Path) -> FilmOutcome:
    """One approved film -> staged DICOM (or a reason why not)."""
    return prepare_release(row, settings, staging_dir)


@flow(name="release-approved", flow_run_name="release-approved", log_prints=False, validate_parameters=False)
def release_approved(config: str | None = None, archive: str | None = None, work_dir: str | None = None) -> ReleaseSummary:
    """Push every approved film to the archive.

    Parameters are paths and URLs only; patient data never enters a parameter,
    run name or log line.

    Raises
    ------
    filmflow.errors.FilmflowError
        Bad configuration, or the archive unreachable at start (nothing is marked done).
    """
    logger = get_run_logger()
    overrides: dict[str, Any] = {}
    if archive:
        overrides["archive"] = {"url": archive}
    if work_dir:
        overrides["run"] = {"work_dir": work_dir}
    settings = load_settings(config, **overrides)
    wd = Path(settings.run.work_dir).resolve()
    staging_dir = wd / "staging"
    staging_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.run.ledger_url or default_ledger_url(wd))
    summary = ReleaseSummary()
    archives: dict[str, tuple[Archive, Pusher]] = {}

    def pusher_for(row: FilmRow) -> Pusher:
        # the archive the film's batch was migrated into, unless --archive names another
        url = archive or row.record.get("archive_url") or settings.archive.url
        if url not in archives:
            arch = open_archive(url, settings.archive)
            arch.check()  # ArchiveUnreachableError: nothing more is marked done
            archives[url] = (arch, Pusher(ledger, arch, settings.archive))
        return archives[url][1]

    try:
        # approved films staged by an earlier, interrupted release
        resume = [r for r in ledger.rows(states=("processed",))
                  if (r.record.get("review") or {}).get("action") == "approve" and r.staged_path and Path(r.staged_path).is_file()]
        for r in resume:
            _pushed(pusher_for(r), r.source_path, summary)
        for row in list(ledger.rows(states=("approved",))):
            key, tag = row.source_path, film_tag(row.source_path)
            if not ledger.acquire(key):
                continue
            try:
                outcome = release_film_task(tag, row, settings, staging_dir)
                unseen = _unreviewed(outcome.record, row.record)
                if outcome.state == "processed":
                    ledger.transition(key, "processed", expect=("approved",), record=outcome.record,
                                      staged_path=outcome.staged_path,
                                      sop_instance_uid=outcome.record.get("sop_instance_uid", ""),
                                      study_instance_uid=outcome.record.get("study_instance_uid", ""), error="")
                elif outcome.state == "failed":
                    ledger.transition(key, "failed", expect=("approved",), record=outcome.record, error=outcome.error)
                    summary.failed[tag] = outcome.error.split(":", 1)[0]
                    logger.warning("film %s: release failed (%s)", tag, summary.failed[tag])
                    continue
                elif unseen:
                    # a finding the reviewer never saw (the settings changed since, e.g. scratch repair
                    # turned on): back to the review page with the new record
                    why = ";".join(unseen)
                    ledger.transition(key, "flagged", expect=("approved",), record=outcome.record,
                                      error=f"release_held: new QC finding since the review: {why}")
                    summary.blocked[tag] = why
                    logger.warning("film %s: back to review, new QC finding since the review (%s)", tag, why)
                    continue
                else:
                    # QC still holds it (e.g. an image check): stays approved, reason recorded
                    why = outcome.record.get("qc_flags", "") or "qc"
                    ledger.transition(key, "approved", expect=("approved",), error=f"release_blocked: QC still flags {why}")
                    summary.blocked[tag] = why
                    logger.warning("film %s: release blocked by QC (%s)", tag, why)
                    continue
            except LedgerConflict:
                logger.warning("film %s: changed by someone else during release; skipped", tag)
                continue
            finally:
                ledger.release(key)
            _pushed(pusher_for(row), key, summary)
    finally:
        for arch, _ in archives.values():
            arch.close()
        ledger.close()
    logger.info("release: %d archived, %d pending, %d blocked, %d failed", len(summary.archived),
                len(summary.pending), len(summary.blocked), len(summary.failed))
    return summary


def _pushed(pusher: Pusher, key: str, summary: ReleaseSummary) -> None:
    state = pusher.push(key)
    tag = film_tag(key)
    if state == "archived":
        summary.archived.append(tag)
    elif state == "failed":
        summary.failed[tag] = (pusher.errors.get(key) or "push_failed").split(":", 1)[0]
    else:
        summary.pending.append(tag)


def reprocess_flagged(ledger: Ledger, source_path: str, settings: Settings, staging_dir: Path) -> FilmRow:
    """Re-run a flagged film with its reviewer's ``settings_overrides``; it stays ``flagged``.

    The new record (fields, label box, QC) replaces the old one; the review
    block and the reconciliation the reviewer saw are kept; any staged file is
    removed (the release makes its own after approval).

    Raises
    ------
    LedgerConflict
        The film is no longer flagged.
    """
    row = ledger.get(source_path)
    if row is None or row.state != "flagged":
        raise LedgerConflict("film is no longer flagged")
    review = row.record.get("review") or {}
    film_settings, notes = settings_for(settings, review.get("settings_overrides"))
    staging_dir.mkdir(parents=True, exist_ok=True)
    outcome = process_film(
        Path(source_path), source_file=row.record.get("source_file", Path(source_path).name),
        settings=film_settings, batch_name=row.batch, manifest_rows=None, staging_dir=staging_dir,
    )
    if outcome.staged_path:
        Path(outcome.staged_path).unlink(missing_ok=True)
    record = dict(outcome.record)
    record["review"] = review
    for k in ("reconciliation",):
        if k in row.record:
            record[k] = row.record[k]
    # keep the identity findings of the original run: the manifest was not consulted again
    kept = [q for q in row.record.get("qc", []) if q.get("code", "").startswith(("manifest", "identity", "duplicate"))]
    codes = {q.get("code") for q in record.get("qc", [])}
    record["qc"] = [*record.get("qc", []), *[q for q in kept if q.get("code") not in codes]]
    record["qc_flags"] = ";".join(q["code"] for q in record["qc"] if q.get("severity") != "info")
    record["reprocessed"] = {"state": outcome.state, "error": outcome.error, "notes": notes}
    log.info("film %s: re-processed (%s)", film_tag(source_path), outcome.state)
    return ledger.transition(source_path, "flagged", expect=("flagged",), record=record, error=outcome.error)
