"""The ``migrate-batch`` flow: discover -> process (one task per film) -> push -> verify -> report.

Orchestration only: the work is :func:`flows.film.process_film` and the
archive's ``store``/``verify``. The ledger is written from the flow's thread
only, one transaction per state change, so a crash at any point leaves every
film in a state the next run resumes from.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from filmflow.archive import open_archive
from filmflow.batch import check_batch_inputs
from filmflow.config import Settings
from filmflow.discover import SourceFile, discover_scans
from filmflow.errors import ConfigError
from filmflow.ledger import PENDING_PUSH, Ledger, default_ledger_url
from filmflow.report import report_row, report_status, write_report
from flows.artifacts import BatchDashboard
from flows.film import FilmOutcome, film_tag, held, process_film
from flows.push import Pusher
from qc import checks
from qc.phash import known_phashes, near_matches


#: Ledger states whose films a run (re-)processes from the scan.
TO_PROCESS = ("discovered", "failed", "processed", "pushed")


#: Report error of a film another filmflow run holds the lease of (its own report has the result).
IN_PROGRESS = "in_progress: another filmflow run is processing this film; its report has the result"


@dataclass
class BatchSummary:
    """What a batch did; no patient data."""

    batch_name: str
    report_path: str
    archive_url: str
    counts: dict[str, int] = field(default_factory=dict)
    qc_counts: dict[str, int] = field(default_factory=dict)
    films: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@task(name="process-film", task_run_name="film-{tag}", cache_policy=NO_CACHE, persist_result=False)
def process_film_task(tag: str, source: SourceFile, settings: Settings, batch_name: str, manifest_rows: Any,
                      staging_dir: Path, duplicate_of: tuple[str, ...], known: dict[str, str]) -> FilmOutcome:
    """Process one film (see :func:`flows.film.process_film`); ``tag`` names it in the run name."""
    return process_film(source.path, source_file=source.relative, settings=settings, batch_name=batch_name,
                        manifest_rows=manifest_rows, staging_dir=staging_dir, duplicate_of=duplicate_of,
                        known_phashes=known)


def _near_duplicate_in_batch(outcome: FilmOutcome, key: str, seen: dict[str, str], settings: Settings) -> FilmOutcome:
    """Hold a film that looks like one finished earlier in this batch (films run in parallel, so
    :func:`process_film` only saw earlier batches); records this film's hash for the next ones."""
    phash = outcome.record.get("phash")
    if not phash:
        return outcome
    others = {k: v for k, v in seen.items() if k != key}
    seen[key] = phash
    if outcome.state != "processed":
        return outcome
    found = checks.check_near_duplicate(phash, others, settings.qc.max_phash_distance)
    if not found:
        return outcome
    for path in [outcome.staged_path, *(e.get("path", "") for e in outcome.record.get("extra_staged") or [])]:
        if path:
            Path(path).unlink(missing_ok=True)
    outcome.record["near_duplicate_of"] = [k for k, _ in near_matches(phash, others, settings.qc.max_phash_distance)]
    return held(outcome.record, [*outcome.qc, *found])


@flow(name="migrate-batch", flow_run_name="migrate-{batch_name}", log_prints=False, validate_parameters=False)
def migrate_batch(
    source_dir: str,
    batch_name: str,
    manifest: str | None = None,
    archive: str | None = None,
    report: str | None = None,
    config: str | None = None,
) -> BatchSummary:
    """Migrate every scan under ``source_dir`` into the archive.

    Parameters are paths and URLs only (they appear on the dashboard); patient
    data never enters a parameter, a run name or a log line.

    Raises
    ------
    filmflow.errors.FilmflowError
        Batch-level problems only (bad configuration, unreadable source folder,
        unusable manifest, archive unreachable at start).
    """
    log = get_run_logger()
    t0 = time.perf_counter()
    inputs = check_batch_inputs(source_dir, batch_name, manifest=manifest, archive=archive, report=report,
                                config=config, check_archive=False)
    settings, work_dir, report_path = inputs.settings, inputs.work_dir, inputs.report_path
    rows, archive_url = inputs.manifest_rows, inputs.archive_url
    staging_dir = work_dir / "staging"
    staging_dir.mkdir(parents=True, exist_ok=True)
    _attach_file_log(work_dir)
    ledger = Ledger(settings.run.ledger_url or default_ledger_url(work_dir))

    sources = discover_scans(inputs.source_root, settings.scan.extensions)
    log.info("batch %s: %d candidate scans", batch_name, len(sources))

    arch = open_archive(archive_url, settings.archive)
    arch.check()  # ArchiveUnreachableError: nothing is marked done
    _check_work_space(staging_dir, sources, settings.run.workers)  # ConfigError: nothing is marked done

    by_sha: dict[str, list[str]] = {}
    for s in sources:
        if s.sha256:
            by_sha.setdefault(s.sha256, []).append(str(s.path))

    archived_before: set[str] = set()
    to_process: list[SourceFile] = []
    to_push: list[str] = []
    for s in sources:
        key = str(s.path)
        if s.error:
            ledger.discover(key, s.sha256 or "-", batch_name)
            ledger.transition(key, "failed", record={"source_file": s.relative, "source_path": key}, error=s.error)
            continue
        row = ledger.discover(key, s.sha256, batch_name)
        if row.state == "archived":
            archived_before.add(key)
        elif row.state in PENDING_PUSH and row.staged_path and Path(row.staged_path).is_file():
            to_push.append(key)
        elif row.state in TO_PROCESS:
            to_process.append(s)

    pusher = Pusher(ledger, arch, settings.archive)
    dash = BatchDashboard.from_settings(batch_name, settings, total=len(to_process))  # artifacts, run name/tags
    push = dash.timed_push(pusher.push)

    # films processed in an earlier run whose push did not finish, pushed in rounds (one storage
    # commitment request per round; leased: a concurrent run may push them too)
    resumed = [key for key in to_push if ledger.acquire(key, states=PENDING_PUSH)]
    try:
        pusher.push_many(resumed)
    finally:
        for key in resumed:
            ledger.release(key)

    def duplicates_of(s: SourceFile) -> tuple[str, ...]:
        # an earlier file of this batch, or any file of another batch, with the same bytes
        same = by_sha.get(s.sha256, [])
        earlier = same[: same.index(str(s.path))]
        other = [r.source_path for r in ledger.find_sha(s.sha256, exclude_path=str(s.path)) if r.batch != batch_name]
        return tuple(earlier + other)

    seen_phashes = known_phashes(ledger, exclude_path="")  # films of earlier runs and batches
    leased = [s for s in to_process if ledger.acquire(str(s.path), states=TO_PROCESS)]
    held_elsewhere = {str(s.path) for s in to_process} - {str(s.path) for s in leased}
    futures = {
        process_film_task.submit(film_tag(s.path), s, settings, batch_name, rows, staging_dir, duplicates_of(s),
                                 {k: v for k, v in seen_phashes.items() if k != str(s.path)}): s
        for s in leased
    }
    done = 0
    for fut in as_completed(list(futures)):
        s = futures[fut]
        key = str(s.path)
        outcome: FilmOutcome = fut.result()
        done += 1
        outcome = _near_duplicate_in_batch(outcome, key, seen_phashes, settings)
        outcome.record["archive_url"] = archive_url  # release-approved pushes to the same archive
        dash.film_done(outcome.state, outcome.record)
        try:
            ledger.transition(key, outcome.state, record=outcome.record, staged_path=outcome.staged_path,
                              sop_instance_uid=outcome.record.get("sop_instance_uid", ""),
                              study_instance_uid=outcome.record.get("study_instance_uid", ""), error=outcome.error)
            log.info("film %s: %s (%d/%d)", film_tag(key), outcome.state, done, len(futures))
            if outcome.state == "processed":
                push(key)  # still under this run's lease: a concurrent run cannot push it too
        finally:
            ledger.release(key)

    # the report: one row per source file of this batch
    report_rows = []
    counts: dict[str, int] = {}
    qc_counts: dict[str, int] = {}
    films = []
    for s in sources:
        key = str(s.path)
        row = ledger.get(key)
        if row is None:
            continue
        record = dict(row.record) or {"source_file": s.relative}
        record.setdefault("source_file", s.relative)
        record.setdefault("sha256", s.sha256)
        status = report_status(row.state, archived_before=key in archived_before)
        err = pusher.errors.get(key) or (IN_PROGRESS if key in held_elsewhere else row.error)
        report_rows.append(report_row(record, status=status, ledger_state=row.state, error=err,
                                      dicom_path=record.get("dicom_path", "") if row.state == "archived" else ""))
        counts[status] = counts.get(status, 0) + 1
        for code in filter(None, (record.get("qc_flags") or "").split(";")):
            qc_counts[code] = qc_counts.get(code, 0) + 1
        films.append({"source_file": s.relative, "status": status, "qc_flags": record.get("qc_flags", ""),
                      "error": err.split(":", 1)[0] if err else ""})
    write_report(report_path, report_rows)
    arch.close()
    ledger.close()
    summary = BatchSummary(batch_name=batch_name, report_path=str(report_path), archive_url=settings.archive.url,
                           counts=counts, qc_counts=qc_counts, films=films, seconds=round(time.perf_counter() - t0, 2))
    log.info("batch %s done: %s", batch_name, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    dash.finish(summary, sources)
    return summary


#: Staged DICOM size per film as a multiple of its scan file (uncompressed pixels vs a deflate/JPEG scan).
STAGED_SIZE_FACTOR = 4


def _check_work_space(staging_dir: Path, sources: list[SourceFile], workers: int) -> None:
    """Refuse to start when the work folder cannot hold the films in flight.

    Raises
    ------
    ConfigError
        Less free space than ``STAGED_SIZE_FACTOR`` x the largest scan x the
        workers, plus 8 MiB for the ledger.
    """
    sizes = []
    for s in sources:
        try:
            sizes.append(s.path.stat().st_size) if not s.error else None
        except OSError:
            continue  # gone since discovery: that film fails on its own
    if not sizes:
        return
    need = STAGED_SIZE_FACTOR * max(sizes) * max(1, min(workers, len(sizes))) + (8 << 20)
    free = shutil.disk_usage(staging_dir).free
    if free < need:
        raise ConfigError(
            f"the work folder {staging_dir.parent} has {free / 2**20:.1f} MiB free; this batch needs about "
            f"{need / 2**20:.0f} MiB to stage its films: free space there or choose another --work-dir / run.work_dir"
        )


def _attach_file_log(work_dir: Path) -> None:
    """Keep filmflow's own debug log (tracebacks of internal errors) in the work folder."""
    logger = logging.getLogger("filmflow")
    path = str(work_dir / "filmflow.log")
    if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
